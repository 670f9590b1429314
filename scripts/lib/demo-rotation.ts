// The demo's root rotation: `nodectl ca rotate` through a manager, its progress lines
// shown as it prints them, then the checks that make it hitless: no node opened a new
// session and no manager saw a leader change while it ran, and every node is on the
// new root.
import type { DemoContext } from "./demo-steps.js";
import { secs, who } from "./demo-steps.js";
import type { LocalNode } from "./local-nodes.js";

export interface Rotation {
  ms: number;
  newRootKeyId: string;
  nodes: number;
  reconnects: number;
  leaderChanges: number;
}

const connectsOf = (d: DemoContext, list: LocalNode[]) =>
  Promise.all(list.map(async (n) => (await d.nodes.metric(n, "nodectl_session_connects_total")) ?? 0));
const leaderChangesOf = (d: DemoContext) =>
  Promise.all(
    d.managers.map(async (m) => (await d.nodes.metric(m, "nodectl_raft_leader_changes_total")) ?? 0),
  );
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

export async function rotateRoot(d: DemoContext): Promise<Rotation> {
  const via = d.managers[1] ?? d.managers[0];
  const everyone = [...d.managers, ...d.workers].filter((n) => n.running);
  const connectsBefore = await connectsOf(d, everyone);
  const changesBefore = await leaderChangesOf(d);
  d.out.line(`Rotating the root CA, through ${who(via)}: every node renews, then trusts the new root alone.`);
  d.out.line("$ nodectl ca rotate");
  const t0 = Date.now();
  d.out.block(await d.nodes.admin(via, ["ca", "rotate"], 120_000));
  const ms = Date.now() - t0;
  const status = JSON.parse(await d.nodes.admin(via, ["ca", "status", "--json"])) as {
    rootKeyId: string;
    rotation: unknown;
  };
  if (status.rotation !== null) throw new Error("ca rotate returned but ca status still shows a rotation");
  const reconnects = sum(await connectsOf(d, everyone)) - sum(connectsBefore);
  const leaderChanges = sum(await leaderChangesOf(d)) - sum(changesBefore);
  d.out.line(
    `  ${everyone.length} nodes on root ${status.rootKeyId.slice(0, 12)}… in ${secs(ms)}; ` +
      `sessions reopened: ${reconnects}; leader changes: ${leaderChanges}`,
  );
  if (reconnects !== 0 || leaderChanges !== 0)
    throw new Error(
      `the rotation was not hitless: ${reconnects} sessions reopened, ${leaderChanges} leader changes`,
    );
  return { ms, newRootKeyId: status.rootKeyId, nodes: everyone.length, reconnects, leaderChanges };
}
