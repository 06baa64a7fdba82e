//! The json-rules-engine export means something only if its facts are the values Beckon
//! decides on and its rules are Beckon's rules. `bench/compare-jre.sh` checks that against
//! json-rules-engine itself; this test checks it without Node, with a small evaluator of the
//! exported JSON that follows json-rules-engine's semantics for the operators the export uses.

use beckon_bench::facts::SessionFacts;
use beckon_bench::fleet::Fleet;
use beckon_bench::jre;
use beckon_bench::workload::{self, Workload};
use regex::Regex;
use serde_json::Value;

/// json-rules-engine's verdict on one condition, for the operators the export emits.
fn holds(c: &Value, facts: &serde_json::Map<String, Value>) -> bool {
    if let Some(kids) = c.get("all").and_then(Value::as_array) {
        return kids.iter().all(|k| holds(k, facts));
    }
    if let Some(kids) = c.get("any").and_then(Value::as_array) {
        return kids.iter().any(|k| holds(k, facts));
    }
    if let Some(kid) = c.get("not") {
        return !holds(kid, facts);
    }
    let fact = &facts[c["fact"].as_str().unwrap()];
    let value = &c["value"];
    let num = |v: &Value| v.as_f64();
    let cmp =
        |f: fn(f64, f64) -> bool| matches!((num(fact), num(value)), (Some(a), Some(b)) if f(a, b));
    let text = fact.as_str();
    match c["operator"].as_str().unwrap() {
        "equal" => match (num(fact), num(value)) {
            (Some(a), Some(b)) => a == b,
            _ => fact == value,
        },
        "in" => value.as_array().unwrap().contains(fact),
        "contains" => fact.as_array().is_some_and(|list| list.contains(value)),
        "greaterThan" => cmp(|a, b| a > b),
        "greaterThanInclusive" => cmp(|a, b| a >= b),
        "lessThan" => cmp(|a, b| a < b),
        "lessThanInclusive" => cmp(|a, b| a <= b),
        "between" => {
            let (lo, hi) = (num(&value[0]).unwrap(), num(&value[1]).unwrap());
            num(fact).is_some_and(|n| n >= lo && n <= hi)
        }
        "startsWith" => text.is_some_and(|t| t.starts_with(value.as_str().unwrap())),
        "endsWith" => text.is_some_and(|t| t.ends_with(value.as_str().unwrap())),
        "matches" => text.is_some_and(|t| Regex::new(value.as_str().unwrap()).unwrap().is_match(t)),
        op => panic!("the export emitted an operator this test does not know: {op}"),
    }
}

#[test]
fn exported_rules_on_exported_facts_match_exactly_where_the_engine_says_rules_hold() {
    let file = workload::rules(50);
    let work = Workload::generate(1_000, 30_000, workload::SEED);
    let rules = jre::rules_json(&file).expect("the generated rules translate");
    let facts = jre::facts_used(&file);
    let engine = workload::engine_for(file);

    let mut fleet = Fleet::start(&engine, &work.visitors);
    let mut mirror: Vec<SessionFacts> = work.visitors.iter().map(SessionFacts::start).collect();
    let mut with_match = 0;
    for (i, step) in work.steps.iter().enumerate() {
        let mut beckon = fleet.matching_rules(&engine, step);
        beckon.sort_unstable();
        let m = &mut mirror[step.session as usize];
        m.apply(&step.event, step.now);
        let snapshot = facts
            .iter()
            .map(|f| (f.name().to_owned(), m.value(*f, step.now)))
            .collect();
        let mut exported: Vec<&str> = rules
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| holds(&r["conditions"], &snapshot))
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        exported.sort_unstable();
        assert_eq!(beckon, exported, "event {i}: {:?}", step.event);
        with_match += usize::from(!beckon.is_empty());
    }
    // The comparison is only worth something if rules do hold, and not on every event.
    assert!(with_match > work.steps.len() / 10 && with_match < work.steps.len());
}

#[test]
fn what_the_engines_read_differently_is_refused() {
    use beckon_engine::rules::{Condition, Op};
    let mut file = workload::rules(5);
    file.rules[0].when = Condition::All(vec![Condition::leaf("page.path", Op::NotEquals, "/cart")]);
    assert!(jre::rules_json(&file).is_err());
    file.rules[0].when = Condition::Not(Box::new(Condition::leaf("cart.value", Op::Gt, 50)));
    assert!(jre::rules_json(&file).is_err());
}
