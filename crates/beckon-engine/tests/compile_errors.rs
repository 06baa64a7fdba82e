//! Every way a rule is refused when it is saved, never at evaluation time: each refusal names
//! the field (`FieldError.field`, e.g. `when.all[1].var`) and says why (`FieldError.reason`).
//!
//! Covers unknown variables (with a did-you-mean), unknown operators, bad regexes, type
//! mismatches, exact tests on continuously measured variables, malformed `between` and `in`
//! values, empty, too deep and too large condition trees, ids, rollout and caps, messages
//! (buttons, URLs, templates, translations), schedules and dates, unknown keys, oversized files,
//! and that every problem of a rule is reported at once.

use beckon_engine::rules::condition::{MAX_DEPTH, MAX_LEAVES};
use beckon_engine::rules::{FieldError, MAX_RULE_FILE_BYTES, MAX_RULES, RuleError};
use beckon_engine::{LoadError, RuleSet, Tz};

const WHEN: &str = r#"{ var = "cart.items", op = "gt", value = 0 }"#;
const MESSAGE: &str = r#"{ type = "text", text = "Can we help?" }"#;

/// A rule file holding one rule; `extra` is more `key = value` lines of the rule's table.
fn rule_file(when: &str, message: &str, extra: &str) -> String {
    format!(
        r#"
[[rules]]
id = "rule-under-test"
name = "A rule under test"
status = "live"
when = {when}
message = {message}
{extra}
"#
    )
}

/// A rule file whose only unusual part is `when`.
fn with_when(when: &str) -> String {
    rule_file(when, MESSAGE, "")
}

/// A rule file whose only unusual part is its message.
fn with_message(message: &str) -> String {
    rule_file(WHEN, message, "")
}

/// A rule file whose only unusual part is `extra` (more keys of the rule's table).
fn with_extra(extra: &str) -> String {
    rule_file(WHEN, MESSAGE, extra)
}

/// Compiles `toml`, which must be refused as invalid, and returns every rule's errors.
fn rule_errors(toml: &str) -> Vec<RuleError> {
    match RuleSet::from_toml(toml, Tz::UTC) {
        Ok(_) => panic!("the rule file should be refused:\n{toml}"),
        Err(LoadError::Invalid(errors)) => errors,
        Err(other) => panic!("expected invalid rules, got {other:?} for:\n{toml}"),
    }
}

/// The field errors of the single rule in `toml`, which must be refused.
fn field_errors(toml: &str) -> Vec<FieldError> {
    let mut errors = rule_errors(toml);
    assert_eq!(errors.len(), 1, "one rule, one rule error: {errors:?}");
    let e = errors.remove(0);
    assert_eq!(e.rule, "rule-under-test");
    e.errors
}

/// Asserts that `toml` is refused with exactly one error, on `field`, whose reason contains
/// every one of `reason_parts`.
fn assert_refused(toml: &str, field: &str, reason_parts: &[&str]) {
    let errors = field_errors(toml);
    assert_eq!(
        errors.len(),
        1,
        "expected one error on {field}, got {errors:#?}"
    );
    let e = &errors[0];
    assert_eq!(e.field, field, "wrong field in {e:?}");
    for part in reason_parts {
        assert!(
            e.reason.contains(part),
            "the reason for {field} should mention {part:?}: {:?}",
            e.reason
        );
    }
}

/// Compiles `toml`, which must fail before compilation (syntax or shape), and returns the text.
fn syntax_error(toml: &str) -> String {
    match RuleSet::from_toml(toml, Tz::UTC) {
        Err(LoadError::Syntax(text)) => text,
        other => panic!("expected a syntax error, got {other:?} for:\n{toml}"),
    }
}

fn assert_accepted(toml: &str) {
    if let Err(e) = RuleSet::from_toml(toml, Tz::UTC) {
        panic!("the rule file should be accepted, but: {e}\n{toml}");
    }
}

#[test]
fn the_base_rule_of_this_file_is_accepted() {
    assert_accepted(&with_extra(""));
}

// ---- variables and operators ----------------------------------------------------------------

#[test]
fn an_unknown_variable_is_refused_with_the_nearest_name() {
    let toml = with_when(
        r#"{ all = [
            { var = "cart.items", op = "gt", value = 0 },
            { var = "cart.valu", op = "gte", value = 50 },
        ] }"#,
    );
    assert_refused(
        &toml,
        "when.all[1].var",
        &[
            "unknown variable",
            "\"cart.valu\"",
            "did you mean \"cart.value\"",
        ],
    );
}

#[test]
fn an_unknown_variable_far_from_every_name_gets_no_suggestion() {
    let toml = with_when(r#"{ var = "weather.rain", op = "equals", value = true }"#);
    assert_refused(&toml, "when.var", &["unknown variable \"weather.rain\""]);
    let errors = field_errors(&toml);
    assert!(!errors[0].reason.contains("did you mean"), "{errors:?}");
}

#[test]
fn a_dynamic_variable_without_a_key_is_refused() {
    let toml = with_when(r#"{ var = "visitor.traits.", op = "equals", value = "pro" }"#);
    assert_refused(&toml, "when.var", &["visitor.traits."]);
    let long_key = "k".repeat(65);
    let toml = with_when(&format!(
        r#"{{ var = "event.props.{long_key}", op = "equals", value = 1 }}"#
    ));
    assert_refused(&toml, "when.var", &["1 to 64 characters"]);
}

#[test]
fn an_unknown_operator_is_refused_when_the_file_is_read() {
    let text = syntax_error(&with_when(
        r#"{ var = "cart.value", op = "greater_than", value = 50 }"#,
    ));
    assert!(text.contains("unknown operator \"greater_than\""), "{text}");
    // The message lists what is accepted.
    assert!(text.contains("gte") && text.contains(">="), "{text}");
    // And says where: the rule's `when`.
    assert!(text.contains("when"), "{text}");
}

#[test]
fn a_condition_without_an_operator_or_with_two_shapes_is_refused() {
    let text = syntax_error(&with_when(r#"{ var = "cart.value", value = 50 }"#));
    assert!(text.contains("needs `op`"), "{text}");
    let text = syntax_error(&with_when(
        r#"{ var = "cart.value", op = "gt", value = 50, all = [] }"#,
    ));
    assert!(text.contains("exactly one of"), "{text}");
    let text = syntax_error(&with_when(r#"{ }"#));
    assert!(text.contains("an empty condition"), "{text}");
    let text = syntax_error(&with_when(
        r#"{ var = "cart.value", op = "gt", valeu = 50 }"#,
    ));
    assert!(text.contains("valeu"), "{text}");
}

#[test]
fn an_operator_without_a_value_is_refused() {
    let toml = with_when(r#"{ var = "cart.value", op = "gt" }"#);
    assert_refused(&toml, "when.value", &["gt needs a value"]);
}

#[test]
fn a_bad_regex_is_refused() {
    let toml = with_when(r#"{ var = "page.path", op = "matches", value = "^/products/(" }"#);
    assert_refused(&toml, "when.value", &["bad regular expression"]);
}

#[test]
fn an_oversized_regex_is_refused() {
    // Each `\w{500}` compiles to a large Unicode automaton.
    let pattern = r"\\w{500}".repeat(20);
    let toml = with_when(&format!(
        r#"{{ var = "page.path", op = "matches", value = "{pattern}" }}"#
    ));
    assert_refused(&toml, "when.value", &["bad regular expression"]);
}

// ---- types ----------------------------------------------------------------------------------

#[test]
fn a_numeric_operator_on_text_is_refused() {
    let toml = with_when(r#"{ var = "page.url", op = "gt", value = 5 }"#);
    assert_refused(
        &toml,
        "when.op",
        &[
            "gt does not apply to page.url",
            "text",
            "use equals, contains",
        ],
    );
}

#[test]
fn equals_with_text_on_a_number_is_refused() {
    let toml = with_when(r#"{ var = "cart.value", op = "equals", value = "fifty" }"#);
    assert_refused(
        &toml,
        "when.value",
        &["cart.value is a number", "must be a number", "\"fifty\""],
    );
}

#[test]
fn a_numeric_operator_with_a_text_value_is_refused() {
    let toml = with_when(r#"{ var = "cart.value", op = "gte", value = "50" }"#);
    assert_refused(&toml, "when.value", &["must be a number", "\"50\""]);
}

#[test]
fn a_page_type_that_does_not_exist_is_refused() {
    let toml = with_when(r#"{ var = "page.type", op = "equals", value = "chekout" }"#);
    assert_refused(
        &toml,
        "when.value",
        &["unknown page type \"chekout\"", "checkout"],
    );

    let toml = with_when(r#"{ var = "page.type", op = "in", value = ["cart", "chekout"] }"#);
    assert_refused(&toml, "when.value", &["unknown page type \"chekout\""]);

    let toml = with_when(r#"{ var = "behaviour.page_types", op = "contains", value = "chekout" }"#);
    assert_refused(&toml, "when.value", &["unknown page type \"chekout\""]);

    // In the rule's page scope, the type is checked when the file is read.
    let text = syntax_error(&with_extra(r#"pages = ["chekout"]"#));
    assert!(text.contains("chekout"), "{text}");
}

#[test]
fn device_types_and_weekdays_that_do_not_exist_are_refused() {
    let toml = with_when(r#"{ var = "device.type", op = "equals", value = "phone" }"#);
    assert_refused(&toml, "when.value", &["unknown device type \"phone\""]);
    let toml = with_when(r#"{ var = "time.weekday", op = "in", value = ["mon", "monday"] }"#);
    assert_refused(&toml, "when.value", &["unknown weekday \"monday\""]);
}

#[test]
fn contains_on_a_number_is_refused() {
    let toml = with_when(r#"{ var = "cart.value", op = "contains", value = "5" }"#);
    assert_refused(
        &toml,
        "when.op",
        &["contains does not apply to cart.value", "a number"],
    );
}

/// The operator, not the value, is what does not fit a number: the error should say so even
/// when the value is a number too, so that the author is not sent to rewrite `5` as `"5"` only
/// to be refused again.
#[test]
fn contains_on_a_number_with_a_numeric_value_blames_the_operator() {
    let toml = with_when(r#"{ var = "cart.value", op = "contains", value = 5 }"#);
    assert_refused(
        &toml,
        "when.op",
        &["contains does not apply to cart.value", "a number"],
    );
}

#[test]
fn operators_that_do_not_fit_the_variable_type_are_refused() {
    let cases = [
        (
            r#"{ var = "behaviour.hovered", op = "equals", value = "faq" }"#,
            "use contains or not_contains",
        ),
        (
            r#"{ var = "page.type", op = "starts_with", value = "ch" }"#,
            "use equals or in",
        ),
        (
            r#"{ var = "behaviour.exit_intent", op = "gt", value = 0 }"#,
            "use equals true/false",
        ),
        (
            r#"{ var = "time.date", op = "equals", value = "2026-01-01" }"#,
            "use before, after or between dates",
        ),
        (
            r#"{ var = "cart.value", op = "before", value = "2026-01-01" }"#,
            "before does not apply to cart.value",
        ),
        (
            r#"{ var = "visitor.traits.signup", op = "after", value = "2026-01-01" }"#,
            "after does not apply",
        ),
        (
            r#"{ var = "page.title", op = "between", value = [1, 2] }"#,
            "between does not apply to page.title",
        ),
    ];
    for (when, reason) in cases {
        assert_refused(&with_when(when), "when.op", &[reason]);
    }
}

#[test]
fn a_boolean_compared_with_text_is_refused() {
    let toml = with_when(r#"{ var = "behaviour.exit_intent", op = "equals", value = "yes" }"#);
    assert_refused(&toml, "when.value", &["must be true or false"]);
}

#[test]
fn exists_takes_only_true_or_false() {
    let toml = with_when(r#"{ var = "cart.value", op = "exists", value = "yes" }"#);
    assert_refused(&toml, "when.value", &["exists takes true or false"]);
}

#[test]
fn an_exact_test_on_a_continuously_measured_variable_is_refused() {
    for when in [
        r#"{ var = "time.on_page", op = "equals", value = 30 }"#,
        r#"{ var = "time.on_site", op = "not_equals", value = 30 }"#,
        r#"{ var = "time.idle", op = "in", value = [5, 10] }"#,
        r#"{ var = "cart.checkout_time", op = "equals", value = 45 }"#,
        r#"{ var = "cart.idle", op = "not_in", value = [60] }"#,
    ] {
        assert_refused(
            &with_when(when),
            "when.op",
            &["measured continuously", "use gte, lte or between"],
        );
    }
    // The same variables take ranges.
    assert_accepted(&with_when(
        r#"{ var = "time.on_page", op = "between", value = [30, 60] }"#,
    ));
}

// ---- between and in -------------------------------------------------------------------------

#[test]
fn between_with_low_above_high_is_refused() {
    let toml = with_when(r#"{ var = "cart.value", op = "between", value = [50, 20] }"#);
    assert_refused(&toml, "when.value", &["low 50 is above high 20"]);

    let toml =
        with_when(r#"{ var = "time.date", op = "between", value = ["2026-12-31", "2026-12-01"] }"#);
    assert_refused(&toml, "when.value", &["the first date is after the second"]);
}

#[test]
fn between_takes_exactly_two_values() {
    let toml = with_when(r#"{ var = "cart.value", op = "between", value = [10, 20, 30] }"#);
    assert_refused(&toml, "when.value", &["exactly two values, not 3"]);
    let toml = with_when(r#"{ var = "cart.value", op = "between", value = [10] }"#);
    assert_refused(&toml, "when.value", &["exactly two values, not 1"]);
    let toml = with_when(r#"{ var = "cart.value", op = "between", value = 10 }"#);
    assert_refused(&toml, "when.value", &["between takes [low, high]"]);
    let toml = with_when(r#"{ var = "cart.value", op = "between", value = ["a", "b"] }"#);
    assert_refused(&toml, "when.value", &["must be a number"]);
}

#[test]
fn in_takes_a_non_empty_list() {
    let toml = with_when(r#"{ var = "page.type", op = "in", value = "checkout" }"#);
    assert_refused(&toml, "when.value", &["in takes a list"]);
    let toml = with_when(r#"{ var = "page.type", op = "not_in", value = "checkout" }"#);
    assert_refused(&toml, "when.value", &["not_in takes a list"]);
    let toml = with_when(r#"{ var = "page.type", op = "in", value = [] }"#);
    assert_refused(&toml, "when.value", &["must hold 1 to 256 values"]);
    let many: Vec<String> = (0..257).map(|i| i.to_string()).collect();
    let toml = with_when(&format!(
        r#"{{ var = "cart.items", op = "in", value = [{}] }}"#,
        many.join(", ")
    ));
    assert_refused(&toml, "when.value", &["must hold 1 to 256 values"]);
}

#[test]
fn a_list_where_a_single_value_is_expected_is_refused() {
    let toml = with_when(r#"{ var = "cart.value", op = "equals", value = [1, 2] }"#);
    assert_refused(&toml, "when.value", &["must be a number"]);
    let toml = with_when(r#"{ var = "visitor.traits.plan", op = "equals", value = ["a"] }"#);
    assert_refused(&toml, "when.value", &["is not a single value"]);
}

// ---- the shape of the tree ------------------------------------------------------------------

#[test]
fn an_empty_all_is_refused() {
    assert_refused(&with_when("{ all = [] }"), "when.all", &["is empty"]);
    assert_refused(
        &with_when(r#"{ all = [{ var = "cart.items", op = "gt", value = 0 }, { any = [] }] }"#),
        "when.all[1].any",
        &["is empty", "at least one condition"],
    );
}

/// `depth` levels of `not` around one leaf.
fn nested_nots(depth: usize) -> String {
    let mut when = WHEN.to_owned();
    for _ in 0..depth {
        when = format!("{{ not = {when} }}");
    }
    when
}

#[test]
fn a_tree_nested_deeper_than_max_depth_is_refused() {
    assert_accepted(&with_when(&nested_nots(MAX_DEPTH)));
    let errors = field_errors(&with_when(&nested_nots(MAX_DEPTH + 1)));
    assert_eq!(errors.len(), 1, "{errors:?}");
    let expected_path = format!("when{}", ".not".repeat(MAX_DEPTH + 1));
    assert_eq!(errors[0].field, expected_path);
    assert!(
        errors[0]
            .reason
            .contains(&format!("deeper than {MAX_DEPTH} levels")),
        "{errors:?}"
    );
}

/// An `all` of `n` leaves.
fn many_leaves(n: usize) -> String {
    let leaves = vec![WHEN; n].join(", ");
    format!("{{ all = [{leaves}] }}")
}

#[test]
fn more_than_max_leaves_conditions_are_refused() {
    assert_accepted(&with_when(&many_leaves(MAX_LEAVES)));
    assert_refused(
        &with_when(&many_leaves(MAX_LEAVES + 1)),
        "when",
        &[&format!(
            "has {} conditions; at most {MAX_LEAVES}",
            MAX_LEAVES + 1
        )],
    );
}

// ---- the rule's own fields ------------------------------------------------------------------

#[test]
fn a_bad_id_is_refused() {
    let toml = with_extra("").replace("rule-under-test", "bad id");
    let errors = rule_errors(&toml);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].rule, "bad id");
    assert_eq!(errors[0].errors.len(), 1, "{errors:?}");
    let e = &errors[0].errors[0];
    assert_eq!(e.field, "id");
    assert!(e.reason.contains("\"bad id\""), "{e:?}");
    assert!(e.reason.contains("' '"), "{e:?}");
}

#[test]
fn duplicate_ids_in_one_file_are_refused() {
    let one = with_extra("");
    let toml = format!("{one}\n{one}");
    let errors = rule_errors(&toml);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].rule, "rule-under-test");
    assert_eq!(
        errors[0].errors,
        [FieldError {
            field: "id".to_owned(),
            reason: "is used by another rule in the same file".to_owned(),
        }]
    );
}

#[test]
fn a_rollout_above_100_percent_is_refused() {
    assert_refused(
        &with_extra("rollout = 150"),
        "rollout",
        &["150 is not a percentage between 0 and 100"],
    );
    assert_refused(
        &with_extra("rollout = -1"),
        "rollout",
        &["not a percentage"],
    );
    assert_accepted(&with_extra("rollout = 0.5"));
}

#[test]
fn a_lifetime_cap_of_zero_is_refused() {
    assert_refused(
        &with_extra("max_per_visitor = 0"),
        "max_per_visitor",
        &["would never fire", "paused"],
    );
}

#[test]
fn an_empty_or_overlong_name_is_refused() {
    let toml = with_extra("").replace("A rule under test", "   ");
    assert_refused(&toml, "name", &["1 to 120 characters"]);
    let toml = with_extra("").replace("A rule under test", &"n".repeat(121));
    assert_refused(&toml, "name", &["1 to 120 characters"]);
}

#[test]
fn a_bad_goal_is_refused() {
    assert_refused(
        &with_extra(r#"goal = "event:trial started""#),
        "goal",
        &["must not contain spaces"],
    );
    let text = syntax_error(&with_extra(r#"goal = "purchase""#));
    assert!(text.contains("unknown goal \"purchase\""), "{text}");
}

#[test]
fn a_blank_department_is_refused() {
    assert_refused(
        &with_extra(r#"department = " ""#),
        "department",
        &["1 to 64 characters"],
    );
}

#[test]
fn a_bad_duration_is_refused_when_the_file_is_read() {
    let text = syntax_error(&with_extra(r#"delay = "ten minutes""#));
    assert!(text.contains("\"ten minutes\""), "{text}");
    let text = syntax_error(&with_extra("repeat_after = -5"));
    assert!(text.contains("cannot be negative"), "{text}");
}

#[test]
fn an_out_of_range_ai_greeting_is_refused() {
    assert_refused(
        &with_extra("ai_greeting = { prompt = \"Greet them\", max_chars = 5 }"),
        "ai_greeting.max_chars",
        &["between 20 and 500"],
    );
    assert_refused(
        &with_extra("ai_greeting = { prompt = \"\" }"),
        "ai_greeting.prompt",
        &["1 to 2000 characters"],
    );
}

// ---- messages -------------------------------------------------------------------------------

#[test]
fn a_card_with_four_buttons_is_refused() {
    let toml = with_message(
        r#"{ type = "card", title = "Need help?", body = "Pick one", buttons = [
            { label = "A", action = "reply" },
            { label = "B", action = "reply" },
            { label = "C", action = "reply" },
            { label = "D", action = "reply" },
        ] }"#,
    );
    assert_refused(&toml, "message.buttons", &["has 4 buttons; at most 3"]);
}

#[test]
fn a_javascript_url_in_a_button_is_refused() {
    let toml = with_message(
        r#"{ type = "card", title = "Need help?", body = "", buttons = [
            { label = "Open", action = "url", value = "javascript:alert(1)" },
        ] }"#,
    );
    assert_refused(
        &toml,
        "message.buttons[0].value",
        &["\"javascript:alert(1)\"", "http(s) URL"],
    );
    for bad in [
        "//evil.example/x",
        "data:text/html,hi",
        "JAVASCRIPT:alert(1)",
    ] {
        let toml = with_message(&format!(
            r#"{{ type = "card", title = "T", body = "", image = "{bad}" }}"#
        ));
        assert_refused(&toml, "message.image", &["http(s) URL"]);
    }
    // Plain links and site paths are fine.
    assert_accepted(&with_message(
        r#"{ type = "card", title = "T", body = "", image = "https://cdn.example/x.png", buttons = [
            { label = "Pricing", action = "url", value = "/pricing" },
        ] }"#,
    ));
}

#[test]
fn a_button_that_needs_a_value_is_refused_without_one() {
    let toml = with_message(
        r#"{ type = "card", title = "T", body = "", buttons = [
            { label = "Ask", action = "reply" },
            { label = "Apply", action = "coupon" },
        ] }"#,
    );
    assert_refused(&toml, "message.buttons[1].value", &["is required"]);
}

#[test]
fn an_unknown_template_variable_is_refused_with_the_nearest_name() {
    let toml = with_message(r#"{ type = "text", text = "About {{ page.titel }}?" }"#);
    assert_refused(
        &toml,
        "message.text",
        &[
            "unknown variable \"page.titel\"",
            "did you mean \"page.title\"",
        ],
    );
}

#[test]
fn an_unknown_template_filter_is_refused() {
    let toml = with_message(r#"{ type = "text", text = "{{ page.title | shout }}" }"#);
    assert_refused(
        &toml,
        "message.text",
        &["unknown filter \"shout\"", "money"],
    );
    // The known ones are fine.
    assert_accepted(&with_message(
        r#"{ type = "text", text = "{{ cart.value | money }} for {{ visitor.traits.name | default('you') | title }}" }"#,
    ));
}

/// A filter is a filter wherever the template uses it: in `{% if %}` and `{% for %}` too. Left
/// unchecked there, the typo would only surface when the server renders the message, which
/// is evaluation time.
#[test]
fn template_tags_and_arithmetic_are_refused_so_rendering_stays_cheap() {
    // A filter hidden in a tag, a loop (nested, it would render for seconds), arithmetic.
    for text in [
        "{% if page.title | shout %}Hi{% endif %}",
        "{% for a in page.url %}{% for b in page.url %}x{% endfor %}{% endfor %}",
    ] {
        let toml = with_message(&format!(r#"{{ type = "text", text = "{text}" }}"#));
        assert_refused(&toml, "message.text", &["not {% tags %}"]);
    }
    let toml = with_message(r#"{ type = "text", text = "{{ page.url * 100000000 }}" }"#);
    assert_refused(&toml, "message.text", &["not a variable with filters"]);
    assert_accepted(&with_message(
        r#"{ type = "text", text = "{{ cart.value | money }} for {{ page.title | truncate(40) | upper }}" }"#,
    ));
}

/// Page titles often hold a `|`; inside a string literal it is text, not a filter.
#[test]
fn a_pipe_inside_a_template_string_is_not_taken_for_a_filter() {
    assert_accepted(&with_message(
        r#"{ type = "text", text = "Welcome to {{ page.title | default('our shop | home') }}" }"#,
    ));
}

#[test]
fn a_template_syntax_error_is_refused() {
    let toml = with_message(r#"{ type = "text", text = "Hello {{ page.title " }"#);
    assert_refused(&toml, "message.text", &["template error"]);
}

#[test]
fn a_translation_of_another_message_type_is_refused() {
    let toml =
        with_extra(r#"translations.fr = { type = "open_chat", question = "Une question ?" }"#);
    assert_refused(
        &toml,
        "translations.fr.type",
        &["\"open_chat\"", "\"text\"", "keeps the message's type"],
    );
}

#[test]
fn a_translation_is_checked_like_the_message() {
    let toml =
        with_extra(r#"translations.fr = { type = "text", text = "À propos de {{ page.titel }}" }"#);
    assert_refused(
        &toml,
        "translations.fr.text",
        &["unknown variable \"page.titel\""],
    );
    let toml = with_extra(r#"translations.French = { type = "text", text = "Bonjour" }"#);
    assert_refused(&toml, "translations.French", &["is not a language tag"]);
}

#[test]
fn message_fields_out_of_bounds_are_refused() {
    let cases = [
        (
            r#"{ type = "text", text = "" }"#.to_owned(),
            "message.text",
            "must not be empty",
        ),
        (
            format!(r#"{{ type = "text", text = "{}" }}"#, "x".repeat(601)),
            "message.text",
            "longer than 600 characters",
        ),
        (
            format!(r#"{{ type = "card", title = "{}", body = "" }}"#, "x".repeat(81)),
            "message.title",
            "longer than 80 characters",
        ),
        (
            r#"{ type = "offer", text = "10% off", code = "TEN OFF" }"#.to_owned(),
            "message.code",
            "printable ASCII",
        ),
        (
            r#"{ type = "offer", text = "10% off", code = "TEN", expires = "31/12/2026" }"#
                .to_owned(),
            "message.expires",
            "\"31/12/2026\" is not a date",
        ),
        (
            r#"{ type = "email_capture", text = "Stay in touch", consent = " " }"#.to_owned(),
            "message.consent",
            "consent",
        ),
        (
            r#"{ type = "comparison", title = "Pick", items = [{ name = "A" }, { name = "B" }, { name = "C" }] }"#
                .to_owned(),
            "message.items",
            "exactly 2",
        ),
        (
            r#"{ type = "open_chat", question = "" }"#.to_owned(),
            "message.question",
            "must not be empty",
        ),
    ];
    for (message, field, reason) in cases {
        assert_refused(&with_message(&message), field, &[reason]);
    }
}

#[test]
fn an_unknown_message_type_is_refused_when_the_file_is_read() {
    let text = syntax_error(&with_message(r#"{ type = "popup", text = "Hi" }"#));
    assert!(text.contains("popup"), "{text}");
}

// ---- schedules and dates --------------------------------------------------------------------

#[test]
fn a_time_of_day_that_does_not_exist_is_refused() {
    let toml = with_extra(r#"schedule = { hours = { from = "25:00", to = "17:00" } }"#);
    assert_refused(
        &toml,
        "schedule.hours.from",
        &["\"25:00\" is not a time of day"],
    );
    let toml = with_extra(r#"schedule = { hours = { from = "09:00", to = "9pm" } }"#);
    assert_refused(
        &toml,
        "schedule.hours.to",
        &["\"9pm\" is not a time of day"],
    );
}

#[test]
fn business_hours_that_close_before_they_open_are_refused() {
    let toml = with_extra(r#"schedule = { hours = { from = "17:00", to = "09:00" } }"#);
    assert_refused(
        &toml,
        "schedule.hours.to",
        &["must be after schedule.hours.from"],
    );
    let toml = with_extra(r#"schedule = { hours = { days = [], from = "09:00", to = "17:00" } }"#);
    assert_refused(&toml, "schedule.hours.days", &["at least one day"]);
}

#[test]
fn bad_dates_are_refused() {
    let toml = with_extra(r#"schedule = { start = "2026-02-30" }"#);
    assert_refused(&toml, "schedule.start", &["\"2026-02-30\" is not a date"]);
    let toml = with_extra(r#"schedule = { end = "next week" }"#);
    assert_refused(&toml, "schedule.end", &["\"next week\" is not a date"]);
    let toml = with_extra(r#"schedule = { start = "2026-12-31", end = "2026-12-01" }"#);
    assert_refused(&toml, "schedule.end", &["must be after schedule.start"]);
    let toml = with_when(r#"{ var = "time.date", op = "before", value = "next tuesday" }"#);
    assert_refused(&toml, "when.value", &["\"next tuesday\" is not a date"]);
    let toml = with_when(r#"{ var = "time.date", op = "after", value = 2026 }"#);
    assert_refused(&toml, "when.value", &["must be text"]);
    // A TOML date literal is not a rule date: dates are written as text.
    let text = syntax_error(&with_when(
        r#"{ var = "time.date", op = "after", value = 2026-03-11 }"#,
    ));
    assert!(text.contains("line 6"), "{text}");
}

// ---- the file -------------------------------------------------------------------------------

#[test]
fn an_unknown_key_in_a_rule_is_refused() {
    let text = syntax_error(&with_extra("prority = 5"));
    assert!(text.contains("prority"), "{text}");
    let text = syntax_error(&with_message(
        r#"{ type = "text", text = "Hi", colour = "red" }"#,
    ));
    assert!(text.contains("colour"), "{text}");
    let text = syntax_error(&with_extra(
        r#"schedule = { hours = { from = "09:00", to = "17:00", timezone = "UTC" } }"#,
    ));
    assert!(text.contains("timezone"), "{text}");
    let text = syntax_error(&format!("{}\n[settings]\nx = 1\n", with_extra("")));
    assert!(text.contains("settings"), "{text}");
}

#[test]
fn a_file_over_one_mebibyte_is_refused() {
    let base = with_extra("");
    let pad = |total: usize| {
        let mut text = base.clone();
        text.push('#');
        text.push_str(&"x".repeat(total - text.len()));
        text
    };
    let at_limit = pad(MAX_RULE_FILE_BYTES);
    assert_eq!(at_limit.len(), MAX_RULE_FILE_BYTES);
    assert_accepted(&at_limit);

    let over = pad(MAX_RULE_FILE_BYTES + 1);
    match RuleSet::from_toml(&over, Tz::UTC) {
        Err(LoadError::TooLarge(why)) => assert!(why.contains("1048576"), "{why}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let json = format!("{{\"rules\": []}}{}", " ".repeat(MAX_RULE_FILE_BYTES));
    assert!(matches!(
        RuleSet::from_json(&json, Tz::UTC),
        Err(LoadError::TooLarge(_))
    ));
}

#[test]
fn more_than_max_rules_are_refused() {
    let rule = |i: usize| {
        format!("[[rules]]\nid = \"r{i}\"\nname = \"R\"\nwhen = {WHEN}\nmessage = {MESSAGE}\n")
    };
    let file: String = (0..=MAX_RULES).map(rule).collect();
    match RuleSet::from_toml(&file, Tz::UTC) {
        Err(LoadError::TooLarge(why)) => assert!(why.contains("at most 1000"), "{why}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let file: String = (0..MAX_RULES).map(rule).collect();
    assert_eq!(RuleSet::from_toml(&file, Tz::UTC).unwrap().len(), MAX_RULES);
}

// ---- every problem at once ------------------------------------------------------------------

#[test]
fn every_problem_of_a_rule_is_reported_at_once() {
    let toml = rule_file(
        r#"{ all = [
            { var = "cart.valu", op = "gt", value = 0 },
            { var = "page.path", op = "matches", value = "(" },
        ] }"#,
        MESSAGE,
        "rollout = 150",
    );
    let errors = field_errors(&toml);
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    for field in ["rollout", "when.all[0].var", "when.all[1].value"] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }
}

#[test]
fn every_problem_of_every_part_of_a_rule_is_reported() {
    let toml = rule_file(
        r#"{ any = [
            { var = "cart.value", op = "equals", value = "fifty" },
            { not = { var = "page.type", op = "in", value = ["chekout"] } },
            { var = "time.on_page", op = "equals", value = 3 },
        ] }"#,
        r#"{ type = "card", title = "{{ page.titel }}", body = "", buttons = [
            { label = "Go", action = "url", value = "javascript:void(0)" },
        ] }"#,
        r#"max_per_visitor = 0
translations.de = { type = "text", text = "Hallo" }
schedule = { hours = { from = "25:00", to = "17:00" } }"#,
    );
    let errors = field_errors(&toml);
    let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "max_per_visitor",
            "message.buttons[0].value",
            "message.title",
            "schedule.hours.from",
            "translations.de.type",
            "when.any[0].value",
            "when.any[1].not.value",
            "when.any[2].op",
        ],
        "{errors:#?}"
    );
}

#[test]
fn the_problems_of_every_rule_in_a_file_are_reported_together() {
    let bad = |id: &str, when: &str| {
        format!("[[rules]]\nid = \"{id}\"\nname = \"R\"\nwhen = {when}\nmessage = {MESSAGE}\n")
    };
    let file = [
        bad("first", r#"{ var = "cart.valu", op = "gt", value = 1 }"#),
        bad("fine", WHEN),
        bad("second", r#"{ var = "page.url", op = "gt", value = 1 }"#),
    ]
    .concat();
    let errors = rule_errors(&file);
    let rules: Vec<&str> = errors.iter().map(|e| e.rule.as_str()).collect();
    assert_eq!(rules, ["first", "second"]);
    // The text of the error names each rule and each field.
    let text = LoadError::Invalid(errors).to_string();
    assert!(text.contains("rule \"first\" is invalid"), "{text}");
    assert!(
        text.contains("when.var: unknown variable \"cart.valu\""),
        "{text}"
    );
    assert!(text.contains("rule \"second\" is invalid"), "{text}");
    assert!(
        text.contains("when.op: gt does not apply to page.url"),
        "{text}"
    );
}

#[test]
fn the_problems_of_a_schedule_are_reported_together() {
    let toml = with_extra(
        r#"schedule = { start = "someday", end = "never", hours = { from = "25:00", to = "09:00" } }"#,
    );
    let errors = field_errors(&toml);
    let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["schedule.end", "schedule.hours.from", "schedule.start"],
        "{errors:#?}"
    );
}

#[test]
fn a_delayed_rule_on_the_event_being_handled_is_refused() {
    let toml = r#"
[[rules]]
id = "late"
name = "Late"
status = "live"
delay = "10s"
when = { var = "event.name", op = "equals", value = "payment_failed" }
message = { type = "text", text = "Need help?" }
"#;
    let err = beckon_engine::RuleSet::from_toml(toml, beckon_engine::Tz::UTC).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("delay") && text.contains("event.tracked"),
        "{text}"
    );
    let undelayed = toml.replace("delay = \"10s\"\n", "");
    assert!(beckon_engine::RuleSet::from_toml(&undelayed, beckon_engine::Tz::UTC).is_ok());
}
