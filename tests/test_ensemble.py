"""Eq. 7, fusion options, diversity and the gamma-selection rule, on known numbers."""
import numpy as np
import pytest

from pycaffe_fer import ensemble
from pycaffe_fer.errors import InputError
from pycaffe_fer.results import confusion_percent

pytestmark = pytest.mark.fast   # no Caffe: make test-fast


def test_average_scores_is_the_mean_of_the_fc_scores():
    a = [[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]]
    b = [[3.0, 0.0, 1.0], [2.0, 1.0, -1.0]]
    np.testing.assert_allclose(ensemble.average_scores([a, b]), [[2.0, 1.0, 2.0], [1.0, 0.0, 2.0]])


def test_score_and_probability_averaging_can_disagree():
    # One confident classifier outvotes two mild ones on scores, not on probabilities.
    confident = [[6.0, 0.0]]
    mild = [[0.0, 2.0]]
    scores = [confident, mild, mild]
    np.testing.assert_allclose(ensemble.fuse(scores, "score"), [[2.0, 4.0 / 3.0]])
    p_conf, p_mild = 1 / (1 + np.exp(-6.0)), 1 / (1 + np.exp(2.0))
    np.testing.assert_allclose(ensemble.fuse(scores, "probability")[0, 0], (p_conf + 2 * p_mild) / 3)
    assert ensemble.predict(scores, "score")[0] == 0
    assert ensemble.predict(scores, "probability")[0] == 1


def test_average_scores_refuses_mismatched_shapes():
    with pytest.raises(InputError, match="M x C scores"):
        ensemble.average_scores([np.zeros((4, 7)), np.zeros((5, 7))])
    with pytest.raises(InputError, match="fusion must be one of"):
        ensemble.fuse([np.zeros((1, 7))], "vote")


def test_pairwise_disagreement():
    predictions = [[0, 1, 2, 3], [0, 1, 2, 0], [1, 1, 0, 0]]
    matrix, mean = ensemble.pairwise_disagreement(predictions)
    np.testing.assert_allclose(matrix, [[0, 0.25, 0.75], [0.25, 0, 0.5], [0.75, 0.5, 0]])
    assert mean == pytest.approx(0.5)


def test_select_gammas_takes_the_contiguous_range_near_the_best():
    gammas = [0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6]
    accuracy = [60.0, 68.5, 69.0, 69.4, 67.0, 69.3, 68.9]
    assert ensemble.select_gammas(gammas, accuracy, tolerance=1.0) == [0.6, 0.8, 1.0]
    assert ensemble.select_gammas(gammas, accuracy, tolerance=2.5) == [0.6, 0.8, 1.0, 1.2, 1.4, 1.6]


def test_confusion_percent_rows_are_true_classes():
    labels = [0, 0, 0, 0, 1, 1]
    predictions = [0, 0, 0, 1, 1, 0]
    percent = confusion_percent(labels, predictions, num_classes=2)
    np.testing.assert_allclose(percent, [[75.0, 25.0], [50.0, 50.0]])
