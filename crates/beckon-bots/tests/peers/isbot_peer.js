// The reference for beckon-bots' patterns: JavaScript itself. Reads {"patterns": [...],
// "agents": [...]} as JSON on stdin and prints, for each agent, the indices of the patterns that
// match it as the isbot package tests them (new RegExp(pattern, "i")).
"use strict";
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const { patterns, agents } = JSON.parse(input);
  const compiled = patterns.map((p) => new RegExp(p, "i"));
  const out = agents.map((a) => compiled.flatMap((r, i) => (r.test(a) ? [i] : [])));
  process.stdout.write(JSON.stringify(out));
});
