// Prometheus metrics on --metrics HOST:PORT (GET /metrics). One registry per process,
// not prom-client's global one, so nothing registers behind our back. Every node
// exports its session and renewal counters; a manager adds Raft figures and the
// sessions it holds. Values are read when scraped, except leader changes, which are
// counted as they happen (on whichever manager part the node runs now).
import { createServer, type Server } from "node:http";
import { Counter, Gauge, Registry } from "prom-client";
import type { Logger } from "../log/logger.js";
import { parseHostPort } from "./address.js";
import { NodeError } from "./errors.js";
import type { Manager } from "./manager.js";

export interface MetricSources {
  /** The manager part, while the node is a manager. */
  manager(): Manager | undefined;
  /** Sessions this process opened (worker side). */
  sessionConnects(): number;
  /** Certificates this process obtained by renewal. */
  renewals(): number;
}

export class NodeMetrics {
  readonly registry = new Registry();
  private server: Server | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly leaderChanges: Counter;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    // Counters whose value lives elsewhere: a Gauge with collect reads it, but the
    // exposition type must stay "counter" for rate() to work, so they are Counters
    // moved forward to the source's value when scraped.
    const mirror = (name: string, help: string, read: () => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          const now = read();
          const shown =
            (this as unknown as { hashMap: Record<string, { value: number }> }).hashMap[""]?.value ?? 0;
          if (now > shown) this.inc(now - shown);
        },
      });
    mirror(
      "nodectl_session_connects_total",
      "Sessions this process opened to a manager",
      sources.sessionConnects,
    );
    mirror(
      "nodectl_certificate_renewals_total",
      "Node certificates this process obtained by renewal",
      sources.renewals,
    );
    const raft = () => sources.manager()?.raft;
    new Gauge({
      name: "nodectl_sessions_open",
      help: "Node sessions this manager holds now (0 on a worker)",
      registers,
      collect() {
        this.set(sources.manager()?.dispatcher?.openSessions ?? 0);
      },
    });
    mirror(
      "nodectl_tls_handshakes_total",
      "TLS handshakes this manager's server completed (each is a new connection: renewals and heartbeats ride the session's)",
      () => sources.manager()?.tlsHandshakes ?? 0,
    );
    mirror(
      "nodectl_certificates_issued_total",
      "Certificates this manager's CA service signed and recorded",
      () => sources.manager()?.issuer?.stats().issued ?? 0,
    );
    new Gauge({
      name: "nodectl_raft_term",
      help: "Current Raft term of this manager",
      registers,
      collect() {
        this.set(raft()?.status().term ?? 0);
      },
    });
    new Gauge({
      name: "nodectl_raft_is_leader",
      help: "1 when this manager is the Raft leader",
      registers,
      collect() {
        this.set(raft()?.leadership().isSelf ? 1 : 0);
      },
    });
    new Gauge({
      name: "nodectl_raft_commit_index",
      help: "Highest log index this manager knows committed",
      registers,
      collect() {
        this.set(raft()?.status().commit ?? 0);
      },
    });
    new Gauge({
      name: "nodectl_raft_applied_index",
      help: "Highest log index applied to this manager's state",
      registers,
      collect() {
        this.set(raft()?.status().applied ?? 0);
      },
    });
    this.leaderChanges = new Counter({
      name: "nodectl_raft_leader_changes_total",
      help: "Changes of the leader this manager knows of (including to no leader)",
      registers,
    });
  }

  /** Counts the leader changes the manager part sees, until the next attach or close. */
  attach(manager: Manager): void {
    this.unsubscribe?.();
    this.unsubscribe = manager.raft.onLeadershipChange(() => this.leaderChanges.inc());
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
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
