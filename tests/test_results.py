"""results.evaluation on hand-made scores: the hard-label ensemble's fusion, per-class accuracy, each
row's terms, the comparisons of the perturbed ensemble, and every ensemble's diversity."""
import numpy as np
import pytest

from pycaffe_fer import ensemble
from pycaffe_fer.results import evaluation, over_repeats, per_class_accuracy

pytestmark = pytest.mark.fast   # no Caffe: make test-fast

LABELS = np.array([0, 0, 1, 1, 2, 2])


def scores_for(predictions, margin=2.0):
    """M x 7 fc scores whose argmax is `predictions`, by `margin`."""
    scores = np.zeros((len(predictions), 7))
    scores[np.arange(len(predictions)), predictions] = margin
    return scores


def test_per_class_accuracy_by_hand():
    values = per_class_accuracy([0, 0, 0, 1, 1, 3], [0, 0, 2, 1, 0, 3])
    assert values[0] == pytest.approx(200 / 3.0) and values[1] == 50.0 and values[3] == 100.0
    assert values[2] is None and values[4:] == [None, None, None]      # classes without test images


def make_evaluation():
    """Two perturbed members, one fixed-gamma ensemble of two, and a hard-label ensemble of three."""
    runs = {"ensemble": ["e0", "e1"], "fixed": {1.4: ["f0", "f1"]}, "baseline": ["h0", "h1", "h2"], "controls": {}}
    predictions = {"e0": [1, 0, 1, 1, 2, 0], "e1": [0, 1, 1, 1, 2, 2],
                   "f0": [0, 0, 1, 0, 0, 2], "f1": [0, 0, 1, 0, 0, 2],
                   "h0": [0, 1, 1, 0, 2, 2], "h1": [1, 1, 1, 0, 2, 2], "h2": [0, 0, 0, 0, 0, 2]}
    scores = {d: scores_for(p) for d, p in predictions.items()}
    # e1 is sure of its answers, e0 barely: the score average follows e1 where they disagree.
    scores["e1"] = scores_for(predictions["e1"], margin=5.0)
    info = {}
    for k, d in enumerate(["e0", "e1"]):
        info[d] = {"name": "g%.1f" % (1.0 + k), "run": "ensemble/" + d, "gamma": 1.0 + k, "seed": k,
                   "init": "constructor", "iterations": 200}
    for group in ("f", "h"):
        for k in range(3):
            info["%s%d" % (group, k)] = {"name": "seed%d" % k, "run": "%s/seed%d" % (group, k), "gamma": None,
                                         "seed": k, "init": "constructor", "iterations": 200}
    return evaluation(LABELS, scores, runs, info, "score"), scores


def test_the_hard_label_ensemble_fuses_its_members_by_eq7_and_keeps_them_as_rows():
    results, scores = make_evaluation()
    rows = {row["id"]: row for row in results["methods"]}
    fused = ensemble.predict([scores["h0"], scores["h1"], scores["h2"]])
    baseline = rows["baseline"]
    assert baseline["kind"] == "baseline" and baseline["label"] == "Hard labels (N=3, score fusion)"
    assert baseline["accuracy"] == pytest.approx(100.0 * np.mean(fused == LABELS))
    # h0: 4/6, h1: 3/6, h2: 3/6 right.
    assert baseline["member_accuracies"] == pytest.approx([400 / 6.0, 50.0, 50.0])
    assert baseline["members"] == ["hard_0", "hard_1", "hard_2"]
    assert rows["hard_0"]["kind"] == "hard_single" and rows["hard_0"]["accuracy"] == pytest.approx(400 / 6.0)
    assert results["ensemble"]["best_hard_single"] == "hard_0"
    assert (baseline["n"], baseline["seeds"], baseline["init"], baseline["iterations"]) == (3, [0, 1, 2], "constructor", 200)
    assert baseline["runs"] == ["h/seed0", "h/seed1", "h/seed2"]


def test_each_ensemble_has_its_diversity_and_gain():
    results, _ = make_evaluation()
    rows = {row["id"]: row for row in results["methods"]}
    # e0 and e1 disagree on images 0, 1 and 5: 3 of 6.
    assert rows["ensemble_score"]["diversity"] == pytest.approx(3 / 6.0)
    assert rows["fixed_g1.4"]["diversity"] == 0.0                     # f0 and f1 are the same classifier
    # h0/h1 differ on 1 image, h0/h2 on 3, h1/h2 on 4: mean 8 / 18.
    assert rows["baseline"]["diversity"] == pytest.approx(8 / 18.0)
    # e1 (5 of 6 right) dominates the score average: the ensemble is e1, e0 has 4 of 6.
    assert rows["ensemble_score"]["accuracy"] == pytest.approx(500 / 6.0)
    assert rows["ensemble_score"]["gain_over_mean_single"] == pytest.approx(500 / 6.0 - 450 / 6.0)
    assert rows["fixed_g1.4"]["gain_over_mean_single"] == 0.0


def test_per_class_accuracy_of_every_row_and_the_terms_of_every_row():
    results, _ = make_evaluation()
    rows = {row["id"]: row for row in results["methods"]}
    # e1 = ensemble by score: [0, 1, 1, 1, 2, 2]: AN 1/2, DI 2/2, FE 2/2.
    assert rows["ensemble_score"]["per_class"][:3] == pytest.approx([50.0, 100.0, 100.0])
    assert rows["ensemble_score"]["per_class"][3:] == [None] * 4
    assert rows["single_g1.0"]["per_class"][:3] == pytest.approx([50.0, 100.0, 50.0])
    for row in results["methods"]:
        assert row["init"] == "constructor" and row["iterations"] == 200
        assert len(row["seeds"]) == row["n"] == len(row["runs"])


def test_the_perturbed_ensemble_is_compared_with_the_hard_ensemble_its_best_singles_and_fixed_gamma():
    results, _ = make_evaluation()
    row = {row["id"]: row for row in results["methods"]}["ensemble_score"]
    assert sorted(row["mcnemar_p"]) == ["baseline", "best_hard_single", "best_single", "fixed_g1.4"]
    # right: ensemble [0,1,1,1,2,2] on all but image 1; fixed [0,0,1,0,0,2] on 0, 1, 2, 5: only the
    # ensemble right on 3 and 4, only fixed on 1; p = 2 P(Binomial(3, 1/2) <= 1) = 1.
    assert row["mcnemar_discordant"]["fixed_g1.4"] == [2, 1]
    assert row["mcnemar_p"]["fixed_g1.4"] == pytest.approx(1.0)
    assert row["mcnemar_discordant"]["baseline"] == [1, 0]   # hard ensemble [0,1,1,0,2,2]: wrong on 3 too
    low, high = row["difference_ci95"]["fixed_g1.4"]
    assert low <= 100.0 / 6 <= high and -100 <= low and high <= 100


def test_a_single_hard_label_net_is_the_baseline_row_itself():
    _, scores = make_evaluation()
    info = {d: {"name": d, "run": d, "gamma": 1.0, "seed": 0, "init": "scratch", "iterations": 5}
            for d in ("e0", "e1", "h0")}
    one = evaluation(LABELS, scores, {"ensemble": ["e0", "e1"], "fixed": {}, "baseline": ["h0"], "controls": {}}, info, "score")
    rows = {row["id"]: row for row in one["methods"]}
    assert rows["baseline"]["label"] == "Hard labels, single classifier" and rows["baseline"]["n"] == 1
    assert "diversity" not in rows["baseline"] and not any(r["kind"] == "hard_single" for r in one["methods"])
    assert one["ensemble"]["best_hard_single"] is None
    assert sorted(rows["ensemble_score"]["mcnemar_p"]) == ["baseline", "best_single"]


def test_a_control_is_an_ensemble_compared_with_the_perturbed_one():
    _, scores = make_evaluation()
    info = {d: {"name": "g%d" % k, "run": d, "gamma": 1.0 + k, "seed": k, "init": "scratch", "iterations": 5}
            for k, d in enumerate(("e0", "e1", "f0", "h0"))}
    runs = {"ensemble": ["e0", "e1"], "fixed": {}, "baseline": [], "controls": {"uniform": ["f0", "h0"]}}
    rows = {row["id"]: row for row in evaluation(LABELS, scores, runs, info, "score")["methods"]}
    control = rows["control_uniform"]
    assert control["kind"] == "control" and control["source"] == "uniform" and control["gammas"] == [3.0, 4.0]
    assert control["label"] == "Control: uniform smoothing of matched entropy (N=2, score fusion)"
    assert control["member_accuracies"] == pytest.approx([400 / 6.0, 400 / 6.0])
    assert sorted(rows["ensemble_score"]["mcnemar_p"]) == ["best_single", "control_uniform"]


def test_over_repeats_gives_each_method_its_accuracies_and_the_paired_test():
    first, scores = make_evaluation()
    # Repeat 1: the hard-label members all right on images 0-4 only (5 of 6), the rest as in repeat 0.
    again = dict(scores, **{d: scores_for([0, 0, 1, 1, 2, 0]) for d in ("h0", "h1", "h2")})
    runs = {"ensemble": ["e0", "e1"], "fixed": {1.4: ["f0", "f1"]}, "baseline": ["h0", "h1", "h2"], "controls": {}}
    info = {d: {"name": d, "run": d, "gamma": 1.0, "seed": 0, "init": "scratch", "iterations": 5} for d in scores}
    results = over_repeats([evaluation(LABELS, scores, runs, info, "score"), evaluation(LABELS, again, runs, info, "score")])
    rows = {row["id"]: row for row in results["methods"]}
    assert rows["baseline"]["repeats"] == pytest.approx([400 / 6.0, 500 / 6.0])
    assert rows["baseline"]["mean"] == pytest.approx(75.0) and rows["baseline"]["sd"] == pytest.approx(100 / 6.0 / np.sqrt(2))
    assert rows["ensemble_score"]["repeats"] == pytest.approx([500 / 6.0] * 2) and rows["ensemble_score"]["sd"] == 0
    comparison = results["repeats"]["comparisons"]["baseline"]
    assert results["repeats"]["count"] == 2 and results["repeats"]["method"] == "ensemble_score"
    assert comparison["differences"] == pytest.approx([100 / 6.0, 0.0])
    # Two differences: t = mean / (sd / sqrt 2) = 1, one degree of freedom: p = 2 (1/2 - atan(1) / pi) = 0.5.
    assert comparison["t"] == pytest.approx(1.0) and comparison["p"] == pytest.approx(0.5)
    single = over_repeats([first])
    assert single["repeats"]["count"] == 1 and single["repeats"]["comparisons"]["baseline"]["p"] is None
    assert single["methods"][0]["repeats"] == [single["methods"][0]["accuracy"]] and single["methods"][0]["sd"] is None
