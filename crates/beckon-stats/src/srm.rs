//! The sample-ratio check: whether the arms received the shares of traffic they were meant to, by
//! Pearson's chi-square test of the observed counts against the planned weights, as gbstats'
//! `check_srm` (`gbstats/utils.py`) computes it.

use statrs::distribution::{ChiSquared, ContinuousCDF};

/// The p-value below which the split is reported as broken: GrowthBook's default SRM threshold.
/// It is low because the check is run on every look at every experiment, and a false alarm
/// casts doubt on a sound experiment.
pub const SRM_THRESHOLD: f64 = 0.001;

/// The p-value of "traffic was split by `weights`" given the `observed` units per arm: gbstats
/// 0.8.0's `check_srm(users, weights)`. The weights need not sum to 1. An arm of weight 0 adds
/// nothing to the statistic (its units still count in the total), as in gbstats.
///
/// `Some(1.0)` when there is no unit at all, as gbstats. `None` where gbstats would raise or
/// answer NaN: fewer than two arms, as many weights as arms not given, or a weight that is
/// negative or not finite; and when no weight is above 0.
pub fn srm_p_value(observed: &[u64], weights: &[f64]) -> Option<f64> {
    if observed.len() < 2 || observed.len() != weights.len() {
        return None;
    }
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights.iter().all(|w| *w == 0.0) {
        return None;
    }
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    if total == 0.0 {
        return Some(1.0);
    }
    let total_weight: f64 = weights.iter().sum();
    let statistic: f64 = observed
        .iter()
        .zip(weights)
        .filter(|(_, w)| **w > 0.0)
        .map(|(&o, w)| {
            let expected = w / total_weight * total;
            (o as f64 - expected).powi(2) / expected
        })
        .sum();
    let chi_squared = ChiSquared::new((observed.len() - 1) as f64).ok()?;
    let p = chi_squared.sf(statistic);
    p.is_finite().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_even_split_is_not_flagged() {
        assert_eq!(srm_p_value(&[500, 500], &[0.5, 0.5]), Some(1.0));
        let p = srm_p_value(&[9_000, 1_000], &[0.9, 0.1]).unwrap();
        assert!((p - 1.0).abs() < 1e-12);
    }

    #[test]
    fn chi_square_by_hand() {
        // 520 against 480 for 50/50: χ² = (20² + 20²)/500 = 1.6 on one degree of freedom, whose
        // upper tail is erfc(√0.8) = 0.20590321073206...
        let p = srm_p_value(&[520, 480], &[1.0, 1.0]).unwrap();
        assert!((p - 0.205903210732).abs() < 1e-9, "{p}");
    }

    #[test]
    fn gbstats_values() {
        // Printed by gbstats 0.8.0's check_srm.
        let p = srm_p_value(&[900, 100], &[0.0, 1.0]).unwrap();
        assert!((p - 3.613248741159236e-178).abs() < 1e-190);
        assert!(srm_p_value(&[9_000, 1_000], &[0.5, 0.5]).unwrap() < SRM_THRESHOLD);
        assert_eq!(srm_p_value(&[0, 0], &[0.9, 0.1]), Some(1.0));
    }

    #[test]
    fn malformed_inputs_give_none() {
        assert_eq!(srm_p_value(&[900], &[1.0]), None);
        assert_eq!(srm_p_value(&[], &[]), None);
        assert_eq!(srm_p_value(&[900, 100, 5], &[0.5, 0.5]), None);
        assert_eq!(srm_p_value(&[900, 100], &[0.5, 0.5, 0.3]), None);
        assert_eq!(srm_p_value(&[900, 100], &[0.0, 0.0]), None);
        assert_eq!(srm_p_value(&[900, 100], &[-0.5, 1.5]), None);
        assert_eq!(srm_p_value(&[900, 100], &[f64::NAN, 0.5]), None);
    }
}
