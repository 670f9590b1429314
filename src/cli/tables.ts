// nodectl's human output: borderless tables (cli-table3) like docker's.
import Table from "cli-table3";
import type { CaStatusResponse, NodeView } from "../gen/control/v1/messages.js";
import { caStatusJson, iso, nodeDetailJson, type RotationJson } from "./format.js";

function plainTable(head: string[]): Table.Table {
  return new Table({
    head,
    chars: {
      top: "",
      "top-mid": "",
      "top-left": "",
      "top-right": "",
      bottom: "",
      "bottom-mid": "",
      "bottom-left": "",
      "bottom-right": "",
      left: "",
      "left-mid": "",
      mid: "",
      "mid-mid": "",
      right: "",
      "right-mid": "",
      middle: "  ",
    },
    style: { head: [], border: [], "padding-left": 0, "padding-right": 0 },
  });
}

export function nodesTable(nodes: NodeView[]): string {
  const table = plainTable(["ID", "ROLE", "STATUS", "LEADER", "ADDRESS", "CERT EXPIRES", "SESSION"]);
  for (const n of nodes) {
    const role = n.desiredRole !== n.role ? `${n.role} -> ${n.desiredRole}` : n.role;
    table.push([
      n.id,
      role,
      n.status,
      n.leader ? "yes" : "",
      n.address || "-",
      n.certificate ? (iso(n.certificate.notAfterMs) ?? "-") : "-",
      n.session ? n.session.managerId : "-",
    ]);
  }
  return render(table);
}

function keyValueTable(rows: [string, string][]): string {
  const table = plainTable([]);
  for (const row of rows) table.push(row);
  return render(table);
}

export function nodeDetailTable(n: NodeView): string {
  const d = nodeDetailJson(n);
  return keyValueTable([
    ["ID", d.id],
    ["Role", d.role],
    ["Desired role", d.desiredRole],
    ["Status", d.status],
    ["Status since", d.statusChangedAt ?? "-"],
    ["Leader", d.leader ? "yes" : "no"],
    ["Address", d.address ?? "-"],
    ["Raft member", d.raftId === null ? "-" : `${d.raftId} (${d.membership ?? "-"})`],
    ["Joined", d.joinedAt ?? "-"],
    ["Certificate serial", d.certificate?.serial ?? "-"],
    ["Certificate expires", d.certificate?.notAfter ?? "-"],
    ["Issuer key id", d.certificate?.issuerKeyId ?? "-"],
    ["Session", d.session ? `on ${d.session.managerId} since ${d.session.connectedAt}` : "-"],
  ]);
}

export function caStatusTable(s: CaStatusResponse): string {
  const j = caStatusJson(s);
  return keyValueTable([
    ["Cluster", j.clusterId],
    ["Root key id", j.rootKeyId],
    ["Root expires", j.rootNotAfter ?? "-"],
    ["Root digest", j.rootDigest],
    ["Node certificate lifetime", `${j.nodeCertLifetimeSeconds} s`],
    ...rotationRows(j.rotation),
  ]);
}

function rotationRows(r: RotationJson | null): [string, string][] {
  if (!r) return [["Rotation", "none"]];
  return [
    ["Rotation", `to root ${r.newRootKeyId}, ${r.phase} phase since ${r.phaseStartedAt ?? "-"}`],
    ["Renewed", `${r.renewed}/${r.total}`],
    ["Trust new root only", `${r.trusted}/${r.total}`],
    ...r.pending.map((p): [string, string] => [`Pending ${p.id}`, p.reason]),
  ];
}

/** cli-table3 pads the last column; lines end at their last character instead. */
function render(table: Table.Table): string {
  return `${table
    .toString()
    .split("\n")
    .map((line) => line.trimEnd())
    .join("\n")}\n`;
}
