// Renders the smallest failing prefix of a register history for a test failure message:
// one line per operation, ordered by invocation, times relative to the first call.
import type { OperationView, RegisterOperation, RegisterValue } from "./linearizability.js";

/** Long histories show only the operations invoked last, where the failure is. */
const MAX_LINES = 40;

export interface FailingPrefix<V extends RegisterValue> {
  readonly views: readonly OperationView<V>[];
  readonly culprit: number;
  readonly prefixEvents: number;
  readonly totalEvents: number;
  readonly formatValue: ((value: V) => string) | undefined;
}

/** Join tokens share their long digest part: keep the head and the distinguishing tail. */
function defaultFormatValue(value: RegisterValue): string {
  const text = JSON.stringify(value);
  return text.length <= 24 ? text : `${text.slice(0, 8)}…${text.slice(-13)}`;
}

export function renderFailingPrefix<V extends RegisterValue>(prefix: FailingPrefix<V>): string {
  const format = prefix.formatValue ?? defaultFormatValue;
  const origin = Math.min(...prefix.views.map(({ op }) => op.invokedAt));
  const time = (t: number): string => String(Number((t - origin).toFixed(3)));
  const sorted = [...prefix.views].sort((a, b) => a.op.invokedAt - b.op.invokedAt || a.index - b.index);
  const shown = sorted.slice(-MAX_LINES);
  const culpritView = sorted.find((view) => view.index === prefix.culprit);
  if (culpritView !== undefined && !shown.includes(culpritView)) shown.unshift(culpritView);
  const columns = shown.map((view) => {
    const end = view.answered ? `${time(view.op.completedAt ?? 0)}]` : "…)";
    return {
      view,
      what: describe(view.op, view.answered, format),
      interval: `[${time(view.op.invokedAt)}, ${end}`,
    };
  });
  const width = (texts: string[]): number => Math.max(...texts.map((text) => text.length));
  const labelWidth = width(columns.map(({ view }) => `#${view.index} ${view.op.process}`));
  const whatWidth = width(columns.map(({ what }) => what));
  const rows = columns.map(({ view, what, interval }) => {
    const marker = view.index === prefix.culprit ? "   <- no order explains this answer" : "";
    const label = `#${view.index} ${view.op.process}`.padEnd(labelWidth);
    return `  ${label}  ${what.padEnd(whatWidth)}  ${interval}${marker}`;
  });
  const hidden = sorted.length - shown.length;
  const culprit =
    culpritView === undefined ? `#${prefix.culprit}` : `#${prefix.culprit} (${culpritView.op.process})`;
  return [
    `register history is not linearizable: no order of the calls before it explains what ${culprit} returned.`,
    `Smallest failing prefix: the first ${prefix.prefixEvents} of ${prefix.totalEvents} call/return events; ` +
      `times relative to the first call; "…)" = no answer within the prefix (it may or may not have taken effect).`,
    ...(hidden > 0 ? [`  (${hidden} operations invoked earlier not shown)`] : []),
    ...rows,
  ].join("\n");
}

function describe<V extends RegisterValue>(
  op: RegisterOperation<V>,
  answered: boolean,
  format: (value: V) => string,
): string {
  const answer = (value: V | undefined): string => (answered && value !== undefined ? format(value) : "?");
  switch (op.kind) {
    case "read":
      return `read -> ${answer(op.value)}`;
    case "write":
      return `write ${format(op.value)}`;
    case "rotate":
      return `rotate (wrote ${op.written === undefined ? "a fresh value" : format(op.written)}) -> ${answer(op.returned)}`;
  }
}
