// nodectl's entry point: argument parsing (commander) and the exit status contract
// (0 success, 1 refused or failed, 2 usage error). bin/nodectl.js loads the built copy
// of this file (dist/cli/main.js), so a call never compiles TypeScript.
import { Argument, Command, CommanderError } from "commander";
import { caStatus, inspectNode, joinToken, listNodes } from "./admin.js";
import { initCommand, joinCommand, leaveCommand, runCommand } from "./daemon.js";
import { describeFailure, EXIT_OK, EXIT_USAGE, exitStatusOf } from "./errors.js";
import { demoteNodes, promoteNodes, removeNodes } from "./node-writes.js";

const STATE_DIR_HELP = "a manager's state dir (default: $NODECTL_STATE_DIR)";
const IDS_HELP = "node ids, or the start of one that names a single node";
const ROOT_HELP_AFTER = `
Admin commands (ls, inspect, promote, demote, rm, join-token, ca status) talk to a running
manager through its state dir's control.sock: give --state-dir DIR or set NODECTL_STATE_DIR.
Exit status: 0 success; 1 refused or failed (stderr says why and what to do); 2 usage error.`;
const PROMOTE_HELP_AFTER = `
The node must have been joined with --listen (a manager serves Raft, the CA and sessions).
promote returns once the change is recorded; the node then renews as a manager, joins Raft
as a learner and becomes a voter once caught up: follow it with nodectl ls.
Promoting a manager, or a node being promoted, succeeds and changes nothing.`;
const DEMOTE_HELP_AFTER = `
Refused (exit 1, nothing changed) for the last manager, and when the remaining voting
managers would not have a ready majority (the refusal names the ones that are not ready).
A leader being demoted hands over leadership first; the node leaves Raft and renews as a
worker: follow it with nodectl ls. Demoting a worker succeeds and changes nothing.`;
const RM_HELP_AFTER = `
Refused (exit 1, nothing changed) for a manager (demote it first; a dead manager too: once
it is out of Raft it can be removed) and, without --force, for a node that is up. A removed
node's session is closed and managers refuse its certificate; it cannot come back (join a
new node instead). Removing a removed node succeeds.`;

function program(setStatus: (status: number) => void): Command {
  const root = new Command()
    .name("nodectl")
    .description("A Raft-replicated certificate-authority control plane")
    .exitOverride()
    .showHelpAfterError("(nodectl --help shows the commands)")
    .addHelpText("after", ROOT_HELP_AFTER);

  root
    .command("init")
    .description(
      "create a new cluster with this process as its first manager (foreground until SIGTERM/SIGINT)",
    )
    .requiredOption("--state-dir <dir>", "new, empty directory for this node's state")
    .requiredOption("--listen <host:port>", "address to serve Raft, CA and sessions on")
    .option("--advertise <host:port>", "address other nodes dial (default: --listen)")
    .option("--cert-expiry <duration>", "node certificate lifetime, e.g. 24h, 90m (at least 1m)", "24h")
    .option("--metrics <host:port>", "serve Prometheus metrics at http://HOST:PORT/metrics")
    .action(async (flags) => setStatus(await initCommand(flags)));

  root
    .command("join")
    .description("join an existing cluster through one of its managers (foreground until SIGTERM/SIGINT)")
    .argument("<manager>", "HOST:PORT of a manager (nodectl join-token prints their addresses)")
    .requiredOption("--state-dir <dir>", "new, empty directory for this node's state")
    .requiredOption(
      "--token <token>",
      "a join token (nodectl join-token worker|manager); it decides the role",
    )
    .option(
      "--listen <host:port>",
      "address to serve on: required for a manager, and to promote a worker later",
    )
    .option("--advertise <host:port>", "address other nodes dial (default: --listen)")
    .option("--metrics <host:port>", "serve Prometheus metrics at http://HOST:PORT/metrics")
    .action(async (manager: string, flags) => setStatus(await joinCommand(manager, flags)));

  root
    .command("leave")
    .description("this node leaves its cluster (a manager must be demoted first); its daemon then stops")
    .requiredOption("--state-dir <dir>", "the node's state dir")
    .action(async (flags) => setStatus(await leaveCommand(flags)));

  root
    .command("run")
    .description("restart a node from its state dir (foreground until SIGTERM/SIGINT)")
    .requiredOption("--state-dir <dir>", "the node's state dir")
    .option("--metrics <host:port>", "serve Prometheus metrics at http://HOST:PORT/metrics")
    .action(async (flags) => setStatus(await runCommand(flags)));

  root
    .command("ls")
    .description("list the cluster's nodes (linearizable)")
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .option("--json", "print a JSON array (shape in the README)")
    .action((flags) => listNodes(flags));

  root
    .command("inspect")
    .description("show one node")
    .argument("<id>", "node id")
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .option("--json", "print a JSON object")
    .action((id: string, flags) => inspectNode(id, flags));

  root
    .command("promote")
    .description("make workers managers (each id in turn)")
    .argument("<id...>", IDS_HELP)
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .addHelpText("after", PROMOTE_HELP_AFTER)
    .action(async (ids: string[], flags) => setStatus(await promoteNodes(ids, flags)));

  root
    .command("demote")
    .description("make managers workers (each id in turn)")
    .argument("<id...>", IDS_HELP)
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .addHelpText("after", DEMOTE_HELP_AFTER)
    .action(async (ids: string[], flags) => setStatus(await demoteNodes(ids, flags)));

  root
    .command("rm")
    .description("remove nodes from the cluster (each id in turn)")
    .argument("<id...>", IDS_HELP)
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .option("-f, --force", "remove a node even while it is up (its session is closed at once)")
    .addHelpText("after", RM_HELP_AFTER)
    .action(async (ids: string[], flags) => setStatus(await removeNodes(ids, flags)));

  root
    .command("join-token")
    .description("print the join token for workers or managers")
    .addArgument(new Argument("<role>", "worker or manager").choices(["worker", "manager"]))
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .option("--rotate", "replace the secret first; the old token stops admitting nodes at once")
    .option("-q, --quiet", "print the token only")
    .action((role: string, flags) => joinToken(role, flags));

  const ca = root.command("ca").description("the cluster's certificate authority");
  ca.command("status")
    .description("show the root CA (and a rotation in progress)")
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .option("--json", "print a JSON object")
    .action((flags) => caStatus(flags));
  ca.command("rotate")
    .description(
      "replace the cluster's root CA, hitlessly: every node renews (signed by the new key), then trusts the new root alone",
    )
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .option(
      "--cert-expiry <duration>",
      "lifetime of node certificates issued from now on, e.g. 24h (at least 1m)",
    )
    .option("--ca-cert <file>", "import this root certificate (PEM) instead of making one; needs --ca-key")
    .option("--ca-key <file>", "the imported root's private key (PEM)")
    .option("--detach", "return once the rotation is started; follow it with nodectl ca status")
    .action(async (flags) => (await import("./rotate.js")).caRotate(flags));
  return root;
}

/** Runs one nodectl command line; resolves with the exit status. */
export async function main(argv: string[]): Promise<number> {
  let status = EXIT_OK;
  try {
    await program((s) => {
      status = s;
    }).parseAsync(argv);
    return status;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version requests end here too, with exit code 0; commander already printed.
      return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    process.stderr.write(describeFailure(error));
    return exitStatusOf(error);
  }
}
