// The layers of DESIGN.md as a checked contract (`npm run layers`, part of `npm test`).
// Imports point down only:
//   cli → node → control → dispatcher → issuer → fsm → ca → raft → gen/log
// plus src/testbed (the KV member process, LocalCluster and dev PKI used by Raft tests,
// benchmarks and the demo), which sits beside node and may use raft, ca, gen and log.

/** Each layer and the folders it may import (besides itself and npm packages). */
const LAYERS = {
  gen: [],
  log: [],
  raft: ["gen", "log"],
  ca: ["raft", "gen", "log"],
  fsm: ["ca", "raft", "gen", "log"],
  issuer: ["fsm", "ca", "raft", "gen", "log"],
  dispatcher: ["issuer", "fsm", "ca", "raft", "gen", "log"],
  control: ["dispatcher", "issuer", "fsm", "ca", "raft", "gen", "log"],
  node: ["control", "dispatcher", "issuer", "fsm", "ca", "raft", "gen", "log"],
  testbed: ["raft", "ca", "gen", "log"],
  cli: ["node", "control", "dispatcher", "issuer", "fsm", "ca", "raft", "gen", "log"],
};

const layerRules = Object.entries(LAYERS).map(([layer, below]) => ({
  name: `layer-${layer}`,
  comment: `src/${layer} may import only ${below.length ? below.map((l) => `src/${l}`).join(", ") : "itself"} (DESIGN.md "Layers")`,
  severity: "error",
  from: { path: `^src/${layer}/` },
  to: { path: `^src/(?!(?:${[layer, ...below].join("|")})/)` },
}));

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: "raft-core-pure",
      comment:
        "the pure Raft core touches no I/O, network, disk, timers or clock: no node: module, no gRPC, no level, no logger",
      severity: "error",
      from: { path: "^src/raft/core/" },
      to: {
        path: "^(?:node:)?(?:fs|net|tls|http2|dgram|child_process|timers|perf_hooks|crypto|os|worker_threads)(?:/|$)|@grpc/|classic-level|^level$|^src/log/|^src/raft/(?:runtime|sim)/",
      },
    },
    {
      name: "raft-core-no-builtins",
      comment: "the pure Raft core imports no Node.js built-in module at all",
      severity: "error",
      from: { path: "^src/raft/core/" },
      to: { dependencyTypes: ["core"] },
    },
    {
      name: "fsm-pure",
      comment:
        "src/fsm knows nothing of gRPC or of the Raft runtime (it offers the runtime a StateMachine; the runtime does not import it)",
      severity: "error",
      from: { path: "^src/fsm/" },
      to: { path: "@grpc/|^src/raft/runtime/|^src/raft/sim/" },
    },
    {
      name: "production-not-simulator",
      comment: "production code does not depend on the simulator",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/raft/sim/" },
      to: { path: "^src/raft/sim/" },
    },
    {
      name: "src-not-tests-or-scripts",
      comment: "src never imports test/ or scripts/",
      severity: "error",
      from: { path: "^src/" },
      to: { path: "^(?:test|scripts)/" },
    },
    {
      name: "src-not-dev-dependencies",
      comment: "src imports only runtime dependencies, never devDependencies",
      severity: "error",
      from: { path: "^src/" },
      to: { dependencyTypes: ["npm-dev"] },
    },
    {
      name: "no-value-cycles",
      comment: "no import cycles, except through type-only imports",
      severity: "error",
      from: {},
      to: { circular: true, viaOnly: { dependencyTypesNot: ["type-only"] } },
    },
    {
      name: "not-unresolvable",
      comment: "every import resolves",
      severity: "error",
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
    },
  },
};
