"""Two kinds of cell compared over paired repeats (MATRIX=overhead: instrumented and not): the
Wilcoxon signed-rank test and the Hodges-Lehmann estimate with its confidence interval, from
the test's exact distribution. No normal approximation: a run has a handful of repeats.

Hand-written rather than from scipy: scipy.stats.wilcoxon gives the p-value but not the
interval, and would add scipy (tens of MB) to the harness for one function. The tests check
both against published tables.
"""

import statistics

# Differences come from subtracting floats read from CSV: 84.0 - 23.7 and 31.9 - 92.2 differ in
# the 15th digit. Rounded to this many decimals, equal differences tie as they should.
DECIMALS = 9


def _null_counts(ranks2):
    """{W: how many of the 2^n sign assignments give the sum W of the positive ranks}, the ranks
    doubled so that average ranks of ties (x.5) are whole numbers: the exact null distribution,
    ties included."""
    counts = {0: 1}
    for r in ranks2:
        out = dict(counts)
        for w, k in counts.items():
            out[w + r] = out.get(w + r, 0) + k
        counts = out
    return counts


def _ranks2(values):
    """Twice the ranks of `values` by size, ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks2 = [0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks2[order[k]] = i + j + 2  # twice the average of ranks i+1 .. j+1
        i = j + 1
    return ranks2


def signed_rank_p(differences) -> float | None:
    """Two-sided p-value of the Wilcoxon signed-rank test that the differences centre on 0
    (zeros dropped, as Wilcoxon did); None with no difference left."""
    d = [x for x in (round(x, DECIMALS) for x in differences) if x != 0]
    if not d:
        return None
    ranks2 = _ranks2([abs(x) for x in d])
    w = sum(r for r, x in zip(ranks2, d, strict=True) if x > 0)
    counts = _null_counts(ranks2)
    total = 2 ** len(d)
    below = sum(k for s, k in counts.items() if s <= w) / total
    above = sum(k for s, k in counts.items() if s >= w) / total
    return min(1.0, 2 * min(below, above))


def hodges_lehmann(differences, confidence=0.95):
    """(estimate, low, high, achieved confidence): the median of the Walsh averages (every
    (d_i + d_j) / 2, i <= j) and the interval between the c-th lowest and c-th highest of them,
    c the most the signed-rank distribution allows at `confidence`. With too few differences for
    that confidence the interval is the lowest to the highest Walsh average, at the confidence
    it has."""
    d = [round(x, DECIMALS) for x in differences]
    n = len(d)
    walsh = sorted((d[i] + d[j]) / 2 for i in range(n) for j in range(i, n))
    counts = _null_counts([2 * r for r in range(1, n + 1)])  # no ties: ranks 1..n
    total = 2**n
    tail, below = (1 - confidence) / 2, 0
    c = 1  # the lowest Walsh average is always a bound
    for w in range(0, n * (n + 1) + 1, 2):  # doubled sums of positive ranks, from 0
        below += counts.get(w, 0)  # P(W <= w/2) * total
        if below / total > tail:
            break
        c = w // 2 + 1  # P(W <= c - 1) <= tail: the interval starts at the c-th Walsh average
    achieved = 1 - 2 * sum(k for w, k in counts.items() if w // 2 <= c - 1) / total
    return statistics.median(walsh), walsh[c - 1], walsh[len(walsh) - c], achieved
