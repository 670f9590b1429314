// The admin commands: one control-API call over the manager's control.sock each.
// This file (and what it imports) stays clear of the daemon's modules, so an admin
// command loads the control client (node:http2 and the messages) and little else.
import { resolve } from "node:path";
import { ControlConnection } from "../control/client.js";
import { UsageError } from "./errors.js";
import { caStatusJson, nodeDetailJson, nodeJson } from "./format.js";

/** The tables (and cli-table3) are loaded for human output only: --json calls skip them. */
const tables = () => import("./tables.js");

export const STATE_DIR_ENV = "NODECTL_STATE_DIR";

export interface AdminOptions {
  stateDir?: string;
}

export function resolveStateDir(options: AdminOptions): string {
  const dir = options.stateDir ?? process.env[STATE_DIR_ENV];
  if (!dir) throw new UsageError(`give --state-dir DIR of a manager, or set ${STATE_DIR_ENV}`);
  return resolve(dir);
}

/** The control connection of the manager the options name (refused at once without a control.sock). */
export function openControl(options: AdminOptions): ControlConnection {
  return ControlConnection.open(resolveStateDir(options));
}

async function withControl<T>(options: AdminOptions, run: (c: ControlConnection) => Promise<T>): Promise<T> {
  return run(openControl(options));
}

function print(text: string): void {
  process.stdout.write(text);
}

export async function listNodes(options: AdminOptions & { json?: boolean }): Promise<void> {
  const nodes = await withControl(options, (c) => c.listNodes());
  print(
    options.json ? `${JSON.stringify(nodes.map(nodeJson), null, 2)}\n` : (await tables()).nodesTable(nodes),
  );
}

export async function inspectNode(id: string, options: AdminOptions & { json?: boolean }): Promise<void> {
  const node = await withControl(options, (c) => c.inspectNode(id));
  print(
    options.json
      ? `${JSON.stringify(nodeDetailJson(node), null, 2)}\n`
      : (await tables()).nodeDetailTable(node),
  );
}

export async function joinToken(
  role: string,
  options: AdminOptions & { rotate?: boolean; quiet?: boolean },
): Promise<void> {
  const answer = await withControl(options, (c) => c.getJoinToken(role, options.rotate === true));
  if (options.quiet) {
    print(`${answer.token}\n`);
    return;
  }
  const manager = answer.managerAddresses[0] ?? "MANAGER_HOST:PORT";
  const rotated = options.rotate
    ? `Rotated the ${role} join token; the previous one no longer admits nodes.\n`
    : "";
  // A manager serves Raft, the CA and sessions: it joins with the address it listens on.
  const listen = role === "manager" ? " --listen HOST:PORT" : "";
  print(
    `${rotated}To add a ${role} to this cluster, run on the new node:\n\n` +
      `    nodectl join --state-dir DIR${listen} --token ${answer.token} ${manager}\n\n`,
  );
}

export async function caStatus(options: AdminOptions & { json?: boolean }): Promise<void> {
  const status = await withControl(options, (c) => c.caStatus());
  print(
    options.json
      ? `${JSON.stringify(caStatusJson(status), null, 2)}\n`
      : (await tables()).caStatusTable(status),
  );
}
