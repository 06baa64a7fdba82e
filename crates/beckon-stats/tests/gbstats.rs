//! Beckon's statistics against the reference: about forty experiments (proportions and
//! revenue-like means, a handful of units to a billion, equal arms, large and tiny effects,
//! holdouts of 10 %, the cases gbstats refuses) computed here and by GrowthBook's statistics
//! engine, gbstats 0.8.0, in a Python child process (`tests/peers/gbstats_peer.py`).
//!
//! Agreement is to 1e-6: absolute for p-values (they lie in [0, 1]), and for the lift, its
//! interval, its standard error and the degrees of freedom absolute below 1 and relative above
//! (`|ours − theirs| ≤ 1e-6 · max(1, |theirs|)`), since a lift of +4900 % or 10⁸ degrees of
//! freedom carry their digits in proportion. Infinite bounds agree when both are the same
//! infinity. Where gbstats answers with its uninformative default (an error message, lift 0,
//! interval [0, 0]), Beckon answers `None`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use beckon_stats::{
    DEFAULT_TUNING, Lift, Metric, Moments, relative_lift, sequential_lift, srm_p_value,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The agreement asked for.
const TOLERANCE: f64 = 1e-6;

/// One experiment to compute both here and in gbstats.
struct Case {
    name: String,
    control: Moments,
    treatment: Moments,
    alpha: f64,
    tuning: f64,
    /// The planned split, for the sample-ratio check of the arms' sizes.
    weights: [f64; 2],
}

#[test]
fn agrees_with_gbstats() {
    let cases = cases();
    let srm = srm_cases(&cases);
    let request = json!({
        "cases": cases.iter().map(|c| json!({
            "metric": match c.control.metric {
                Metric::Proportion => "proportion",
                Metric::Mean => "mean",
            },
            "control": arm(&c.control),
            "treatment": arm(&c.treatment),
            "alpha": c.alpha,
            "tuning": c.tuning,
        })).collect::<Vec<_>>(),
        "srm": srm.iter().map(|(observed, weights)| json!({
            "observed": observed,
            "weights": weights,
        })).collect::<Vec<_>>(),
    });
    let answer = gbstats(&request);

    let mut check = Check::default();
    let answers = answer["cases"].as_array().expect("an answer per case");
    assert_eq!(answers.len(), cases.len());
    let mut refused = 0;
    for (case, theirs) in cases.iter().zip(answers) {
        let fixed = relative_lift(&case.control, &case.treatment, case.alpha);
        let sequential = sequential_lift(&case.control, &case.treatment, case.alpha, case.tuning);
        check.lift(&format!("{} (fixed)", case.name), fixed, &theirs["fixed"]);
        check.lift(
            &format!("{} (sequential)", case.name),
            sequential,
            &theirs["sequential"],
        );
        refused += usize::from(fixed.is_none());
    }
    let srm_answers = answer["srm"].as_array().expect("an answer per check");
    assert_eq!(srm_answers.len(), srm.len());
    for ((observed, weights), theirs) in srm.iter().zip(srm_answers) {
        let name = format!("srm {observed:?} {weights:?}");
        match srm_p_value(observed, weights) {
            Some(ours) => check.number(&name, "srm_p_value", ours, number(theirs), Scale::Absolute),
            None => check.fail(format!("{name}: ours None, gbstats {theirs}")),
        }
    }

    println!(
        "{} cases ({refused} refused by both) and {} sample-ratio checks against gbstats 0.8.0",
        cases.len(),
        srm.len()
    );
    for (field, (difference, name)) in &check.largest {
        println!("largest difference in {field}: {difference:.3e} ({name})");
    }
    assert!(
        check.failures.is_empty(),
        "disagreements with gbstats beyond {TOLERANCE}:\n{}",
        check.failures.join("\n")
    );
}

/// The experiments: a few written out, the rest drawn from a seeded generator.
fn cases() -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(0x6b57_a7e5);
    let mut cases = Vec::new();
    let mut add = |name: &str, control: Moments, treatment: Moments| {
        let total = (control.n + treatment.n).max(1) as f64;
        // The planned split is the one that was drawn, rounded to a tenth, so some arms are off
        // it a little and the check has something to measure.
        let share = ((control.n as f64 / total) * 10.0).round().clamp(1.0, 9.0) / 10.0;
        cases.push(Case {
            name: name.to_owned(),
            control,
            treatment,
            alpha: 0.05,
            tuning: DEFAULT_TUNING,
            weights: [share, 1.0 - share],
        });
    };
    let p = Moments::proportion;

    // Proportions, written out.
    add("three units each", p(3, 1), p(3, 2));
    add("a dozen units", p(10, 2), p(12, 5));
    add("fifty units", p(50, 5), p(50, 9));
    add("equal arms", p(1_000, 50), p(1_000, 50));
    add("a fifty-fold lift", p(100_000, 100), p(100_000, 5_000));
    add(
        "a tiny lift on millions",
        p(1_000_000, 50_000),
        p(1_000_000, 50_050),
    );
    add("a 10 % holdout", p(2_000, 100), p(18_000, 1_035));
    add(
        "a 10 % holdout of ten million",
        p(1_000_000, 50_000),
        p(9_000_000, 456_000),
    );
    add(
        "a 10 % holdout of a billion",
        p(100_000_000, 5_000_000),
        p(900_000_000, 45_030_000),
    );
    add("a 90 % control", p(9_000, 450), p(1_000, 62));
    add("a high rate", p(400, 360), p(400, 370));
    add("a loss", p(5_000, 400), p(5_000, 330));
    // Proportions, drawn.
    for n in [200, 1_000, 5_000, 20_000, 100_000] {
        let rate = rng.random_range(0.01..0.2);
        let lift = rng.random_range(-0.3..0.5);
        let control = drawn_proportion(&mut rng, n, rate);
        let treatment = drawn_proportion(&mut rng, n * 9, rate * (1.0 + lift));
        add(
            &format!("drawn proportions, {n} against {}", n * 9),
            control,
            treatment,
        );
    }
    // Holdouts of 10 % at low rates, where the control has few conversions.
    for n in [30, 300, 3_000, 30_000] {
        let control = drawn_proportion(&mut rng, n, 0.02);
        let treatment = drawn_proportion(&mut rng, n * 9, 0.023);
        add(
            &format!("drawn low rate, {n} against {}", n * 9),
            control,
            treatment,
        );
    }
    // What gbstats refuses.
    add("no conversion in the control", p(100, 0), p(100, 5));
    add("no conversion in the treatment", p(100, 5), p(100, 0));
    add("no unit in the treatment", p(100, 5), p(0, 0));
    add("only converters", p(100, 100), p(100, 50));

    // Means, written out.
    let m = Moments::from_sums;
    add("two units each", m(2, 3.0, 5.0), m(2, 4.0, 10.0));
    add("one unit in the control", m(1, 3.0, 9.0), m(5, 4.0, 10.0));
    add("no revenue at all", m(500, 0.0, 0.0), m(500, 10.0, 100.0));
    // Means, drawn: revenue per visitor, mostly zeros with a long tail.
    for (n, conversion, value) in [
        (20, 0.3, 40.0),
        (100, 0.1, 60.0),
        (1_000, 0.05, 80.0),
        (10_000, 0.03, 120.0),
        (100_000, 0.02, 200.0),
    ] {
        let lift = rng.random_range(-0.2..0.4);
        let control = revenue(&mut rng, n, conversion, value);
        let treatment = revenue(&mut rng, n, conversion, value * (1.0 + lift));
        add(&format!("drawn revenue, {n} each"), control, treatment);
    }
    let control = revenue(&mut rng, 5_000, 0.04, 90.0);
    let treatment = revenue(&mut rng, 45_000, 0.046, 90.0);
    add("drawn revenue, a 10 % holdout", control, treatment);
    let control = revenue(&mut rng, 3_000, 0.04, 90.0);
    add("equal revenue arms", control, control);
    let control = pages(&mut rng, 500, 3.0);
    let treatment = pages(&mut rng, 700, 3.3);
    add("drawn pages per visit", control, treatment);

    // Other levels and tunings on a few of the above.
    let base: Vec<(String, Moments, Moments)> = cases
        .iter()
        .filter(|c| c.name.starts_with("drawn"))
        .take(4)
        .map(|c| (c.name.clone(), c.control, c.treatment))
        .collect();
    for ((name, control, treatment), (alpha, tuning)) in base.into_iter().zip([
        (0.1, 1_000.0),
        (0.01, 100_000.0),
        (0.2, 50.0),
        (0.001, 5_000.0),
    ]) {
        cases.push(Case {
            name: format!("{name}, alpha {alpha}, tuning {tuning}"),
            control,
            treatment,
            alpha,
            tuning,
            weights: [0.5, 0.5],
        });
    }
    cases
}

/// The sample-ratio checks: each case's arm sizes against its planned split, and a few with
/// three arms or a weight of 0.
fn srm_cases(cases: &[Case]) -> Vec<(Vec<u64>, Vec<f64>)> {
    let mut checks: Vec<(Vec<u64>, Vec<f64>)> = cases
        .iter()
        .map(|c| (vec![c.control.n, c.treatment.n], c.weights.to_vec()))
        .collect();
    checks.extend([
        (vec![3_300, 3_350, 3_290], vec![1.0, 1.0, 1.0]),
        (vec![1_000, 4_100, 4_900], vec![0.1, 0.4, 0.5]),
        (vec![1_000, 2_000, 7_000], vec![0.2, 0.3, 0.5]),
        (vec![900, 100], vec![0.0, 1.0]),
        (vec![0, 0], vec![0.5, 0.5]),
        (vec![10_000, 0], vec![0.5, 0.5]),
    ]);
    checks
}

/// A proportion whose conversions are close to `n · rate`, off by about one binomial standard
/// deviation (an exact draw does not matter here: any counts are a valid experiment).
fn drawn_proportion(rng: &mut StdRng, n: u64, rate: f64) -> Moments {
    let sd = (n as f64 * rate * (1.0 - rate)).sqrt();
    let successes = (n as f64 * rate + sd * rng.random_range(-1.5..1.5)).round();
    Moments::proportion(n, successes.clamp(0.0, n as f64) as u64)
}

/// Revenue per visitor: a share `conversion` of `n` visitors spend, log-normally around
/// `value`; the others spend nothing.
fn revenue(rng: &mut StdRng, n: u64, conversion: f64, value: f64) -> Moments {
    let mut moments = Moments::default();
    for _ in 0..n {
        let spent = if rng.random_bool(conversion) {
            let sigma = 0.8;
            value * (sigma * standard_normal(rng) - sigma * sigma / 2.0).exp()
        } else {
            0.0
        };
        moments.add(spent);
    }
    moments
}

/// Pages per visit: one, plus a rounded exponential around `mean − 1`.
fn pages(rng: &mut StdRng, n: u64, mean: f64) -> Moments {
    let mut moments = Moments::default();
    for _ in 0..n {
        let extra = -(mean - 1.0) * (1.0 - rng.random::<f64>()).ln();
        moments.add(1.0 + extra.round());
    }
    moments
}

/// Box–Muller.
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn arm(m: &Moments) -> Value {
    json!({ "n": m.n, "sum": m.sum, "sum_squares": m.sum_squares })
}

/// Runs the peer on `request` and returns what it printed.
fn gbstats(request: &Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/gbstats_peer.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the gbstats peer");
    child
        .stdin
        .take()
        .expect("the peer's stdin")
        .write_all(request.to_string().as_bytes())
        .expect("send the cases to the peer");
    let output = child.wait_with_output().expect("the peer's answer");
    assert!(output.status.success(), "the gbstats peer failed");
    serde_json::from_slice(&output.stdout).expect("the peer prints JSON")
}

/// The Python that has gbstats: `BECKON_PYTHON` (set by `scripts/test.sh`), else `python3`.
fn python() -> String {
    let python = std::env::var("BECKON_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let ok = Command::new(&python)
        .args(["-c", "import gbstats"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{python} lacks gbstats: run ./scripts/test.sh, which installs gbstats 0.8.0 into a \
         virtual environment and sets BECKON_PYTHON to its Python, or set BECKON_PYTHON to a \
         Python that has it"
    );
    python
}

/// A number the peer printed, non-finite ones being strings.
fn number(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        Value::String(s) if s == "nan" => f64::NAN,
        _ => v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")),
    }
}

#[derive(Clone, Copy)]
enum Scale {
    /// `|ours − theirs| ≤ TOLERANCE`.
    Absolute,
    /// `|ours − theirs| ≤ TOLERANCE · max(1, |theirs|)`.
    Relative,
}

/// The comparisons made so far: what failed, and the largest difference per field.
#[derive(Default)]
struct Check {
    failures: Vec<String>,
    largest: std::collections::BTreeMap<&'static str, (f64, String)>,
}

impl Check {
    fn lift(&mut self, name: &str, ours: Option<Lift>, theirs: &Value) {
        match (ours, theirs.get("error")) {
            (None, Some(_)) => {}
            (Some(ours), None) => {
                use Scale::{Absolute, Relative};
                let fields = [
                    ("relative", ours.relative, Relative),
                    ("ci_low", ours.ci_low, Relative),
                    ("ci_high", ours.ci_high, Relative),
                    ("p_value", ours.p_value, Absolute),
                    ("std_error", ours.std_error, Relative),
                    ("df", ours.df, Relative),
                ];
                for (field, value, scale) in fields {
                    self.number(name, field, value, number(&theirs[field]), scale);
                }
            }
            (ours, _) => self.fail(format!("{name}: ours {ours:?}, gbstats {theirs}")),
        }
    }

    fn number(&mut self, name: &str, field: &'static str, ours: f64, theirs: f64, scale: Scale) {
        if ours.is_infinite() || theirs.is_infinite() {
            if ours != theirs {
                self.fail(format!("{name}: {field} ours {ours}, gbstats {theirs}"));
            }
            return;
        }
        let difference = (ours - theirs).abs();
        let allowed = match scale {
            Scale::Absolute => TOLERANCE,
            Scale::Relative => TOLERANCE * theirs.abs().max(1.0),
        };
        // A NaN on either side makes the difference NaN, which fails.
        if difference.is_nan() || difference > allowed {
            self.fail(format!(
                "{name}: {field} ours {ours}, gbstats {theirs} (difference {difference:e})"
            ));
        }
        let scaled = match scale {
            Scale::Absolute => difference,
            Scale::Relative => difference / theirs.abs().max(1.0),
        };
        let largest = self.largest.entry(field).or_insert((0.0, String::new()));
        if scaled > largest.0 {
            *largest = (scaled, name.to_owned());
        }
    }

    fn fail(&mut self, message: String) {
        self.failures.push(message);
    }
}
