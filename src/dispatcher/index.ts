// src/dispatcher — worker sessions (DESIGN.md "Dispatcher"). The server side runs on
// every manager: it holds the sessions opened to it, pushes each node the managers
// list with weights, the trust bundle, its desired role and renewal instructions,
// tracks liveness in memory and commits only transitions (ready on manager X, down),
// batched, through the fsm's RecordSessions. The client side (for the node daemon)
// keeps one session open to a manager picked by weight and reconnects elsewhere with
// exponential backoff and full jitter. Neither side depends on who leads Raft.
export { fullJitterDelayMs, pickManager, type WeightedManager } from "./backoff.js";
export { SessionClient, type SessionClientEvents, type SessionClientOptions } from "./client.js";
export {
  DISPATCHER_ERROR_CODES,
  type DispatcherErrorCode,
  DispatcherRefusal,
  RETRY_AFTER_METADATA_KEY,
  reasonOf,
  retryAfterMsOf,
} from "./errors.js";
export { managerListOf, renewInstructionFor, trustBundleOf } from "./pushes.js";
export { DISPATCHER_POLICY, Dispatcher, type DispatcherOptions } from "./server.js";
