// Prometheus metrics on --metrics HOST:PORT (GET /metrics). One registry per process,
// not prom-client's global one, so nothing registers behind our back. Raft figures
// are read when scraped; leader changes are counted as they happen.
import { createServer, type Server } from "node:http";
import { Counter, Gauge, Registry } from "prom-client";
import type { Logger } from "../log/logger.js";
import type { RaftNode } from "../raft/runtime/node.js";
import { parseHostPort } from "./address.js";
import { NodeError } from "./errors.js";

export class NodeMetrics {
  readonly registry = new Registry();
  private server: Server | undefined;
  private readonly unsubscribe: () => void;

  constructor(raft: RaftNode) {
    const registers = [this.registry];
    new Gauge({
      name: "nodectl_raft_term",
      help: "Current Raft term of this manager",
      registers,
      collect() {
        this.set(raft.status().term);
      },
    });
    new Gauge({
      name: "nodectl_raft_is_leader",
      help: "1 when this manager is the Raft leader",
      registers,
      collect() {
        this.set(raft.leadership().isSelf ? 1 : 0);
      },
    });
    new Gauge({
      name: "nodectl_raft_commit_index",
      help: "Highest log index this manager knows committed",
      registers,
      collect() {
        this.set(raft.status().commit);
      },
    });
    new Gauge({
      name: "nodectl_raft_applied_index",
      help: "Highest log index applied to this manager's state",
      registers,
      collect() {
        this.set(raft.status().applied);
      },
    });
    const leaderChanges = new Counter({
      name: "nodectl_raft_leader_changes_total",
      help: "Changes of the leader this manager knows of (including to no leader)",
      registers,
    });
    this.unsubscribe = raft.onLeadershipChange(() => leaderChanges.inc());
  }

  async listen(address: string, logger: Logger): Promise<void> {
    const { host, port } = parseHostPort("--metrics", address);
    const server = createServer((req, res) => {
      if (req.method !== "GET" || req.url !== "/metrics") {
        res.writeHead(404).end("metrics are at /metrics\n");
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": this.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) =>
        reject(
          new NodeError(
            "ADDRESS_UNAVAILABLE",
            `cannot serve metrics on ${address} (${err.message}); free the port or choose another --metrics`,
          ),
        ),
      );
      server.listen(port, host.replace(/^\[|\]$/g, ""), () => resolve());
    });
    this.server = server;
    logger.info({ address }, "metrics listening");
  }

  async close(): Promise<void> {
    this.unsubscribe();
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
