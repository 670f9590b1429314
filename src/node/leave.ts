// `nodectl leave`: the node in this state dir leaves its cluster. It asks a manager it
// knows (node.json's list), over mutual TLS with its own certificate, to remove it:
// the same removal as `nodectl rm --force`, so its session closes, its daemon (if one
// runs) stops, and its certificates are refused from then on. A manager must be
// demoted first. The state dir is left in place for the operator to delete.
import * as grpc from "@grpc/grpc-js";
import { callErrorMessage, refusalReasonOf } from "../ca/index.js";
import { DispatcherServiceClient } from "../gen/dispatcher/v1/dispatcher.js";
import type { Logger } from "../log/logger.js";
import { loadNodeCredentials } from "./credentials.js";
import { readNodeConfig, stateDirPaths } from "./state-dir.js";

export class LeaveError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "LeaveError";
  }
}

export async function leaveCluster(stateDir: string, logger: Logger, timeoutMs = 10_000): Promise<string> {
  const config = readNodeConfig(stateDir);
  const credentials = loadNodeCredentials(stateDirPaths(stateDir), config, logger);
  let last: LeaveError | undefined;
  for (const manager of config.managers) {
    const client = new DispatcherServiceClient(
      manager.address,
      credentials.channelCredentials({
        clusterId: config.clusterId,
        expectedServerRole: "manager",
        expectedServerNodeId: manager.nodeId,
      }),
      { "grpc.ssl_target_name_override": "manager" },
    );
    try {
      return await new Promise<string>((resolve, reject) =>
        client.leave({}, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (error, response) =>
          error ? reject(error) : resolve(response.nodeId),
        ),
      );
    } catch (error) {
      const e = error as grpc.ServiceError;
      const code = refusalReasonOf(e) ?? "UNAVAILABLE";
      last = new LeaveError(code, `${manager.address}: ${callErrorMessage(e, code)}`);
      // A refusal is the cluster's answer; only an unreachable manager is worth another try.
      if (code !== "UNAVAILABLE") throw last;
    } finally {
      client.close();
    }
  }
  throw last ?? new LeaveError("UNAVAILABLE", "node.json lists no manager to ask");
}
