// The KV service over a RaftNode: writes go through the log, reads through
// ReadIndex (linearizable on any member), membership changes for tests.
import * as grpc from "@grpc/grpc-js";
import type { KVServiceServer } from "../gen/testbed/kv/v1/kv.js";
import { PutRequest } from "../gen/testbed/kv/v1/kv.js";
import { RaftRuntimeError } from "../raft/runtime/errors.js";
import type { RaftNode } from "../raft/runtime/node.js";
import type { KVStateMachine } from "./kv-state-machine.js";

function toStatus(err: unknown): grpc.ServiceError {
  const e = err as Error;
  const code =
    e instanceof RaftRuntimeError
      ? e.code === "PROPOSAL_TIMEOUT"
        ? grpc.status.DEADLINE_EXCEEDED
        : grpc.status.UNAVAILABLE
      : grpc.status.INTERNAL;
  const details = e instanceof RaftRuntimeError ? `${e.code}: ${e.message}` : e.message;
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/** Adapts a promise-returning handler to grpc-js's callback style. */
function unary<Req, Res>(fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request).then(
      (res) => callback(null, res),
      (err: unknown) => callback(toStatus(err)),
    );
  };
}

export function kvService(node: RaftNode, kv: KVStateMachine): KVServiceServer {
  return {
    put: unary(async (req) => {
      const { index } = await node.propose(PutRequest.encode(req).finish());
      return { index };
    }),
    get: unary(async (req) => {
      const found = await node.read(() => kv.get(req.key));
      return found
        ? { found: true, value: found.value, index: found.index }
        : { found: false, value: new Uint8Array(), index: 0 };
    }),
    status: unary(async () => {
      const s = node.status();
      return { ...s, role: s.role };
    }),
    addLearner: unary(async (req) => {
      await node.addLearner(req.id, { nodeId: req.nodeId, address: req.address });
      return {};
    }),
    promoteMember: unary(async (req) => {
      await node.promote(req.id);
      return {};
    }),
    removeMember: unary(async (req) => {
      await node.remove(req.id);
      return {};
    }),
    transferLeadership: unary(async (req) => {
      node.transferLeadership(req.id);
      return {};
    }),
  };
}
