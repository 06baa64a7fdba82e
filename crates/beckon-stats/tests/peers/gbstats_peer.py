"""The reference for Beckon's statistics: GrowthBook's statistics engine, gbstats 0.8.0.

Reads {"cases": [...], "srm": [...]} as JSON on stdin, where each case is
{"metric": "proportion" | "mean", "control": {"n", "sum", "sum_squares"}, "treatment": {...},
"alpha", "tuning"} and each srm entry is {"observed": [...], "weights": [...]}. Prints, as JSON,
for each case what gbstats' TwoSidedTTest and SequentialTwoSidedTTest (relative) answer, and for
each srm entry what check_srm answers. Numbers that are not finite are written as the strings
"inf", "-inf" and "nan", which JSON has no literal for.
"""

import json
import math
import sys
import warnings

from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import ProportionStatistic, SampleMeanStatistic
from gbstats.utils import check_srm

# Overflows in numpy (an e-value of exp(10^4)) are part of what is compared, not news.
warnings.simplefilter("ignore")


def number(x):
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def statistic(metric, arm):
    if metric == "proportion":
        return ProportionStatistic(n=arm["n"], sum=arm["sum"])
    return SampleMeanStatistic(n=arm["n"], sum=arm["sum"], sum_squares=arm["sum_squares"])


def answer(test):
    result = test.compute_result()
    if result.error_message is not None:
        return {"error": result.error_message}
    return {
        "relative": number(result.expected),
        "ci_low": number(result.ci[0]),
        "ci_high": number(result.ci[1]),
        "p_value": number(result.p_value),
        "std_error": number(result.uplift.stddev),
        "df": number(test.dof),
    }


def case(c):
    a = statistic(c["metric"], c["control"])
    b = statistic(c["metric"], c["treatment"])
    fixed = TwoSidedTTest(
        a, b, FrequentistConfig(alpha=c["alpha"], difference_type="relative")
    )
    sequential = SequentialTwoSidedTTest(
        a,
        b,
        SequentialConfig(
            alpha=c["alpha"],
            difference_type="relative",
            sequential_tuning_parameter=c["tuning"],
        ),
    )
    return {"fixed": answer(fixed), "sequential": answer(sequential)}


def main():
    request = json.load(sys.stdin)
    json.dump(
        {
            "cases": [case(c) for c in request["cases"]],
            "srm": [number(check_srm(s["observed"], s["weights"])) for s in request["srm"]],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
