// Evaluate AWS requests with @cloud-copilot/iam-simulate, an IAM policy evaluator that
// applies conditions, resource policies and KMS key-policy trust as AWS does.
// stdin: a JSON array of simulations (the library's Simulation shape, plus "id").
// stdout: a JSON array of {id, result, errors, decisive} in the same order.
const { runSimulation } = require(
  require.resolve("@cloud-copilot/iam-simulate", { paths: [process.env.IAM_SIMULATE_HOME] })
);

async function main() {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const out = [];
  for (const sim of JSON.parse(input)) {
    const { id, ...simulation } = sim;
    const response = await runSimulation(simulation, {});
    if (response.resultType === "error") {
      out.push({ id, result: "Error", errors: response.errors });
      continue;
    }
    const analysis = response.result ? response.result.analysis : undefined;
    out.push({ id, result: response.overallResult, decisive: explain(analysis) });
  }
  process.stdout.write(JSON.stringify(out));
}

// The statements that decided, by policy and Sid, so that a verdict can be read.
function explain(analysis) {
  if (!analysis) return [];
  const names = [];
  for (const [kind, part] of Object.entries(analysis)) {
    if (!part || typeof part !== "object") continue;
    for (const list of ["denyStatements", "allowStatements"]) {
      for (const s of part[list] || []) {
        const e = s.explain || s;
        names.push(`${kind}:${list === "denyStatements" ? "deny" : "allow"}:${e.identifier || s.statement?.sid?.() || "?"}`);
      }
    }
  }
  return names;
}

main().catch((err) => { console.error(err); process.exit(1); });
