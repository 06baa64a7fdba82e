//! The same work in json-rules-engine's terms: Beckon rules translated to its JSON rules, and
//! each event turned into the snapshot of facts Beckon decided on.
//!
//! The translation refuses what the two engines read differently, rather than exporting a rule
//! set whose comparison would mean nothing: operators that are true on a missing fact in
//! json-rules-engine but false in Beckon (`not_equals`, `not_in`, `not_contains`), `not` over a
//! fact that can be missing, `contains` on anything but a list, and variables the fact mirror
//! ([`crate::facts`]) does not track.

use std::io::{self, Write};
use std::path::Path;

use beckon_engine::hash::fnv1a64;
use beckon_engine::rules::{Condition, Literal, Op, RuleFile, RuleSpec};
use serde_json::{Map, Value, json};

use crate::facts::{Fact, SessionFacts};
use crate::workload::Workload;

/// Identifies the generator in the exported manifest; bump it when the workload changes shape,
/// so that an export and a replay from different versions refuse to be compared.
pub const GENERATOR: &str = "beckon-bench workload v2";

/// The rules as a json-rules-engine rule array.
pub fn rules_json(file: &RuleFile) -> Result<Value, String> {
    // json-rules-engine wants priorities >= 1; only their order matters, so shift them.
    let lowest = file.rules.iter().map(|r| r.priority).min().unwrap_or(1);
    file.rules
        .iter()
        .map(|r| rule_json(r, i64::from(r.priority) - i64::from(lowest) + 1))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn rule_json(rule: &RuleSpec, priority: i64) -> Result<Value, String> {
    let fail = |e: String| format!("rule {}: {e}", rule.id);
    if rule.schedule.is_some() {
        return Err(fail(
            "schedules have no json-rules-engine equivalent".into(),
        ));
    }
    let when = condition_json(&rule.when).map_err(fail)?;
    // A page scope is one more condition on page.type; the root must be all/any/not.
    let mut all = Vec::new();
    if !rule.pages.is_empty() {
        let pages: Vec<&str> = rule.pages.iter().map(|p| p.as_str()).collect();
        all.push(json!({ "fact": Fact::PageType.name(), "operator": "in", "value": pages }));
    }
    let conditions = match (&rule.when, all.is_empty()) {
        (Condition::All(_), true) => when,
        (Condition::All(_), false) => {
            all.extend(when["all"].as_array().cloned().unwrap_or_default());
            json!({ "all": all })
        }
        _ => {
            all.push(when);
            json!({ "all": all })
        }
    };
    Ok(json!({
        "name": rule.id,
        "priority": priority,
        "event": { "type": rule.id },
        "conditions": conditions,
    }))
}

fn condition_json(c: &Condition) -> Result<Value, String> {
    let list = |kids: &[Condition]| {
        kids.iter()
            .map(condition_json)
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match c {
        Condition::All(kids) => json!({ "all": list(kids)? }),
        Condition::Any(kids) => json!({ "any": list(kids)? }),
        Condition::Not(kid) => {
            if let Some(f) = facts_in(kid).into_iter().find(|f| f.can_be_missing()) {
                return Err(format!(
                    "`not` over {}, which can be missing: json-rules-engine and Beckon would disagree",
                    f.name()
                ));
            }
            json!({ "not": condition_json(kid)? })
        }
        Condition::Leaf(leaf) => {
            let fact = Fact::parse(&leaf.var)
                .ok_or_else(|| format!("variable {} is not tracked for the export", leaf.var))?;
            let operator = operator(leaf.op, fact)?;
            let value = leaf
                .value
                .as_ref()
                .ok_or_else(|| format!("{} {} needs a value", leaf.var, leaf.op))?;
            json!({ "fact": fact.name(), "operator": operator, "value": literal(value) })
        }
    })
}

/// json-rules-engine's operator for `op` on `fact`, where both engines agree on every value.
fn operator(op: Op, fact: Fact) -> Result<&'static str, String> {
    let name = match op {
        Op::Equals => "equal",
        Op::In => "in",
        Op::Gt => "greaterThan",
        Op::Gte => "greaterThanInclusive",
        Op::Lt => "lessThan",
        Op::Lte => "lessThanInclusive",
        Op::Between => "between",
        Op::Contains if fact.is_list() => "contains",
        Op::StartsWith => "startsWith",
        Op::EndsWith => "endsWith",
        Op::Matches => "matches",
        _ => {
            return Err(format!(
                "{} on {} reads differently in json-rules-engine",
                op,
                fact.name()
            ));
        }
    };
    if fact.is_list() && op != Op::Contains {
        return Err(format!("{} on the list {}", op, fact.name()));
    }
    Ok(name)
}

fn literal(l: &Literal) -> Value {
    match l {
        Literal::Bool(b) => (*b).into(),
        // Whole numbers as integers, as Beckon writes them; json-rules-engine compares numbers.
        Literal::Num(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => (*n as i64).into(),
        Literal::Num(n) => (*n).into(),
        Literal::Str(s) => s.as_str().into(),
        Literal::List(items) => items.iter().map(literal).collect(),
    }
}

/// The supported variables a condition reads (unsupported ones are skipped here and refused
/// by the translation).
fn facts_in(c: &Condition) -> Vec<Fact> {
    match c {
        Condition::All(kids) | Condition::Any(kids) => kids.iter().flat_map(facts_in).collect(),
        Condition::Not(kid) => facts_in(kid),
        Condition::Leaf(leaf) => Fact::parse(&leaf.var).into_iter().collect(),
    }
}

/// Every variable the rules read, page scopes included, in a fixed order.
pub fn facts_used(file: &RuleFile) -> Vec<Fact> {
    let mut facts: Vec<Fact> = file
        .rules
        .iter()
        .flat_map(|r| {
            let scope = (!r.pages.is_empty()).then_some(Fact::PageType);
            facts_in(&r.when).into_iter().chain(scope)
        })
        .collect();
    facts.sort();
    facts.dedup();
    facts
}

/// Writes `{"events":[…]}`: for each step of the stream, in order, the value of every fact
/// in `facts` right after the engine would have applied it.
pub fn write_facts(out: &mut impl Write, workload: &Workload, facts: &[Fact]) -> io::Result<()> {
    let mut sessions: Vec<SessionFacts> =
        workload.visitors.iter().map(SessionFacts::start).collect();
    out.write_all(b"{\"events\":[")?;
    for (i, step) in workload.steps.iter().enumerate() {
        let s = &mut sessions[step.session as usize];
        s.apply(&step.event, step.now);
        let snapshot: Map<String, Value> = facts
            .iter()
            .map(|f| (f.name().to_owned(), s.value(*f, step.now)))
            .collect();
        if i > 0 {
            out.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut *out, &snapshot)?;
    }
    out.write_all(b"]}\n")
}

/// What an export directory holds, so that a replay can rebuild exactly the same work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The workload seed.
    pub seed: u64,
    /// Number of rules.
    pub rules: usize,
    /// Number of sessions.
    pub sessions: usize,
    /// Number of events.
    pub events: usize,
    /// [`fingerprint`] of the rules and the stream.
    pub fingerprint: u64,
}

impl Manifest {
    /// The file name inside the export directory.
    pub const FILE: &str = "workload.json";

    /// The manifest as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "generator": GENERATOR,
            "seed": self.seed,
            "rules": self.rules,
            "sessions": self.sessions,
            "events": self.events,
            // As text: JavaScript would round a 64-bit number.
            "fingerprint": format!("{:016x}", self.fingerprint),
        })
    }

    /// Reads `dir/workload.json`.
    pub fn read(dir: &Path) -> Result<Manifest, String> {
        let path = dir.join(Manifest::FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        if v["generator"] != GENERATOR {
            return Err(format!(
                "{} was written by {}, not {GENERATOR}; export again",
                path.display(),
                v["generator"]
            ));
        }
        let num = |k: &str| {
            v[k].as_u64()
                .ok_or_else(|| format!("{}: \"{k}\" is not a number", path.display()))
        };
        let fingerprint = v["fingerprint"]
            .as_str()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| format!("{}: bad \"fingerprint\"", path.display()))?;
        Ok(Manifest {
            seed: num("seed")?,
            rules: num("rules")? as usize,
            sessions: num("sessions")? as usize,
            events: num("events")? as usize,
            fingerprint,
        })
    }
}

/// A hash of the rule file and of every event (session, instant and content), to prove that
/// a replay regenerated the very stream that was exported.
pub fn fingerprint(file: &RuleFile, workload: &Workload) -> u64 {
    let rules = serde_json::to_string(file).expect("a rule file serializes");
    let mut h = fnv1a64(&rules);
    for s in &workload.steps {
        let line = format!("{} {} {:?}", s.session, s.now.as_millis(), s.event);
        h = (h ^ fnv1a64(&line)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    for v in &workload.visitors {
        let line = format!("{} {:?} {:?} {}", v.id, v.start, v.profile, v.started_at);
        h = (h ^ fnv1a64(&line)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
