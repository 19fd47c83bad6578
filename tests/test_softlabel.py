"""Eqs. 2-4 against hand-computed values and the paper's Table 1."""
import numpy as np
import pytest

from pycaffe_fer import softlabel
from pycaffe_fer.errors import InputError
from helpers import REPO

pytestmark = pytest.mark.fast   # no Caffe: make test-fast

TABLE1 = REPO + "/configs/paper_softlabels_table1.csv"


def test_construct_averages_per_true_class_and_normalises():
    probs = [[0.6, 0.3, 0.1], [0.8, 0.1, 0.1],        # class 0: mean (0.7, 0.2, 0.1)
             [1.2, 0.6, 0.2],                          # class 1: sums to 2, eq. 3 halves it
             [0.1, 0.2, 0.7], [0.3, 0.2, 0.5]]         # class 2: mean (0.2, 0.2, 0.6)
    D = softlabel.construct(probs, [0, 0, 1, 2, 2], num_classes=3)
    np.testing.assert_allclose(D, [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], atol=1e-12)


def test_construct_refuses_a_class_without_validation_images():
    with pytest.raises(InputError, match=r"no validation image of class\(es\) 1"):
        softlabel.construct([[0.9, 0.1, 0.0], [0.2, 0.1, 0.7]], [0, 2], num_classes=3)


def test_perturb_by_hand():
    # (0.5, 0.25, 0.25)^2 = (0.25, 0.0625, 0.0625), Z = 0.375
    np.testing.assert_allclose(softlabel.perturb([[0.5, 0.25, 0.25]] * 3, 2.0)[0], [2 / 3, 1 / 6, 1 / 6])


@pytest.mark.parametrize("gamma", [0.4, 0.6, 1.0, 1.4, 2.0, 2.8])
def test_perturb_table1_rows_sum_to_one_and_keep_their_order(gamma):
    D = softlabel.load_matrix(TABLE1)
    perturbed = softlabel.perturb(D, gamma)
    np.testing.assert_allclose(perturbed.sum(axis=1), 1.0, atol=1e-12)
    assert (perturbed >= 0).all()
    for row, new in zip(D, perturbed):
        # Equal entries (none in Table 1) aside, the ranking within a row never changes.
        assert list(np.argsort(row, kind="stable")) == list(np.argsort(new, kind="stable"))


def test_perturb_gamma_one_is_the_identity_and_larger_gamma_is_sharper():
    D = softlabel.load_matrix(TABLE1)
    np.testing.assert_allclose(softlabel.perturb(D, 1.0), D / D.sum(axis=1, keepdims=True), atol=1e-15)

    def entropy(M):
        return -(M * np.log(M)).sum(axis=1)

    previous = softlabel.perturb(D, 0.4)
    for gamma in (0.8, 1.4, 2.0, 2.8):
        current = softlabel.perturb(D, gamma)
        assert (entropy(current) < entropy(previous)).all()
        assert (np.diag(current) > np.diag(previous)).all()   # the true class gains weight
        previous = current


@pytest.mark.parametrize("gamma", [0, -1.4])
def test_perturb_refuses_non_positive_gamma(gamma):
    with pytest.raises(InputError, match="gamma must be > 0"):
        softlabel.perturb(np.eye(7), gamma)


@pytest.mark.parametrize("D, message", [
    (np.ones((7, 6)) / 6, "must be C x C"),
    (np.full((7, 7), 1 / 6), "row 0 sums to 1.166667"),
    (np.eye(7) * 2 - np.full((7, 7), 1 / 7), "row 0 has a negative entry"),
])
def test_validate_matrix_names_the_problem(D, message):
    with pytest.raises(InputError, match=message):
        softlabel.validate_matrix(D, "D.npy")


def test_off_diagonal_rows_names_class_and_argmax():
    D = np.eye(3) * 0.6 + 0.2
    D[1] = [0.5, 0.3, 0.2]
    assert softlabel.off_diagonal_rows(D) == [(1, 0)]


def test_matrix_round_trips_through_npy_and_csv(tmp_path):
    D = softlabel.perturb(softlabel.load_matrix(TABLE1), 1.4)
    softlabel.save_matrix(D, str(tmp_path / "D"))
    np.testing.assert_array_equal(softlabel.load_matrix(str(tmp_path / "D.npy")), D)
    np.testing.assert_allclose(softlabel.load_matrix(str(tmp_path / "D.csv")), D, atol=1e-6)
    assert (tmp_path / "D.csv").read_text().splitlines()[0] == "class,AN,DI,FE,HA,SA,SU,NE"


def test_load_matrix_reports_file_and_line(tmp_path):
    bad = tmp_path / "D.csv"
    bad.write_text("class,AN,DI\nAN,0.5,x\n")
    with pytest.raises(InputError, match=r"D.csv:2: expected numbers"):
        softlabel.load_matrix(str(bad))


def test_from_scores_fuses_the_softmax_and_checks_the_papers_condition():
    labels = np.repeat(np.arange(7), 2)
    scores = np.zeros((14, 7))
    scores[np.arange(14), labels] = 3.0                  # every image scored highest on its own class
    D, off = softlabel.from_scores(scores, labels)
    expected = np.full((7, 7), 1.0)
    np.fill_diagonal(expected, np.exp(3.0))
    np.testing.assert_allclose(D, expected / expected.sum(axis=1, keepdims=True))
    assert off == ""
    scores[labels == 1] = np.roll(scores[labels == 1], -1, axis=1)     # disgust's images scored as anger
    with pytest.raises(InputError, match=r"condition j = argmax_k d_jk for DI \(argmax AN\); train the constructor"):
        softlabel.from_scores(scores, labels)
    D, off = softlabel.from_scores(scores, labels, allow_off_diagonal=True)
    assert off == "DI (argmax AN)" and D[1].argmax() == 0
    assert softlabel.near_tie_warnings(np.eye(7)) == [] and softlabel.near_tie_warnings(
        np.full((7, 7), 1 / 7.0))[0] == "warning: row AN of D is a near tie: AN 0.143 vs DI 0.143 (within 0.05)"


def test_near_ties_name_the_rows_whose_two_largest_entries_are_within_the_margin():
    D = np.eye(7) * 0.5 + 0.5 / 7
    D[1] = [0.291, 0.313, 0.1, 0.1, 0.1, 0.048, 0.048]          # the demo's disgust row: DI 0.313, AN 0.291
    D[4] = [0.1, 0.1, 0.1, 0.1, 0.33, 0.1, 0.17]                # SA 0.33 vs NE 0.17: no tie
    D[6] = [0.1, 0.1, 0.1, 0.1, 0.1, 0.25, 0.25]                # an exact tie: first by index
    ties = softlabel.near_ties(D)
    assert [(j, a, b) for j, a, b, _, _ in ties] == [(1, 1, 0), (6, 5, 6)]
    assert ties[0][3:] == pytest.approx((0.313, 0.291))
    assert softlabel.near_ties(D, margin=0.01) == [(6, 5, 6, 0.25, 0.25)]


def test_smoothing_and_its_row_entropy_by_hand():
    S = softlabel.smoothing(0.3)
    assert S[2, 2] == pytest.approx(0.7) and S[2, 0] == pytest.approx(0.05)
    np.testing.assert_allclose(S.sum(axis=1), 1.0)
    # -0.7 ln 0.7 - 6 x 0.05 ln 0.05 = 0.249672 + 0.898720
    np.testing.assert_allclose(softlabel.row_entropy(S), 1.148392, atol=1e-6)
    assert softlabel.row_entropy(np.eye(7)).tolist() == [0.0] * 7


def test_matched_smoothing_has_the_mean_row_entropy_of_the_perturbed_D():
    # gamma 1 leaves D as it is: a smoothing matrix is matched by its own epsilon.
    assert softlabel.matched_smoothing(softlabel.smoothing(0.3), 1.0) == pytest.approx(0.3, abs=1e-12)
    # Rows of two strengths: the epsilon whose entropy is their mean (0.5 (H(0.1) + H(0.5))).
    D = np.vstack([softlabel.smoothing(0.1)[:4], softlabel.smoothing(0.5)[4:]])
    target = (4 * softlabel.row_entropy(softlabel.smoothing(0.1))[0] + 3 * softlabel.row_entropy(softlabel.smoothing(0.5))[0]) / 7
    epsilon = softlabel.matched_smoothing(D, 1.0)
    assert 0.1 < epsilon < 0.5
    assert softlabel.row_entropy(softlabel.smoothing(epsilon))[0] == pytest.approx(target, abs=1e-12)
    # Sharper D (larger gamma), weaker smoothing; a uniform D needs the uniform smoothing.
    table1 = softlabel.load_matrix(TABLE1)
    assert softlabel.matched_smoothing(table1, 2.2) < softlabel.matched_smoothing(table1, 1.0) < softlabel.matched_smoothing(table1, 0.6)
    assert softlabel.matched_smoothing(np.full((7, 7), 1 / 7.0), 1.4) == pytest.approx(6 / 7.0)


def test_source_rows():
    D = softlabel.load_matrix(TABLE1)
    np.testing.assert_allclose(softlabel.source_rows("constructed", 1.4, D), softlabel.perturb(D, 1.4))
    uniform = softlabel.source_rows("uniform", 1.4, D)
    assert softlabel.row_entropy(uniform).mean() == pytest.approx(softlabel.row_entropy(softlabel.perturb(D, 1.4)).mean())
    assert (uniform.argmax(axis=1) == np.arange(7)).all()
    truth = softlabel.smoothing(0.4)
    np.testing.assert_allclose(softlabel.source_rows("oracle", 2.0, D, truth), softlabel.perturb(truth, 2.0))
    with pytest.raises(InputError, match="synthetic data only"):
        softlabel.source_rows("oracle", 2.0, D)
