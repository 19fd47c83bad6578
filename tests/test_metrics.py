"""The report's statistics against values computed by hand."""
import math

import numpy as np
import pytest

from pycaffe_fer import metrics

pytestmark = pytest.mark.fast   # no Caffe: make test-fast


def test_nll_and_brier_of_two_images():
    probs = [[0.5, 0.5], [0.25, 0.75]]
    labels = [0, 1]
    assert metrics.nll(probs, labels) == pytest.approx((math.log(2) - math.log(0.75)) / 2)
    # (0.5 - 1)^2 + 0.5^2 = 0.5 and 0.25^2 + (0.75 - 1)^2 = 0.125
    assert metrics.brier(probs, labels) == pytest.approx((0.5 + 0.125) / 2)


def test_nll_of_a_zero_probability_is_large_and_finite():
    assert metrics.nll([[1.0, 0.0]], [1]) == pytest.approx(-math.log(metrics.LOG_FLOOR))


def test_ece_in_fifteen_bins():
    probs = [[0.9, 0.05, 0.05],    # bin (0.867, 0.933]: right
             [0.9, 0.05, 0.05],    # same bin: wrong -> accuracy 0.5 at confidence 0.9
             [0.65, 0.2, 0.15],    # bin (0.6, 0.667]: right
             [0.45, 0.35, 0.2]]    # bin (0.4, 0.467]: wrong
    labels = [0, 1, 0, 2]
    # (2 |0.5 - 0.9| + |1 - 0.65| + |0 - 0.45|) / 4
    assert metrics.ece(probs, labels) == pytest.approx((0.8 + 0.35 + 0.45) / 4)
    count, confidence, accuracy = metrics.reliability(probs, labels)
    assert count.tolist() == [0] * 6 + [1, 0, 0, 1, 0, 0, 0, 2, 0]
    assert confidence[13] == pytest.approx(0.9) and accuracy[13] == 0.5
    assert np.isnan(accuracy[0])


def test_a_calibrated_predictor_has_no_calibration_error():
    # Confidence 0.75 and three of four right.
    probs = [[0.75, 0.25]] * 4
    assert metrics.ece(probs, [0, 0, 0, 1]) == pytest.approx(0.0)


@pytest.mark.parametrize("a_only, b_only, p", [
    (1, 7, 2 * (1 + 8) / 2 ** 8),          # P(X <= 1) for Binomial(8, 1/2), doubled
    (7, 1, 2 * (1 + 8) / 2 ** 8),
    (0, 5, 2 / 2 ** 5),
    (3, 3, 1.0),                           # 2 P(X <= 3) > 1 for n = 6: capped
    (0, 0, 1.0),                           # no discordant image: no evidence
])
def test_mcnemar_exact_p(a_only, b_only, p):
    # Discordant images plus 10 both get right and 4 both get wrong.
    a = [1] * a_only + [0] * b_only + [1] * 10 + [0] * 4
    b = [0] * a_only + [1] * b_only + [1] * 10 + [0] * 4
    assert metrics.mcnemar_exact(a, b) == (pytest.approx(p), a_only, b_only)


def test_mcnemar_exact_on_thousands_of_discordant_images_does_not_overflow():
    p, _, _ = metrics.mcnemar_exact([1] * 1500 + [0] * 1400, [0] * 1500 + [1] * 1400)
    assert 0 < p < 0.1


def test_bootstrap_of_two_images_has_the_exact_percentiles():
    # Resampling [right, wrong]: accuracy 0, 50 or 100 with probability 1/4, 1/2, 1/4.
    assert metrics.bootstrap_ci([1, 0]) == [0.0, 100.0]
    assert metrics.bootstrap_ci([1, 1, 1]) == [100.0, 100.0]


def test_bootstrap_of_a_fair_coin_matches_the_normal_interval():
    correct = np.tile([1, 0], 200)         # 400 images, accuracy 50%: sd 2.5 points
    low, high = metrics.bootstrap_ci(correct)
    assert low == pytest.approx(50 - 1.96 * 2.5, abs=0.8) and high == pytest.approx(50 + 1.96 * 2.5, abs=0.8)
    assert metrics.bootstrap_ci(correct) == [low, high], "fixed seed: the same interval every time"


def test_distances_to_the_true_mixture():
    truth = [[0.5, 0.5, 0.0], [0.0, 0.2, 0.8]]
    probs = [[0.25, 0.5, 0.25], [0.0, 0.2, 0.8]]
    # Image 1: KL = 0.5 log(0.5 / 0.25) + 0.5 log 1 = 0.5 log 2, TV = (0.25 + 0 + 0.25) / 2; image 2: 0.
    assert metrics.kl_to_truth(truth, probs) == pytest.approx(0.5 * math.log(2) / 2)
    assert metrics.tv_to_truth(truth, probs) == pytest.approx(0.25 / 2)
    assert metrics.kl_to_truth(truth, truth) == 0.0


def test_top2_agreement_compares_the_two_largest_as_a_set():
    truth = [[0.6, 0.3, 0.1, 0.0], [0.6, 0.3, 0.1, 0.0], [0.6, 0.3, 0.1, 0.0]]
    probs = [[0.3, 0.6, 0.05, 0.05],       # {0, 1}: agrees, order aside
             [0.6, 0.1, 0.3, 0.0],         # {0, 2}: does not
             [0.5, 0.4, 0.1, 0.0]]         # agrees
    assert metrics.top2_agreement(truth, probs) == pytest.approx(2 / 3)


def test_paired_t_test_by_hand():
    # d = 1, 2, 3: mean 2, sd 1, t = 2 sqrt(3); with 2 degrees of freedom the two-sided p is
    # 1 - t / sqrt(t^2 + 2) exactly.
    result = metrics.paired_t_test([1.0, 2.0, 3.0])
    t = 2 * np.sqrt(3)
    assert result["mean"] == 2.0 and result["sd"] == pytest.approx(1.0)
    assert result["t"] == pytest.approx(t) and result["p"] == pytest.approx(1 - t / np.sqrt(t * t + 2))
    assert metrics.paired_t_test([-1.0, -2.0, -3.0])["t"] == pytest.approx(-t)
    assert metrics.paired_t_test([0.5]) == {"mean": 0.5, "sd": None, "t": None, "p": None}
    assert metrics.paired_t_test([1.0, 1.0])["p"] == 0.0 and metrics.paired_t_test([0.0, 0.0])["p"] == 1.0
