#!/usr/bin/env node
// Baseline half of the benchmark: json-rules-engine evaluating the rule set
// and event stream that the Rust side wrote to OUT_DIR.
//
//   node run.js OUT_DIR [--min-seconds N] [--dump-matches FILE]
//
// stdout gets exactly one line of JSON (the result); everything else goes to
// stderr so a driver script can parse stdout blindly.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { Engine } = require('json-rules-engine');

const WARMUP_RUNS = 1000;
const BUILTIN_OPS = new Set([
  'equal', 'notEqual', 'lessThan', 'lessThanInclusive', 'greaterThan',
  'greaterThanInclusive', 'in', 'notIn', 'contains', 'doesNotContain',
]);
const CUSTOM_OPS = new Set(['startsWith', 'endsWith', 'matches', 'between', 'exists']);

function die(msg) {
  process.stderr.write(`run.js: ${msg}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const usage = 'usage: node run.js OUT_DIR [--min-seconds N] [--dump-matches FILE]';
  const opts = { outDir: null, minSeconds: 5, dumpMatches: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--min-seconds') {
      const n = Number(argv[++i]);
      if (!Number.isFinite(n) || n < 0) die(`--min-seconds needs a non-negative number\n${usage}`);
      opts.minSeconds = n;
    } else if (a === '--dump-matches') {
      if (argv[i + 1] === undefined) die(`--dump-matches needs a file name\n${usage}`);
      opts.dumpMatches = argv[++i];
    } else if (a === '-h' || a === '--help') {
      process.stderr.write(usage + '\n');
      process.exit(0);
    } else if (a.startsWith('-') || opts.outDir !== null) {
      die(`unexpected argument ${JSON.stringify(a)}\n${usage}`);
    } else {
      opts.outDir = a;
    }
  }
  if (opts.outDir === null) die(usage);
  return opts;
}

function readJson(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    die(`cannot read ${file}: ${e.code || e.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    die(`${file} is not valid JSON: ${e.message}`);
  }
}

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

// matches: one RegExp per distinct source, compiled while validating the rules
// so the hot path only does a Map lookup. Flag 'u' because Unicode mode is the
// closest to Rust's regex crate (code-point '.', \p{..} classes, unknown escapes
// are errors rather than literals). No 'g'/'y' on purpose: those make
// RegExp.test() stateful (lastIndex), which would break a shared cached regex.
const regexCache = new Map();

// Walk a condition tree up front so malformed input fails here with a rule name
// attached, instead of as an unhandled rejection in the middle of the timed loop
// (json-rules-engine only reports an unknown operator when it evaluates it).
function checkCondition(cond, where) {
  if (!isPlainObject(cond)) die(`${where}: condition is not an object`);
  for (const key of ['all', 'any']) {
    if (key in cond) {
      if (!Array.isArray(cond[key])) die(`${where}: "${key}" must be an array`);
      cond[key].forEach((c, i) => checkCondition(c, `${where}.${key}[${i}]`));
      return;
    }
  }
  if ('not' in cond) return checkCondition(cond.not, `${where}.not`);
  const { fact, operator, value } = cond;
  if (typeof fact !== 'string' || fact === '') die(`${where}: "fact" must be a non-empty string`);
  if (!('value' in cond)) die(`${where}: missing "value"`);
  // An object value with a "fact" key would be read by the engine as a fact reference.
  if (isPlainObject(value) && 'fact' in value) die(`${where}: object values with a "fact" key are not supported`);
  if (BUILTIN_OPS.has(operator)) {
    if ((operator === 'in' || operator === 'notIn') && !Array.isArray(value)) {
      // Not fatal in the engine (it would do a substring test on a string), but
      // certainly not what the generator meant.
      die(`${where}: "${operator}" needs an array value`);
    }
    return;
  }
  if (!CUSTOM_OPS.has(operator)) die(`${where}: unknown operator ${JSON.stringify(operator)}`);
  if (operator === 'matches') {
    if (typeof value !== 'string') die(`${where}: "matches" needs a regex source string`);
    if (!regexCache.has(value)) {
      try {
        regexCache.set(value, new RegExp(value, 'u'));
      } catch (e) {
        die(`${where}: bad regex ${JSON.stringify(value)}: ${e.message}`);
      }
    }
  } else if (operator === 'between') {
    if (!Array.isArray(value) || value.length !== 2 || !value.every((x) => typeof x === 'number')) {
      die(`${where}: "between" needs [lo, hi] numbers`);
    }
  } else if (operator === 'exists') {
    if (typeof value !== 'boolean') die(`${where}: "exists" needs true or false`);
  } else if (typeof value !== 'string') {
    die(`${where}: "${operator}" needs a string value`);
  }
}

function loadRules(file) {
  const rules = readJson(file);
  if (!Array.isArray(rules)) die(`${file}: expected a JSON array of rules`);
  if (rules.length === 0) die(`${file}: no rules`);
  const names = new Set();
  rules.forEach((r, i) => {
    const where = `${file}: rule[${i}]`;
    if (!isPlainObject(r)) die(`${where} is not an object`);
    if (typeof r.name !== 'string' || r.name === '') die(`${where}: "name" must be a non-empty string`);
    if (names.has(r.name)) die(`${where}: duplicate rule name ${JSON.stringify(r.name)}`);
    names.add(r.name);
    if (!Number.isInteger(r.priority) || r.priority < 1) die(`${where} (${r.name}): "priority" must be an integer >= 1`);
    if (!isPlainObject(r.event) || typeof r.event.type !== 'string') die(`${where} (${r.name}): "event.type" must be a string`);
    const c = r.conditions;
    if (!isPlainObject(c) || !('all' in c || 'any' in c || 'not' in c)) {
      die(`${where} (${r.name}): "conditions" root must be all/any/not`);
    }
    checkCondition(c, `${where} (${r.name}) conditions`);
  });
  return rules;
}

function loadEvents(file) {
  const doc = readJson(file);
  if (!isPlainObject(doc) || !Array.isArray(doc.events)) die(`${file}: expected {"events": [...]}`);
  if (doc.events.length === 0) die(`${file}: no events`);
  doc.events.forEach((e, i) => {
    if (!isPlainObject(e)) die(`${file}: events[${i}] is not an object`);
  });
  return doc.events;
}

function buildEngine(rules) {
  // allowUndefinedFacts: a fact absent from an event evaluates as undefined
  // instead of rejecting the whole run with UndefinedFactError.
  const engine = new Engine(rules, { allowUndefinedFacts: true });
  // Custom operators must never throw (a throw rejects the whole engine.run), so
  // each one type-checks its fact and answers false on a mismatch.
  engine.addOperator('startsWith', (f, v) => typeof f === 'string' && f.startsWith(v));
  engine.addOperator('endsWith', (f, v) => typeof f === 'string' && f.endsWith(v));
  engine.addOperator('matches', (f, v) => typeof f === 'string' && regexCache.get(v).test(f));
  engine.addOperator('between', (f, v) => typeof f === 'number' && f >= v[0] && f <= v[1]);
  engine.addOperator('exists', (f, v) => (f !== null && f !== undefined) === v);
  return engine;
}

function installedVersion() {
  // require.resolve finds the package's main file; its package.json sits at the
  // package root, found by walking up to the json-rules-engine directory.
  let dir = path.dirname(require.resolve('json-rules-engine'));
  while (path.basename(dir) !== 'json-rules-engine') {
    const up = path.dirname(dir);
    if (up === dir) return 'unknown';
    dir = up;
  }
  return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const rules = loadRules(path.join(opts.outDir, 'rules.json'));
  const events = loadEvents(path.join(opts.outDir, 'facts.json'));
  const engine = buildEngine(rules);
  const n = events.length;
  process.stderr.write(`json-rules-engine: ${rules.length} rules, ${n} distinct events, ` +
    `${regexCache.size} distinct regexes; min ${opts.minSeconds}s\n`);

  // Warm-up so the JIT has compiled the engine's hot paths before timing.
  for (let i = 0; i < WARMUP_RUNS; i++) await engine.run(events[i % n]);

  // Timed loop: one engine.run per event, sequentially, the way a server would
  // handle requests; cycle over the events until the time budget is spent.
  const budget = BigInt(Math.round(opts.minSeconds * 1e9));
  let runs = 0;
  let withMatch = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  do {
    const { results } = await engine.run(events[runs % n]);
    if (results.length > 0) withMatch++;
    runs++;
    elapsed = process.hrtime.bigint() - start;
  } while (elapsed < budget);
  const seconds = Number(elapsed) / 1e9;

  // Optional, untimed: one pass over the events recording which rules fired, so
  // the Rust engine's decisions can be diffed event by event.
  if (opts.dumpMatches) {
    const lines = [];
    let passWithMatch = 0;
    let passRuleMatches = 0;
    for (let i = 0; i < n; i++) {
      const { results } = await engine.run(events[i]);
      // results arrive in completion order; sort so the dump is deterministic.
      const fired = results.map((r) => r.name).sort();
      if (fired.length > 0) passWithMatch++;
      passRuleMatches += fired.length;
      lines.push(JSON.stringify({ event: i, rules: fired }));
    }
    fs.writeFileSync(opts.dumpMatches, lines.join('\n') + '\n');
    process.stderr.write(`one pass over ${n} events: ${passWithMatch} with a match, ` +
      `${passRuleMatches} rule matches; written to ${opts.dumpMatches}\n`);
  }

  process.stderr.write(`${runs} runs in ${seconds.toFixed(3)}s, ${withMatch} with >=1 matching rule\n`);
  process.stdout.write(JSON.stringify({
    engine: 'json-rules-engine',
    version: installedVersion(),
    rules: rules.length,
    events: runs,
    seconds: Number(seconds.toFixed(3)),
    events_per_sec: Number((runs / seconds).toFixed(1)),
    events_with_match: withMatch,
  }) + '\n');
}

main().catch((e) => die(`engine run failed: ${e && e.stack ? e.stack : e}`));
