//! Student's t distribution with any positive degrees of freedom, as scipy's `t.cdf` and `t.ppf`
//! compute it for gbstats.
//!
//! statrs' own `StudentsT` is used for the distribution function up to [`LARGE_DOF`] degrees of
//! freedom, where it agrees with scipy to about 1e-11. Two of its weaknesses are worked around:
//! its inverse drifts away from scipy's as the degrees of freedom grow (by 7e-6 at 10^5, 0.13 at
//! 10^7) and does not return at all at 10^8, which a test with a large holdout reaches; and its
//! incomplete beta function stops after 140 terms, which loses digits past 10^6 degrees of
//! freedom. So the quantile is found here by Newton's method on the distribution function, and
//! past [`LARGE_DOF`] both come from the expansion of t around the normal distribution.

use statrs::distribution::{Continuous, ContinuousCDF, Normal, StudentsT};

/// Degrees of freedom past which the t distribution is computed from its expansion around the
/// normal distribution (Abramowitz and Stegun 26.7.5 and 26.7.8): the terms left out are of order
/// `1/dof²` for the distribution function (below 1e-12 here) and `1/dof⁵` for the quantile.
const LARGE_DOF: f64 = 1e6;

/// Newton steps at most when solving for a quantile; it takes fewer than ten in practice.
const MAX_STEPS: usize = 200;

/// `P(T <= x)` for `T` a Student t with `dof` degrees of freedom, or `None` when `dof` is not a
/// positive number or `x` is not a number.
pub(crate) fn cdf(x: f64, dof: f64) -> Option<f64> {
    if x.is_nan() || dof.is_nan() || dof <= 0.0 {
        return None;
    }
    if dof > LARGE_DOF {
        let normal = standard_normal()?;
        // A&S 26.7.8, first term: the t puts more mass in the tails than the normal by
        // φ(x)(x³ + x)/(4·dof).
        let correction = if x.is_finite() {
            normal.pdf(x) * (x.powi(3) + x) / (4.0 * dof)
        } else {
            0.0
        };
        return Some(normal.cdf(x) - correction);
    }
    let t = StudentsT::new(0.0, 1.0, dof).ok()?;
    Some(t.cdf(x))
}

/// The `p` quantile of a Student t with `dof` degrees of freedom (the `x` with `P(T <= x) = p`),
/// or `None` when `p` is not strictly between 0 and 1 or `dof` is not a positive number.
pub(crate) fn quantile(p: f64, dof: f64) -> Option<f64> {
    if p.is_nan() || p <= 0.0 || p >= 1.0 || dof.is_nan() || dof <= 0.0 {
        return None;
    }
    if p < 0.5 {
        return quantile(1.0 - p, dof).map(|x| -x);
    }
    if p == 0.5 {
        return Some(0.0);
    }
    let start = cornish_fisher(p, dof)?;
    if dof > LARGE_DOF {
        return Some(start);
    }
    solve(p, dof, start)
}

/// A&S 26.7.5: the t quantile as the normal one plus four terms in powers of `1/dof`. Close for
/// many degrees of freedom, a mere starting point for a few.
fn cornish_fisher(p: f64, dof: f64) -> Option<f64> {
    let z = standard_normal()?.inverse_cdf(p);
    let z2 = z * z;
    let g1 = (z2 + 1.0) * z / 4.0;
    let g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0;
    let g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0;
    let g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0;
    let x = z + (g1 + (g2 + (g3 + g4 / dof) / dof) / dof) / dof;
    x.is_finite().then_some(x)
}

/// Newton's method on the distribution function, kept inside a bracket of the root so that a
/// poor start (few degrees of freedom) falls back on bisection instead of wandering off.
fn solve(p: f64, dof: f64, start: f64) -> Option<f64> {
    let t = StudentsT::new(0.0, 1.0, dof).ok()?;
    // The root is above 0 (p > 1/2); find an upper end of the bracket by doubling.
    let mut low = 0.0;
    let mut high = start.max(1.0);
    while t.cdf(high) < p {
        low = high;
        high *= 2.0;
        if !high.is_finite() {
            return None;
        }
    }
    let mut x = start.clamp(low, high);
    for _ in 0..MAX_STEPS {
        let error = t.cdf(x) - p;
        if error == 0.0 {
            return Some(x);
        }
        if error < 0.0 {
            low = x;
        } else {
            high = x;
        }
        let newton = x - error / t.pdf(x);
        let next = if newton > low && newton < high {
            newton
        } else {
            (low + high) / 2.0
        };
        if (next - x).abs() <= 1e-15 * x.abs() {
            return Some(next);
        }
        x = next;
    }
    Some(x)
}

fn standard_normal() -> Option<Normal> {
    Normal::new(0.0, 1.0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quantiles and distribution function values printed by scipy 1.17 (`t.ppf`, `t.cdf`).
    const SCIPY: &[(f64, [f64; 3], [f64; 3])] = &[
        (
            1.0,
            [0.32491969623290634, 12.706204736174694, 636.6192487687897],
            [0.05256845671125344, 0.5927735790777423, 0.8524163823495667],
        ),
        (
            2.5,
            [0.2814595127485477, 3.5746548420036817, 18.277893528131457],
            [
                0.0076408649427614495,
                0.6063288142524014,
                0.9213042521210171,
            ],
        ),
        (
            30.0,
            [0.2556053649519128, 2.0422724563012378, 3.6459586350420627],
            [
                6.971384383602382e-07,
                0.6168769473578236,
                0.9726874775185085,
            ],
        ),
        (
            1e4,
            [0.253353843445727, 1.960201239890626, 3.2914999659416355],
            [
                1.0208092364613106e-09,
                0.6179083043853338,
                0.9772363696692823,
            ],
        ),
        (
            1e6,
            [0.25334717053784184, 1.959966356814107, 3.2905364612487222],
            [9.86924906177215e-10, 0.617911391010503, 0.9772497330743404],
        ),
        (
            3e6,
            [0.25334712560314454, 1.9599647752974443, 3.290529974738384],
            [
                9.867000543858257e-10,
                0.6179114117961352,
                0.9772498230593416,
            ],
        ),
        (
            1e8,
            [0.2533471038098203, 1.9599640082627663, 3.290526828789235],
            [
                9.865910171576395e-10,
                0.6179114218771682,
                0.9772498667020466,
            ],
        ),
        (
            1e12,
            [0.253347103135867, 1.9599639845424262, 3.2905267315016555],
            [
                9.865876453749109e-10,
                0.6179114221889215,
                0.9772498680516858,
            ],
        ),
    ];

    #[test]
    fn agrees_with_scipy_for_few_and_many_degrees_of_freedom() {
        for &(dof, quantiles, cdfs) in SCIPY {
            for (p, expected) in [0.6, 0.975, 0.9995].into_iter().zip(quantiles) {
                let x = quantile(p, dof).unwrap();
                assert!(
                    (x - expected).abs() <= 1e-9 * expected,
                    "ppf({p}, {dof}) = {x}, scipy {expected}"
                );
                let x = quantile(1.0 - p, dof).unwrap();
                assert!((x + expected).abs() <= 1e-9 * expected);
            }
            for (x, expected) in [-6.0, 0.3, 2.0].into_iter().zip(cdfs) {
                let c = cdf(x, dof).unwrap();
                assert!(
                    (c - expected).abs() <= 1e-10,
                    "cdf({x}, {dof}) = {c}, scipy {expected}"
                );
            }
        }
    }

    #[test]
    fn refuses_what_is_not_a_distribution() {
        assert_eq!(quantile(0.0, 5.0), None);
        assert_eq!(quantile(1.0, 5.0), None);
        assert_eq!(quantile(f64::NAN, 5.0), None);
        assert_eq!(quantile(0.9, 0.0), None);
        assert_eq!(quantile(0.9, f64::NAN), None);
        assert_eq!(cdf(1.0, -1.0), None);
        assert_eq!(cdf(f64::NAN, 3.0), None);
        assert_eq!(quantile(0.5, 3.0), Some(0.0));
        assert_eq!(cdf(f64::INFINITY, 2e6), Some(1.0));
    }
}
