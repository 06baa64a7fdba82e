//! The relative lift of a treatment over its control, with its confidence interval and p-value:
//! gbstats' `TwoSidedTTest` with `FrequentistConfig(difference_type="relative")`
//! (`gbstats/frequentist/tests.py`), a Welch t-test on the delta-method variance of the ratio.

use crate::moments::Moments;
use crate::student_t;

/// A lift with what is known of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lift {
    /// `(treatment mean − control mean) / control mean`: +0.15 is 15 % more.
    pub relative: f64,
    /// The lower bound of the interval around `relative`.
    pub ci_low: f64,
    /// The upper bound of the interval around `relative`.
    pub ci_high: f64,
    /// The two-sided p-value of "no lift".
    pub p_value: f64,
    /// The standard error of `relative` (the delta-method variance's square root; gbstats'
    /// `uplift.stddev`).
    pub std_error: f64,
    /// The Welch–Satterthwaite degrees of freedom of the t distribution the fixed-horizon interval
    /// and p-value come from (gbstats' `dof`); the sequential interval does not use it.
    pub df: f64,
}

/// The relative lift of `treatment` over `control`, with a two-sided `1 − alpha` confidence
/// interval and p-value: gbstats 0.8.0's `TwoSidedTTest`, relative.
///
/// `None` where gbstats answers with its uninformative default (lift 0, interval `[0, 0]`, p-value
/// 1, and an error message): a control whose mean is 0 (no users, or no conversions), an arm
/// without variance (no users, one user, no conversion or only conversions), and also where it
/// would answer something that means nothing: a control whose mean is below 0, an arm of fewer
/// than two units, `alpha` outside `(0, 1)`, or sums that are not finite.
pub fn relative_lift(control: &Moments, treatment: &Moments, alpha: f64) -> Option<Lift> {
    let difference = Difference::of(control, treatment)?;
    if !(alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    let df = difference.df;
    let t = difference.relative / difference.std_error;
    // gbstats' `2 * (1 - t.cdf(abs(t), dof))`, computed on the lower tail so that small p-values
    // keep their digits.
    let p_value = (2.0 * student_t::cdf(-t.abs(), df)?).min(1.0);
    let width = student_t::quantile(1.0 - alpha / 2.0, df)? * difference.std_error;
    finite(Lift {
        relative: difference.relative,
        ci_low: difference.relative - width,
        ci_high: difference.relative + width,
        p_value,
        std_error: difference.std_error,
        df,
    })
}

/// Why there is no lift to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// An arm has fewer than two units.
    TooFew,
    /// The held-out arm's mean is zero (for a rate: nobody converted), so a relative change has
    /// nothing to be relative to.
    NoBaseline,
    /// An arm has no variance: every unit in it had the same value (everyone converted, or
    /// nobody did), which a t-test cannot weigh.
    NoVariation,
}

impl Unanswered {
    /// Why there is no lift, in a few words for the dashboard.
    pub fn describe(self) -> &'static str {
        match self {
            Unanswered::TooFew => "not enough visitors in both arms yet",
            Unanswered::NoBaseline => "nothing yet in the held-out arm to compare with",
            Unanswered::NoVariation => "every visitor of an arm the same: nothing to weigh",
        }
    }
}

/// Why [`relative_lift`] has no answer for these arms, or `None` when it has one (or when its
/// answer failed only for sums that are not finite).
pub fn unanswered(control: &Moments, treatment: &Moments) -> Option<Unanswered> {
    if control.n < 2 || treatment.n < 2 {
        Some(Unanswered::TooFew)
    } else if control.mean() <= 0.0 {
        Some(Unanswered::NoBaseline)
    } else if control.variance() <= 0.0 || treatment.variance() <= 0.0 {
        Some(Unanswered::NoVariation)
    } else {
        None
    }
}

/// What the fixed-horizon and the sequential test share: the relative difference, its
/// delta-method standard error, and the Welch–Satterthwaite degrees of freedom.
pub(crate) struct Difference {
    pub relative: f64,
    pub std_error: f64,
    pub df: f64,
    /// Units in both arms.
    pub n: f64,
}

impl Difference {
    /// gbstats' `frequentist_diff`, `frequentist_variance` and `dof`, relative, after the checks
    /// of `compute_result` (and the few more said at [`relative_lift`]).
    pub(crate) fn of(control: &Moments, treatment: &Moments) -> Option<Difference> {
        if control.n < 2 || treatment.n < 2 {
            return None;
        }
        let (mean_a, var_a, n_a) = (control.mean(), control.variance(), control.n as f64);
        let (mean_b, var_b, n_b) = (treatment.mean(), treatment.variance(), treatment.n as f64);
        let usable = |x: f64| x.is_finite();
        if ![mean_a, var_a, mean_b, var_b].into_iter().all(usable) {
            return None;
        }
        // gbstats refuses a control mean of 0 only; a negative one would flip the sign of a
        // relative change, so it is refused too (gbstats' own runner reports no lift for it).
        if mean_a <= 0.0 || var_a <= 0.0 || var_b <= 0.0 {
            return None;
        }
        let relative = (mean_b - mean_a) / mean_a;
        // The delta method for the ratio of two independent means (gbstats'
        // `frequentist_variance`, relative).
        let variance =
            var_b / (mean_a.powi(2) * n_b) + var_a * mean_b.powi(2) / (mean_a.powi(4) * n_a);
        // Welch–Satterthwaite, on the variances of the means (not of the ratio), as gbstats does.
        let df = (var_b / n_b + var_a / n_a).powi(2)
            / (var_b.powi(2) / (n_b.powi(2) * (n_b - 1.0))
                + var_a.powi(2) / (n_a.powi(2) * (n_a - 1.0)));
        let difference = Difference {
            relative,
            std_error: variance.sqrt(),
            df,
            n: n_a + n_b,
        };
        let sane = [relative, difference.std_error, df].into_iter().all(usable)
            && difference.std_error > 0.0
            && df > 0.0;
        sane.then_some(difference)
    }
}

/// The lift, if every number in it is one.
pub(crate) fn finite(lift: Lift) -> Option<Lift> {
    let Lift {
        relative,
        ci_low,
        ci_high,
        p_value,
        std_error,
        df,
    } = lift;
    [relative, ci_low, ci_high, p_value, std_error, df]
        .into_iter()
        .all(f64::is_finite)
        .then_some(lift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_missing_lift_says_why() {
        let rate = |n, k| Moments::proportion(n, k);
        assert_eq!(
            unanswered(&rate(1, 1), &rate(100, 10)),
            Some(Unanswered::TooFew)
        );
        assert_eq!(
            unanswered(&rate(100, 0), &rate(100, 10)),
            Some(Unanswered::NoBaseline)
        );
        assert_eq!(
            unanswered(&rate(100, 100), &rate(100, 100)),
            Some(Unanswered::NoVariation)
        );
        assert_eq!(unanswered(&rate(100, 5), &rate(100, 10)), None);
        for (c, t) in [
            (rate(1, 1), rate(100, 10)),
            (rate(100, 0), rate(100, 10)),
            (rate(100, 100), rate(90, 90)),
        ] {
            assert!(
                relative_lift(&c, &t, 0.05).is_none(),
                "no lift where a reason is given"
            );
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn lift_by_hand() {
        // 5 % against 6 % on 10 000 each: lift 0.2; variance
        // 0.0564/(0.0025·10⁴) + 0.0475·0.0036/(0.05⁴·10⁴) = 0.002256 + 0.002736.
        let lift = relative_lift(
            &Moments::proportion(10_000, 500),
            &Moments::proportion(10_000, 600),
            0.05,
        )
        .unwrap();
        assert!(close(lift.relative, 0.2));
        assert!(close(lift.std_error, 0.004992f64.sqrt()));
        let (va, vb): (f64, f64) = (0.05 * 0.95 / 1e4, 0.06 * 0.94 / 1e4);
        let df = (va + vb).powi(2) / ((va * va + vb * vb) / 9_999.0);
        assert!(close(lift.df, df));
        // Symmetric around the lift, and a 20 % lift on 500 conversions is significant.
        assert!(close(
            lift.relative - lift.ci_low,
            lift.ci_high - lift.relative
        ));
        assert!(lift.ci_low > 0.0 && lift.p_value < 0.01);
    }

    #[test]
    fn gbstats_values_for_small_samples() {
        // Printed by gbstats 0.8.0: TwoSidedTTest, relative, alpha 0.05.
        let lift =
            relative_lift(&Moments::proportion(3, 1), &Moments::proportion(3, 2), 0.05).unwrap();
        assert!(close(lift.relative, 1.0));
        assert!(close(lift.ci_low, -4.069072045972116));
        assert!(close(lift.ci_high, 6.069072045972116));
        assert!(close(lift.p_value, 0.6130111132661797));
        let lift = relative_lift(
            &Moments::from_sums(2, 3.0, 5.0),
            &Moments::from_sums(2, 4.0, 10.0),
            0.05,
        )
        .unwrap();
        assert!(close(lift.relative, 1.0 / 3.0));
        assert!(close(lift.ci_low, -4.624792381646297));
        assert!(close(lift.ci_high, 5.291459048312963));
        assert!(close(lift.p_value, 0.7300118660406807));
    }

    #[test]
    fn equal_arms_have_no_lift_and_p_one() {
        let arm = Moments::proportion(1_000, 50);
        let lift = relative_lift(&arm, &arm, 0.05).unwrap();
        assert_eq!(lift.relative, 0.0);
        assert_eq!(lift.p_value, 1.0);
        assert!(close(lift.ci_high, 0.3822989073504221));
    }

    #[test]
    fn degenerate_arms_give_none() {
        let some = Moments::proportion(100, 5);
        for (control, treatment) in [
            (Moments::proportion(0, 0), some),
            (some, Moments::proportion(0, 0)),
            (Moments::proportion(100, 0), some),
            (some, Moments::proportion(100, 0)),
            (Moments::proportion(100, 100), some),
            (some, Moments::proportion(100, 100)),
            (Moments::proportion(1, 1), Moments::proportion(1, 0)),
            (
                Moments::from_sums(1, 3.0, 9.0),
                Moments::from_sums(5, 4.0, 10.0),
            ),
            (
                Moments::from_sums(10, -5.0, 30.0),
                Moments::from_sums(10, 5.0, 30.0),
            ),
            (Moments::from_sums(10, f64::NAN, 30.0), some),
            (Moments::from_sums(10, 5.0, f64::INFINITY), some),
            (Moments::default(), Moments::default()),
        ] {
            assert_eq!(
                relative_lift(&control, &treatment, 0.05),
                None,
                "{control:?} {treatment:?}"
            );
        }
        for alpha in [0.0, 1.0, -0.1, f64::NAN] {
            assert_eq!(relative_lift(&some, &some, alpha), None);
        }
    }

    #[test]
    fn huge_effects_and_huge_samples_stay_finite() {
        let lift = relative_lift(
            &Moments::proportion(100_000, 100),
            &Moments::proportion(100_000, 5_000),
            0.05,
        )
        .unwrap();
        assert!(close(lift.relative, 49.0));
        assert!(close(lift.ci_low, 39.112260208288504));
        // gbstats prints 0 here (1 − cdf cancels); the lower tail keeps the digits.
        assert!(lift.p_value > 0.0 && lift.p_value < 1e-20);
        let lift = relative_lift(
            &Moments::proportion(900_000_000, 45_000_000),
            &Moments::proportion(100_000_000, 5_001_000),
            0.05,
        )
        .unwrap();
        assert!(lift.df > 1e8 && lift.ci_low < lift.relative && lift.p_value > 0.0);
    }
}
