// Raft messages between the RaftNodes of one test process: each delivery goes through
// setImmediate (as if over a socket), a member missing from `net` is unreachable, and
// every membership view the node hands over is kept for tests that check them.
import type { Message } from "../../src/gen/raft/v1/raft.js";
import type { Membership } from "../../src/raft/runtime/members.js";
import type { RaftNode } from "../../src/raft/runtime/node.js";
import type { Transport } from "../../src/raft/runtime/types.js";

export class LoopbackTransport implements Transport {
  readonly views: Membership[] = [];

  constructor(
    private readonly self: number,
    private readonly net: Map<number, RaftNode>,
  ) {}

  send(messages: Message[]): void {
    for (const m of messages) {
      setImmediate(() => {
        const to = this.net.get(m.to);
        if (!to) return this.net.get(this.self)?.onUnreachable(m.to);
        to.onMessage(m);
        if (m.snapshot?.metadata) this.net.get(this.self)?.onSnapshotStatus(m.to, true);
      });
    }
  }

  setMembers(membership: Membership): void {
    this.views.push(membership);
  }

  /** The last membership handed over. */
  get current(): Membership {
    return this.views[this.views.length - 1]!;
  }

  async close(): Promise<void> {}
}
