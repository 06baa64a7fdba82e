#!/usr/bin/env bash
# Beckon against json-rules-engine on the same rules and the same event stream, in one run:
# prints both throughputs, their ratio, and how much alike the work of the two sides was.
#
#   bench/compare-jre.sh [--rules N] [--events M] [--sessions S] [--min-seconds S] [--quick] [--out DIR]
#
#   --rules N        live rules (default 50: the five example rules and 45 generated ones)
#   --events M       events in the stream (default 200000)
#   --sessions S     visits the events are spread over (default events/20)
#   --min-seconds S  least timed seconds of Beckon (and of json-rules-engine with --quick; default 5)
#   --quick          time json-rules-engine for --min-seconds only, over a prefix of the stream,
#                    and skip the event-by-event check (by default it is timed over about one
#                    whole pass, which takes minutes: it runs a few thousand events per second)
#   --out DIR        where the inputs and match dumps go (default bench/jre/out)
#
# How it works: export-jre generates the workload from a seed and writes json-rules-engine's
# inputs (rules.json, and facts.json: per event, the value of every variable the rules read,
# as Beckon sees it after that event). engine-report --replay regenerates the very same stream
# (checked by fingerprint) and times Engine::decide over it; bench/jre/run.js times
# json-rules-engine over the fact snapshots. Both sides count the events on which at least one
# rule's conditions (and page scope) hold; by default the two per-event lists of matching rules
# are also compared line by line.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rules=50
events=200000
sessions=
min_seconds=5
quick=0
out="$root/bench/jre/out"

usage() { sed -n '4,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case "$1" in
    --rules) rules=$2; shift 2 ;;
    --events) events=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    --min-seconds) min_seconds=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare-jre.sh: unexpected argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

step() { printf '\n== %s\n' "$*" >&2; }

if [[ ! -d "$root/bench/jre/node_modules" ]]; then
  step "installing json-rules-engine (npm ci in bench/jre)"
  (cd "$root/bench/jre" && npm ci --no-audit --no-fund >&2)
fi

step "building the Rust side (release)"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p beckon-bench --bins
bin="${CARGO_TARGET_DIR:-$root/target}/release"

step "exporting $rules rules and $events events to $out"
mkdir -p "$out"
"$bin/export-jre" "$out" --rules "$rules" --events "$events" ${sessions:+--sessions "$sessions"}

step "Beckon: Engine::decide over the exported stream"
beckon=$("$bin/engine-report" --replay "$out" --min-seconds "$min_seconds" \
  --dump-matches "$out/beckon-matches.jsonl" --json)

if ((quick)); then
  step "json-rules-engine: run.js, ${min_seconds} s over a prefix of the stream"
  rm -f "$out/jre-matches.jsonl"
  jre=$(node "$root/bench/jre/run.js" "$out" --min-seconds "$min_seconds")
else
  # run.js times for a number of seconds, cycling over the events. So that it is timed on the
  # whole stream, as Beckon was, a short probe measures its rate and the budget is set to a
  # little more than one pass (the probe sees only the stream's first events, which are not
  # its slowest); an untimed pass then dumps its matches for the check below.
  step "json-rules-engine: probing its rate"
  probe=$(node "$root/bench/jre/run.js" "$out" --min-seconds 2)
  budget=$(node -e 'console.log((1.3 * process.argv[2] / JSON.parse(process.argv[1]).events_per_sec).toFixed(1))' \
    "$probe" "$events")
  step "json-rules-engine: run.js, ${budget} s (about one pass), then an untimed pass for the check"
  jre=$(node "$root/bench/jre/run.js" "$out" --min-seconds "$budget" \
    --dump-matches "$out/jre-matches.jsonl")
fi

step "result"
node - "$beckon" "$jre" "$out" "$quick" <<'EOF'
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const [beckon, jre, out, quick] = [JSON.parse(process.argv[2]), JSON.parse(process.argv[3]),
  process.argv[4], process.argv[5] === '1'];
const lines = (f) => fs.readFileSync(f, 'utf8').trimEnd().split('\n');
const fmt = (n) => Math.round(n).toLocaleString('en-US');
const pct = (a, b) => (100 * a / b).toFixed(1) + '%';

// Per event: does any rule hold, according to Beckon (the engine's own evaluation)?
const beckonLines = lines(path.join(out, 'beckon-matches.jsonl'));
const n = beckonLines.length;
const hit = beckonLines.map((l) => JSON.parse(l).rules.length > 0);
const total = hit.filter(Boolean).length;
// run.js cycles over the events: Beckon's count over exactly the events it timed.
const runs = jre.events;
let sameRuns = Math.floor(runs / n) * total;
for (let i = 0; i < runs % n; i++) if (hit[i]) sameRuns++;

const ratio = beckon.events_per_sec / jre.events_per_sec;
const row = (name, rate, note) =>
  `${name.padEnd(22)} ${fmt(rate).padStart(12)} ${(1e6 / rate).toFixed(2).padStart(10)}   ${note}`;
console.log(`${beckon.rules} rules, ${fmt(n)} events over ${fmt(beckon.sessions)} sessions; ` +
  'each engine single-threaded, one after the other');
console.log('');
console.log(`${''.padEnd(22)} ${'events/s'.padStart(12)} ${'µs/event'.padStart(10)}   events with >=1 matching rule`);
console.log(row('Beckon (decide)', beckon.events_per_sec,
  `${fmt(total)} of ${fmt(n)} (${pct(total, n)}); timed ${fmt(beckon.events)} decisions in ${beckon.seconds} s`));
console.log(row(`json-rules-engine ${jre.version}`, jre.events_per_sec,
  `${fmt(jre.events_with_match)} of ${fmt(runs)} timed runs; Beckon on the same ${fmt(runs)}: ${fmt(sameRuns)}` +
  (jre.events_with_match === sameRuns ? ' (equal)' : ' (DIFFERENT)')));
console.log('');
console.log(`ratio: Beckon does ${ratio.toFixed(0)}x the events per second of json-rules-engine`);
// Beckon skips rule evaluation on the events a lasting guardrail answers; charging all of its
// time to the events it did evaluate bounds what evaluating every event would cost it.
console.log(`       ${(ratio * beckon.evaluated_share).toFixed(0)}x if all of Beckon's time is charged to the ` +
  `${pct(beckon.evaluated_share, 1)} of events on which it evaluated the rules`);
console.log(`json-rules-engine was timed over ${fmt(runs)} events: ${(runs / n).toFixed(2)} passes over the stream.`);
console.log('');

let agree = null;
const jreDump = path.join(out, 'jre-matches.jsonl');
if (!quick && fs.existsSync(jreDump)) {
  const j = lines(jreDump);
  agree = 0;
  let firstDiff = -1;
  for (let i = 0; i < n; i++) {
    if (j[i] === beckonLines[i]) agree++;
    else if (firstDiff < 0) firstDiff = i;
  }
  console.log(`event by event: the set of matching rules is the same on ${fmt(agree)} of ${fmt(n)} events` +
    (firstDiff >= 0 ? ` (first difference at event ${firstDiff}: beckon ${beckonLines[firstDiff]} / jre ${j[firstDiff]})` : ''));
}
console.log(`How comparable: both engines evaluate the same ${beckon.rules} rules (Beckon's page scopes are a
page.type condition for json-rules-engine) on the same ${fmt(n)} events, and the match counts above
come from each engine's own evaluation. The work differs in two ways. json-rules-engine is handed
each event's facts precomputed (tracking them from the raw events is not in its time), while
Beckon's time includes applying the raw event to the session, the guardrails, the holdout and the
delay/repeat/priority logic. And json-rules-engine evaluates every rule on every event, while
Beckon answers ${pct(1 - beckon.evaluated_share, 1)} of the events from a guardrail that lasts until an event
(an intervention is already open, the session cap is reached, the visitor converted or is a bot)
without evaluating the rules.`);
if (agree !== null && agree !== n) process.exitCode = 1;
EOF
