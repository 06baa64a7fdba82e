//! The relative lift with an interval that stays valid however often it is looked at: gbstats'
//! `SequentialTwoSidedTTest` with `SequentialConfig(difference_type="relative")`
//! (`gbstats/frequentist/tests.py`), the asymptotic confidence sequence of Waudby-Smith et al.,
//! "Time-uniform central limit theory and asymptotic confidence sequences" (arXiv:2103.06476v7),
//! its equation 9 for the interval, 161 for the mixing parameter and 155 for the p-value.

use crate::lift::{Difference, Lift, finite};
use crate::moments::Moments;

/// The tuning parameter gbstats (and GrowthBook's settings) use when none is given: the number of
/// units, both arms together, at which the sequential interval is made narrowest (the mixing
/// parameter of eq. 161 is chosen for that sample size).
pub const DEFAULT_TUNING: f64 = 5000.0;

/// The relative lift of `treatment` over `control` with a `1 − alpha` always-valid interval and
/// p-value: gbstats 0.8.0's `SequentialTwoSidedTTest`, relative, with
/// `sequential_tuning_parameter = tuning` (see [`DEFAULT_TUNING`]).
///
/// The point estimate, its standard error and `df` are those of [`crate::relative_lift`]; the
/// interval is wider, and the p-value is the always-valid one (the reciprocal of the mixture
/// e-value, at most 1), not the t-test's. `None` in the cases [`crate::relative_lift`] gives
/// `None`, and when `tuning` is not a positive number.
pub fn sequential_lift(
    control: &Moments,
    treatment: &Moments,
    alpha: f64,
    tuning: f64,
) -> Option<Lift> {
    let difference = Difference::of(control, treatment)?;
    if !(alpha > 0.0 && alpha < 1.0 && tuning > 0.0 && tuning.is_finite()) {
        return None;
    }
    let n = difference.n;
    let variance = difference.std_error.powi(2);
    // eq. 161: the mixing parameter chosen so that the interval is tightest at n = tuning.
    let rho2 = (-2.0 * alpha.ln() + (-2.0 * alpha.ln() + 1.0).ln()) / tuning;
    let n_rho2_1 = n * rho2 + 1.0;
    // eq. 9, with s² the variance of one unit's contribution (the lift's variance times n).
    let s2 = variance * n;
    let width =
        s2.sqrt() * (2.0 * n_rho2_1 * (n_rho2_1.sqrt() / alpha).ln() / (n * n * rho2)).sqrt();
    // eq. 155: the mixture e-value of "no lift"; its reciprocal is the always-valid p-value.
    let st2 = difference.relative.powi(2) * n / variance;
    let e_value = (rho2 * st2 / (2.0 * n_rho2_1)).exp() / n_rho2_1.sqrt();
    finite(Lift {
        relative: difference.relative,
        ci_low: difference.relative - width,
        ci_high: difference.relative + width,
        p_value: (1.0 / e_value).min(1.0),
        std_error: difference.std_error,
        df: difference.df,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relative_lift;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn gbstats_values() {
        // Printed by gbstats 0.8.0: SequentialTwoSidedTTest, relative, alpha 0.05, tuning 5000.
        let lift = sequential_lift(
            &Moments::proportion(1_000, 50),
            &Moments::proportion(1_000, 50),
            0.05,
            DEFAULT_TUNING,
        )
        .unwrap();
        assert!(close(lift.ci_high, 0.6089366477033546));
        assert_eq!(lift.p_value, 1.0);
        let lift = sequential_lift(
            &Moments::proportion(3, 1),
            &Moments::proportion(3, 2),
            0.05,
            DEFAULT_TUNING,
        )
        .unwrap();
        assert!(close(lift.ci_low, -45.048090720572176));
        assert!(close(lift.ci_high, 47.048090720572176));
        let lift = sequential_lift(
            &Moments::proportion(100_000, 100),
            &Moments::proportion(100_000, 5_000),
            0.05,
            DEFAULT_TUNING,
        )
        .unwrap();
        assert!(close(lift.ci_low, 31.676459123716846));
        assert!((lift.p_value - 6.75736909085001e-20).abs() < 1e-30);
    }

    #[test]
    fn wider_than_the_fixed_interval() {
        let (control, treatment) = (
            Moments::proportion(9_000, 450),
            Moments::proportion(1_000, 60),
        );
        let fixed = relative_lift(&control, &treatment, 0.05).unwrap();
        let sequential = sequential_lift(&control, &treatment, 0.05, DEFAULT_TUNING).unwrap();
        assert_eq!(fixed.relative, sequential.relative);
        assert!(sequential.ci_low < fixed.ci_low && sequential.ci_high > fixed.ci_high);
        assert!(sequential.p_value >= fixed.p_value);
    }

    #[test]
    fn an_overwhelming_lift_has_p_zero_not_nan() {
        let lift = sequential_lift(
            &Moments::proportion(10_000_000, 10_000),
            &Moments::proportion(10_000_000, 1_000_000),
            0.05,
            DEFAULT_TUNING,
        )
        .unwrap();
        assert_eq!(lift.p_value, 0.0);
    }

    #[test]
    fn degenerate_inputs_give_none() {
        let some = Moments::proportion(100, 5);
        assert_eq!(
            sequential_lift(&Moments::proportion(0, 0), &some, 0.05, DEFAULT_TUNING),
            None
        );
        assert_eq!(
            sequential_lift(&some, &Moments::proportion(100, 0), 0.05, DEFAULT_TUNING),
            None
        );
        for tuning in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(sequential_lift(&some, &some, 0.05, tuning), None);
        }
        assert_eq!(sequential_lift(&some, &some, 1.5, DEFAULT_TUNING), None);
    }
}
