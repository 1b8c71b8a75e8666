"""A score's spread over repeats (seeds, outer folds): mean, sample standard deviation and 95% t-interval."""

from __future__ import annotations

import math
import statistics

from scipy import stats

LEVEL = 0.95


def spread(values: list[float]) -> dict[str, float | int | None]:
    """{mean, std (ddof=1), ci_low, ci_high, n}; the std and interval are None with fewer than two values (one
    draw says nothing of the spread), and the interval is the mean itself when every value is the same."""
    n = len(values)
    mean = statistics.fmean(values) if n else None
    if n < 2:
        return {"mean": mean, "std": None, "ci_low": None, "ci_high": None, "n": n}
    std = statistics.stdev(values)
    if std == 0:
        return {"mean": mean, "std": 0.0, "ci_low": mean, "ci_high": mean, "n": n}
    low, high = stats.t.interval(LEVEL, n - 1, loc=mean, scale=std / math.sqrt(n))
    return {"mean": mean, "std": std, "ci_low": float(low), "ci_high": float(high), "n": n}


def shown(values: dict[str, float | int | None]) -> str:
    """e.g. `0.9712 ± 0.0040 [0.9662, 0.9762] (n=5)`, as the closing summaries print it."""
    if values["mean"] is None:
        return "no value"
    if values["std"] is None:
        return f"{values['mean']:.4f} (n={values['n']})"
    return (f"{values['mean']:.4f} ± {values['std']:.4f} [{values['ci_low']:.4f}, {values['ci_high']:.4f}] "
            f"(n={values['n']})")
