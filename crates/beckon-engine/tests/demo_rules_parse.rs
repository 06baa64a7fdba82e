//! The example rule file shipped with Beckon compiles and round-trips.

use beckon_engine::RuleSet;

const DEMO: &str = include_str!("../../../examples/demo-rules.toml");

#[test]
fn the_example_rules_compile_and_round_trip_through_toml_and_json() {
    let rules = RuleSet::from_toml(DEMO, beckon_engine::Tz::UTC).expect("example rules compile");
    assert_eq!(rules.len(), 5);
    let again = RuleSet::from_toml(&rules.to_toml(), beckon_engine::Tz::UTC).unwrap();
    assert_eq!(again.to_file(), rules.to_file());
    let json = RuleSet::from_json(&rules.to_json(), beckon_engine::Tz::UTC).unwrap();
    assert_eq!(json.to_file(), rules.to_file());
}
