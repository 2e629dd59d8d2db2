"""harness.results.paired against published values: the exact Wilcoxon signed-rank test and the
Hodges-Lehmann interval that inverts it."""

import pytest

from harness.results import paired

pytestmark = pytest.mark.fast  # starts no server: make test-fast

# Darwin's Zea mays, cross- minus self-fertilised heights (eighths of an inch): the example of
# scipy.stats.wilcoxon's documentation, whose exact two-sided p-value is 0.041259765625
ZEA_MAYS = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]


def test_the_signed_rank_p_value_is_the_exact_one():
    assert paired.signed_rank_p(ZEA_MAYS) == pytest.approx(0.041259765625, abs=1e-12)
    assert paired.signed_rank_p([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == pytest.approx(2 / 2**10)  # all one sign
    assert paired.signed_rank_p([-x for x in ZEA_MAYS]) == paired.signed_rank_p(ZEA_MAYS)  # two-sided
    assert paired.signed_rank_p([1, -1, 2, -2]) == 1.0
    assert paired.signed_rank_p([0, 0]) is None


def test_ties_get_their_average_rank_and_zeros_are_dropped():
    # |d| ranks 1.5, 1.5, 3: W+ = 1.5 + 3; of the 8 sign assignments, W+ <= 4.5 in 6 and >= 4.5 in 3
    assert paired.signed_rank_p([1, -1, 2]) == pytest.approx(2 * 3 / 8)
    assert paired.signed_rank_p([0, 1, -1, 2]) == paired.signed_rank_p([1, -1, 2])


def test_the_critical_value_is_the_tables():
    """n = 10, two-sided 5 %: the tables' critical value is 8 (P(W <= 8) = 25/1024), so the interval
    runs from the 9th lowest to the 9th highest of the 55 Walsh averages."""
    estimate, low, high, level = paired.hodges_lehmann(range(1, 11))
    walsh = sorted((i + j) / 2 for i in range(1, 11) for j in range(i, 11))
    assert (estimate, low, high) == (5.5, walsh[8], walsh[-9])
    assert level == pytest.approx(1 - 2 * 25 / 1024)


def test_the_interval_is_where_the_test_does_not_reject():
    """Shifted by a value just outside the interval the differences are rejected at the 5 % level;
    just inside, not: the interval inverts the test."""
    _, low, high, level = paired.hodges_lehmann(ZEA_MAYS)
    assert level >= 0.95

    def p(shift):
        return paired.signed_rank_p([d - shift for d in ZEA_MAYS])

    assert p(low - 1e-6) < 0.05 <= p(low + 1e-6)
    assert p(high + 1e-6) < 0.05 <= p(high - 1e-6)


def test_too_few_pairs_give_the_widest_interval_at_the_level_it_has():
    estimate, low, high, level = paired.hodges_lehmann([3.0, 1.0, 2.0])
    assert (estimate, low, high) == (2.0, 1.0, 3.0)
    assert level == pytest.approx(1 - 2 / 2**3)  # below 95 %: said, not hidden


def test_differences_of_floats_read_from_csv_tie_when_they_are_equal():
    """84.0 - 23.7 and 92.2 - 31.9 are both 60.3 to the CSV's precision, but not as floats."""
    assert 84.0 - 23.7 != -(31.9 - 92.2)
    read = [84.0 - 23.7, 31.9 - 92.2, 1, 2, 3]
    exact = [60.3, -60.3, 1, 2, 3]
    assert paired.signed_rank_p(read) == paired.signed_rank_p(exact)
    assert paired.hodges_lehmann(read) == paired.hodges_lehmann(exact)
