"""results.json: the evaluation's numbers, written by the pipeline and read by the report.

This module is the one home of the format. The pipeline builds the dict with ``evaluation`` (from
every net's test scores) and ``describe_run``; the report reads it through ``methods``, ``method``
and the keys named here.

    experiment, data_description, test_split, test_count, test_lmdb
    softlabels       {source, matrix (C x C), off_diagonal, val_accuracy?}
    true_softlabels  C x C, where the true mixtures are known (the synthetic set)
    constructor      {val_accuracy, test_accuracy}, when a constructor was trained
    investigation    {gammas, accuracy, selected, rule, train, val} or null
    methods          [{id, label, kind, accuracy, ci95, nll, brier, ece,
                       kl_to_truth, tv_to_truth, top2_agreement (true mixtures known),
                       mcnemar_p, mcnemar_discordant (ensembles: vs baseline and best single),
                       gamma (singles, fixed_gamma), members (ensembles: their singles' ids;
                       fixed_gamma: their runs' names), member_accuracies (fixed_gamma)}]
    ensemble         {fusion, method (id of the ensemble as configured), best_single, confusion,
                      disagreement, diversity}
    reliability      {method id: {count, confidence, accuracy}} per 15 bins, for the reliability diagram
    examples         {soft: [...], misclassified: [...]}, each {index, label, prediction,
                      probabilities, mixture?}: test images for Figs. 1 and 5-7
"""
import numpy as np

from . import ensemble as ensemble_eq
from . import metrics
from .classes import NUM_CLASSES

# Per method, beside its accuracy: calibration and, where the true mixtures are known, the
# distances to them; (key, column heading) in the report's tables.
CALIBRATION = (("nll", "NLL"), ("brier", "Brier"), ("ece", "ECE"))
MIXTURE = (("kl_to_truth", "KL to truth"), ("tv_to_truth", "TV to truth"), ("top2_agreement", "top-2 agreement"))
BASELINE = "baseline"
# Figures: faces per class in Fig. 1 (one), misclassified faces per true class in Figs. 5-7.
MISCLASSIFIED_PER_CLASS = 2


def accuracy(labels, predictions):
    """Percent of predictions equal to the labels."""
    return 100.0 * float(np.mean(np.asarray(labels) == np.asarray(predictions)))


def confusion_percent(labels, predictions, num_classes=NUM_CLASSES):
    """C x C confusion matrix in percent of each true class (row = true, column = predicted),
    as Tables 3, 5 and 7; a class absent from the labels gives a row of NaN."""
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * counts / totals


def evidence(probs, labels, truth=None):
    """One method's numbers from its M x C test distributions: accuracy and its bootstrap
    interval, calibration, and the distances to the true mixtures when ``truth`` is given."""
    correct = probs.argmax(axis=1) == labels
    numbers = {"accuracy": 100.0 * float(correct.mean()), "ci95": metrics.bootstrap_ci(correct),
               "nll": metrics.nll(probs, labels), "brier": metrics.brier(probs, labels),
               "ece": metrics.ece(probs, labels)}
    if truth is not None:
        numbers.update(kl_to_truth=metrics.kl_to_truth(truth, probs), tv_to_truth=metrics.tv_to_truth(truth, probs),
                       top2_agreement=metrics.top2_agreement(truth, probs))
    return numbers


def evaluation(labels, scores, runs, names, fusion, truth=None):
    """The test-set part of results.json.

    scores: {run dir: M x C fc scores}; runs: {"ensemble": [run dirs], "fixed": {gamma: [run dirs]},
    "baseline": run dir (optional)}; names: {run dir: (name, gamma)}; truth: M x C true mixtures or None.
    """
    labels = np.asarray(labels)
    probs, rows = {}, []

    def add(method_id, label, kind, distribution, **extra):
        probs[method_id] = distribution
        rows.append(dict(id=method_id, label=label, kind=kind, **dict(evidence(distribution, labels, truth), **extra)))

    members = runs["ensemble"]
    single_ids = ["single_" + names[d][0] for d in members]
    for fused in ensemble_eq.FUSIONS:
        add("ensemble_" + fused, "Ours, gamma perturbation (N=%d, %s fusion)" % (len(members), fused), "ensemble",
            _distribution([scores[d] for d in members], fused), members=single_ids)
    for method_id, d in zip(single_ids, members):
        add(method_id, "Ours, single classifier, gamma = %s" % names[d][1], "single",
            ensemble_eq.softmax(scores[d]), gamma=names[d][1])
    for gamma, dirs in sorted(runs["fixed"].items()):
        add("fixed_g%s" % gamma, "Ours, gamma = %s (N=%d)" % (gamma, len(dirs)), "fixed_gamma",
            _distribution([scores[d] for d in dirs], fusion), gamma=gamma, members=[names[d][0] for d in dirs],
            member_accuracies=[accuracy(labels, scores[d].argmax(axis=1)) for d in dirs])
    if runs.get("baseline"):
        add(BASELINE, "Ours, hard labels (baseline)", "baseline", ensemble_eq.softmax(scores[runs["baseline"]]))

    by_id = {row["id"]: row for row in rows}
    best_single = max(single_ids, key=lambda i: by_id[i]["accuracy"])
    correct = {i: p.argmax(axis=1) == labels for i, p in probs.items()}
    for fused in ensemble_eq.FUSIONS:
        row = by_id["ensemble_" + fused]
        others = [o for o in (BASELINE, best_single) if o in by_id]
        tests = {o: metrics.mcnemar_exact(correct[row["id"]], correct[o]) for o in others}
        row["mcnemar_p"] = {("best_single" if o == best_single else o): t[0] for o, t in tests.items()}
        row["mcnemar_discordant"] = {("best_single" if o == best_single else o): [t[1], t[2]] for o, t in tests.items()}

    configured = "ensemble_" + fusion
    predictions = probs[configured].argmax(axis=1)
    disagreement, diversity = ensemble_eq.pairwise_disagreement([scores[d].argmax(axis=1) for d in members])
    plotted = [configured, BASELINE, best_single]
    return {
        "test_count": int(len(labels)), "methods": rows,
        "ensemble": {"fusion": fusion, "method": configured, "best_single": best_single,
                     "confusion": confusion_percent(labels, predictions, probs[configured].shape[1]).tolist(),
                     "disagreement": disagreement.tolist(), "diversity": diversity},
        "reliability": {i: _reliability(probs[i], labels) for i in plotted if i in probs},
        "examples": examples(labels, probs[configured], truth),
    }


def _reliability(probs, labels):
    """{count, confidence, accuracy} per bin; an empty bin's confidence and accuracy are None (JSON null)."""
    values = metrics.reliability(probs, labels)
    return {name: [None if np.isnan(v) else float(v) for v in array]
            for name, array in zip(("count", "confidence", "accuracy"), values)}


def _distribution(score_list, fusion):
    """The M x C distribution an ensemble predicts: the softmax of eq. 7's mean scores, or the mean
    of the members' softmax outputs."""
    fused = ensemble_eq.fuse(score_list, fusion)
    return ensemble_eq.softmax(fused) if fusion == "score" else fused


def examples(labels, probs, truth=None):
    """Test images for the figures: the first of each class (Fig. 1) and the first misclassified
    ones of each true class (Figs. 5-7), with what the ensemble predicted."""
    predictions = probs.argmax(axis=1)

    def example(i):
        item = {"index": int(i), "label": int(labels[i]), "prediction": int(predictions[i]),
                "probabilities": probs[i].tolist()}
        if truth is not None:
            item["mixture"] = np.asarray(truth[i]).tolist()
        return item

    classes = range(probs.shape[1])
    soft = [example(np.flatnonzero(labels == c)[0]) for c in classes if (labels == c).any()]
    wrong = [example(i) for c in classes
             for i in np.flatnonzero((labels == c) & (predictions != c))[:MISCLASSIFIED_PER_CLASS]]
    return {"soft": soft, "misclassified": wrong}


def methods(results):
    """The method rows of a results dict, in table order."""
    return results["methods"]


def method(results, method_id):
    """One method row by its id, or None."""
    return next((row for row in results["methods"] if row["id"] == method_id), None)
