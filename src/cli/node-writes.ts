// `nodectl promote|demote|rm ID...`: one control call per id, in the order given, one
// line per id (the result on stdout, a refusal as `nodectl: CODE: message` on stderr).
// A refused id does not stop the others; the exit status is 1 if any was refused. When
// the manager itself cannot be reached, the ids not tried yet are named and skipped.
import { ControlCallError, type ControlConnection } from "../control/client.js";
import type { NodeView, RemoveNodeResponse, RoleChangeResponse } from "../gen/control/v1/messages.js";
import { type AdminOptions, openControl } from "./admin.js";
import { describeFailure, EXIT_FAILED, EXIT_OK, UsageError } from "./errors.js";

/** A node id or its start: what node ids are made of (lowercase DNS label characters). */
const ID_OR_PREFIX = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Failures of the connection, not of one id: the next id would fail the same way. */
const CONNECTION_CODES: ReadonlySet<string> = new Set([
  "CONTROL_UNREACHABLE",
  "CONTROL_TIMEOUT",
  "CONTROL_FAILED",
]);
const FOLLOW = "follow it with nodectl ls";

export function checkNodeIds(ids: readonly string[]): void {
  for (const id of ids)
    if (!ID_OR_PREFIX.test(id))
      throw new UsageError(
        `"${id}" is not a node id: ids are lowercase letters, digits and '-' (nodectl ls lists them)`,
      );
}

export function promoteNodes(ids: string[], options: AdminOptions): Promise<number> {
  return eachId(ids, options, async (c, id) => promotedLine(await c.promoteNode(id)));
}

export function demoteNodes(ids: string[], options: AdminOptions): Promise<number> {
  return eachId(ids, options, async (c, id) => demotedLine(await c.demoteNode(id)));
}

export function removeNodes(ids: string[], options: AdminOptions & { force?: boolean }): Promise<number> {
  return eachId(ids, options, async (c, id) => removedLine(await c.removeNode(id, options.force === true)));
}

export function promotedLine(answer: RoleChangeResponse): string {
  const node = requireNode(answer.node);
  if (!answer.unchanged)
    return (
      `Node ${node.id} promoted: it renews as a manager, joins Raft as a learner and becomes a voter ` +
      `once caught up; ${FOLLOW}.`
    );
  return node.role === "manager"
    ? `Node ${node.id} is already a manager.`
    : `Node ${node.id} is already being promoted; ${FOLLOW}.`;
}

export function demotedLine(answer: RoleChangeResponse): string {
  const node = requireNode(answer.node);
  if (!answer.unchanged)
    return (
      `Manager ${node.id} demoted: it hands over leadership if it leads, leaves Raft and renews as a ` +
      `worker; ${FOLLOW}.`
    );
  return node.role === "worker"
    ? `Node ${node.id} is already a worker.`
    : `Node ${node.id} is already being demoted; ${FOLLOW}.`;
}

export function removedLine(answer: RemoveNodeResponse): string {
  return answer.alreadyRemoved
    ? `Node ${answer.id} was removed already.`
    : `Node ${answer.id} removed: its session is closed and managers refuse its certificate from now on.`;
}

async function eachId(
  ids: string[],
  options: AdminOptions,
  run: (c: ControlConnection, id: string) => Promise<string>,
): Promise<number> {
  checkNodeIds(ids);
  const control = openControl(options);
  let status = EXIT_OK;
  for (const [i, id] of ids.entries()) {
    try {
      process.stdout.write(`${await run(control, id)}\n`);
    } catch (error) {
      status = EXIT_FAILED;
      process.stderr.write(describeFailure(error));
      const rest = ids.slice(i + 1);
      if (error instanceof ControlCallError && CONNECTION_CODES.has(error.code) && rest.length > 0) {
        process.stderr.write(`nodectl: not tried: ${rest.join(" ")}\n`);
        break;
      }
    }
  }
  return status;
}

function requireNode(node: NodeView | undefined): NodeView {
  if (!node) throw new ControlCallError("CONTROL_FAILED", "the manager's answer names no node");
  return node;
}
