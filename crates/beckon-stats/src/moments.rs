//! What one arm of an experiment is summed to: how many units it has, the sum of their values and
//! the sum of their squares. Everything else (mean, variance, lift) is computed from these three,
//! which is what a store can keep by addition.

/// How an arm's variance is estimated from its sums, as gbstats' statistic classes do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Metric {
    /// A yes-or-no outcome per unit (converted or not): gbstats' `ProportionStatistic`, whose
    /// variance is `p(1 - p)` with `p` the share of successes (no `n - 1` correction), and whose
    /// sum of squares is its sum.
    Proportion,
    /// Any number per unit (revenue, pages seen): gbstats' `SampleMeanStatistic`, whose variance
    /// is the sample variance with `n - 1` in the denominator.
    #[default]
    Mean,
}

/// The sums of one arm: `n` units, the sum of their values and of their squares, and which kind
/// of metric they are (it decides the variance).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    /// How many units (visitors) the arm has.
    pub n: u64,
    /// The sum of the units' values (for a proportion, the number of successes).
    pub sum: f64,
    /// The sum of the squares of the units' values (for a proportion, the number of successes).
    pub sum_squares: f64,
    /// How the variance is estimated.
    pub metric: Metric,
}

impl Moments {
    /// A proportion: `successes` of `n` units converted.
    pub fn proportion(n: u64, successes: u64) -> Moments {
        Moments {
            n,
            sum: successes as f64,
            sum_squares: successes as f64,
            metric: Metric::Proportion,
        }
    }

    /// A mean of any values, from sums a store kept: `n` units, the sum of their values and the
    /// sum of their squares.
    pub fn from_sums(n: u64, sum: f64, sum_squares: f64) -> Moments {
        Moments {
            n,
            sum,
            sum_squares,
            metric: Metric::Mean,
        }
    }

    /// Adds one unit whose value is `x` (for a proportion, 1 if it converted, else 0).
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.sum_squares += x * x;
    }

    /// The mean value of a unit; 0 when there is no unit, as in gbstats.
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        self.sum / self.n as f64
    }

    /// The variance of one unit's value, as gbstats estimates it for the arm's [`Metric`]:
    /// `p(1 - p)` for a proportion, the `n - 1` sample variance for a mean (0 when there are fewer
    /// than two units). It can be 0, or below 0 through rounding or inconsistent sums; the tests
    /// refuse such an arm.
    pub fn variance(&self) -> f64 {
        match self.metric {
            Metric::Proportion => {
                let p = self.mean();
                p * (1.0 - p)
            }
            Metric::Mean => {
                if self.n <= 1 {
                    return 0.0;
                }
                let n = self.n as f64;
                (self.sum_squares - self.sum * self.sum / n) / (n - 1.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proportion_uses_p_times_one_minus_p() {
        let m = Moments::proportion(200, 50);
        assert_eq!(m.mean(), 0.25);
        assert_eq!(m.variance(), 0.25 * 0.75);
    }

    #[test]
    fn a_mean_uses_the_sample_variance() {
        let mut m = Moments::default();
        for x in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            m.add(x);
        }
        assert_eq!(m.n, 8);
        assert_eq!(m.mean(), 5.0);
        // The squared deviations sum to 32, over n - 1 = 7.
        assert!((m.variance() - 32.0 / 7.0).abs() < 1e-12);
        assert_eq!(m, Moments::from_sums(8, 40.0, 232.0));
    }

    #[test]
    fn zero_or_one_unit_gives_zeros_not_nan() {
        assert_eq!(Moments::proportion(0, 0).mean(), 0.0);
        assert_eq!(Moments::proportion(0, 0).variance(), 0.0);
        assert_eq!(Moments::default().mean(), 0.0);
        assert_eq!(Moments::default().variance(), 0.0);
        let one = Moments::from_sums(1, 3.0, 9.0);
        assert_eq!(one.mean(), 3.0);
        assert_eq!(one.variance(), 0.0);
    }

    #[test]
    fn all_or_no_converters_have_no_variance() {
        assert_eq!(Moments::proportion(40, 40).variance(), 0.0);
        assert_eq!(Moments::proportion(40, 0).variance(), 0.0);
    }
}
