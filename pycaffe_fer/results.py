"""results.json: the evaluation's numbers, written by the pipeline and read by the report.

This module is the one home of the format: ``evaluation`` and ``over_repeats`` compute its test-set
part from every net's scores, ``results`` puts it together with the pipeline's other entries,
``write_results`` writes it and ``read_results`` reads it back as a ``Results`` whose objects are
the record types below (fields absent from a file read as None).

    Results          the top level
    SoftLabels       D (matrix, C x C), where it came from, rows off the diagonal or near-tied
    true_softlabels  C x C, where the true mixtures are known (the synthetic set)
    label_noise_entropy  the mean entropy of the training faces' true mixtures (the synthetic set)
    Pretraining      the synthetic VGG-Face the nets started from (`weights: synthetic`), or None
    Curve            the constructor's, the hard-label baseline's and the perturbed ensemble's
                     training curves (training.read_metrics); start: 0, or the constructor's
                     iterations for a fine-tune of it
    Constructor      its validation and test accuracy, when a constructor was trained
    Investigation    Fig. 4's grid and the gammas selected from it, or None
    Method           one row per method: its evidence (accuracy, ci95, per_class (recall per true
                     class, %), calibration, distances to the true mixtures where known), its terms
                     (init, iterations, n, seeds, runs) and, by kind, mcnemar_p, mcnemar_discordant,
                     difference_ci95 (perturbed ensembles: vs the hard-label baseline, best_single,
                     best_hard_single, each fixed-gamma ensemble and each control), gamma (singles,
                     fixed_gamma), source and gammas (controls), members (ensembles: their singles'
                     ids; fixed_gamma, controls: their runs' names), member_accuracies, diversity,
                     gain_over_mean_single (every ensemble), repeats (its accuracy in each repeat),
                     mean, sd (over repeats; None for one). kinds: ensemble, single, fixed_gamma,
                     baseline (the hard-label ensemble, or one hard-label net), hard_single (the
                     hard-label ensemble's members), control
    EnsembleEvidence the configured ensemble (method), best_single, best_hard_single (or None), its
                     confusion, members' disagreement and diversity
    Repeats          the perturbed ensemble's paired t-tests across repeats (Comparison per method id)
    reliability      {method id: Reliability} per 15 bins, for the reliability diagram
    Examples         soft and misclassified test images (Example) for Figs. 1 and 5-7
"""
import collections
import json
import os

import numpy as np

from . import ensemble as ensemble_eq
from . import metrics, paths
from .atomic import atomic_path
from .classes import CLASSES, NUM_CLASSES


def _record(name, fields):
    """A record type of results.json: a namedtuple whose fields default to None."""
    return collections.namedtuple(name, fields, defaults=(None,) * len(fields.split()))


Results = _record("Results", "experiment data_description test_split test_count test_lmdb softlabels true_softlabels "
                             "label_noise_entropy pretraining curves constructor investigation methods ensemble repeats "
                             "reliability examples")
# The synthetic VGG-Face every net started from (pretrain.py): its model, persons, identity accuracy
# on held-out faces and chance, iterations, and how many of the expression set's faces (of
# expression_faces) show one of its persons (None on real data).
Pretraining = _record("Pretraining", "model identities held_out_images identity_accuracy chance iterations "
                                     "shared_faces expression_faces")
SoftLabels = _record("SoftLabels", "source matrix off_diagonal near_ties val_accuracy")
# A near-tied row of D (softlabel.near_ties): class_ is "class" in the file.
NearTie = _record("NearTie", "class_ first second values")
Constructor = _record("Constructor", "val_accuracy test_accuracy")
Investigation = _record("Investigation", "gammas accuracy selected rule train val")
Curve = _record("Curve", "run head start progress validation")
Progress = _record("Progress", "iteration loss")
Validation = _record("Validation", "iteration val_accuracy")
Method = _record("Method", "id label kind accuracy ci95 per_class nll brier ece kl_to_truth tv_to_truth top2_agreement "
                           "init iterations n seeds runs mcnemar_p mcnemar_discordant difference_ci95 gamma source gammas "
                           "members member_accuracies diversity gain_over_mean_single repeats mean sd")
EnsembleEvidence = _record("EnsembleEvidence", "fusion method best_single best_hard_single confusion disagreement diversity")
Repeats = _record("Repeats", "count method comparisons")
Comparison = _record("Comparison", "differences mean sd t p")
Reliability = _record("Reliability", "count confidence accuracy")
Examples = _record("Examples", "soft misclassified")
Example = _record("Example", "index label prediction probabilities mixture")
# How read_results reads the objects inside each record: a record type, or a list or a
# {method id: ...} mapping of them.
_NESTED = {
    Results: {"softlabels": SoftLabels, "pretraining": Pretraining, "curves": ("list", Curve), "constructor": Constructor,
              "investigation": Investigation, "methods": ("list", Method), "ensemble": EnsembleEvidence,
              "repeats": Repeats, "reliability": ("map", Reliability), "examples": Examples},
    SoftLabels: {"near_ties": ("list", NearTie)},
    Curve: {"progress": Progress, "validation": Validation},
    Repeats: {"comparisons": ("map", Comparison)},
    Examples: {"soft": ("list", Example), "misclassified": ("list", Example)},
}

# Per method, beside its accuracy: calibration and, where the true mixtures are known, the
# distances to them; (key, column heading) in the report's tables.
CALIBRATION = (("nll", "NLL"), ("brier", "Brier"), ("ece", "ECE"))
MIXTURE = (("kl_to_truth", "KL to truth"), ("tv_to_truth", "TV to truth"), ("top2_agreement", "top-2 agreement"))
BASELINE = "baseline"
CONTROL_LABELS = {"uniform": "Control: uniform smoothing of matched entropy",
                  "oracle": "Control: oracle, the true class-level soft labels"}
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


def per_class_accuracy(labels, predictions, num_classes=NUM_CLASSES):
    """Recall per true class in percent (the diagonal of the confusion matrix); None where a class
    has no test images."""
    return [None if np.isnan(v) else float(v) for v in np.diag(confusion_percent(labels, predictions, num_classes))]


def evidence(probs, labels, truth=None):
    """One method's numbers from its M x C test distributions: accuracy and its bootstrap
    interval, per-class accuracy, calibration, and the distances to the true mixtures when
    ``truth`` is given."""
    predictions = probs.argmax(axis=1)
    correct = predictions == labels
    numbers = {"accuracy": 100.0 * float(correct.mean()), "ci95": metrics.bootstrap_ci(correct),
               "per_class": per_class_accuracy(labels, predictions, probs.shape[1]),
               "nll": metrics.nll(probs, labels), "brier": metrics.brier(probs, labels),
               "ece": metrics.ece(probs, labels)}
    if truth is not None:
        numbers.update(kl_to_truth=metrics.kl_to_truth(truth, probs), tv_to_truth=metrics.tv_to_truth(truth, probs),
                       top2_agreement=metrics.top2_agreement(truth, probs))
    return numbers


def _same(values):
    """The one value every member shares, or the distinct values joined by ' / ' (the report shows it)."""
    distinct = sorted(set(values), key=str)
    return distinct[0] if len(distinct) == 1 else " / ".join(str(v) for v in distinct)


def evaluation(labels, scores, runs, runs_info, fusion, truth=None):
    """The test-set part of results.json.

    scores: {run dir: M x C fc scores}; runs: {"ensemble": [run dirs], "fixed": {gamma: [run dirs]},
    "baseline": [run dirs] (0, 1 or N hard-label nets), "controls": {source: [run dirs]}}; runs_info: {run dir: {name, run (its path in
    the experiment), gamma, seed, init, iterations}}; truth: M x C true mixtures or None.
    Every row states its terms (init, iterations, N, seeds) beside its evidence; every ensemble its
    members' accuracies, their mean pairwise disagreement and its gain over their mean.
    """
    labels = np.asarray(labels)
    probs, rows = {}, []

    def add(method_id, label, kind, distribution, dirs, **extra):
        probs[method_id] = distribution
        infos = [runs_info[d] for d in dirs]
        rows.append(dict(id=method_id, label=label, kind=kind, **dict(
            evidence(distribution, labels, truth), init=_same(i["init"] for i in infos),
            iterations=_same(i["iterations"] for i in infos), n=len(dirs), seeds=[i["seed"] for i in infos],
            runs=[i["run"] for i in infos], **extra)))

    def add_ensemble(method_id, label, kind, dirs, fused, **extra):
        member_accuracies = [accuracy(labels, scores[d].argmax(axis=1)) for d in dirs]
        _, disagreement = ensemble_eq.pairwise_disagreement([scores[d].argmax(axis=1) for d in dirs])
        add(method_id, label, kind, _distribution([scores[d] for d in dirs], fused), dirs,
            member_accuracies=member_accuracies, diversity=disagreement, **extra)
        rows[-1]["gain_over_mean_single"] = rows[-1]["accuracy"] - float(np.mean(member_accuracies))

    members = runs["ensemble"]
    single_ids = ["single_" + runs_info[d]["name"] for d in members]
    for fused in ensemble_eq.FUSIONS:
        add_ensemble("ensemble_" + fused, "Ours, gamma perturbation (N=%d, %s fusion)" % (len(members), fused),
                     "ensemble", members, fused, members=single_ids)
    for method_id, d in zip(single_ids, members):
        add(method_id, "Ours, single classifier, gamma = %s" % runs_info[d]["gamma"], "single",
            ensemble_eq.softmax(scores[d]), [d], gamma=runs_info[d]["gamma"])
    for gamma, dirs in sorted(runs["fixed"].items()):
        add_ensemble("fixed_g%s" % gamma, "Ours, gamma = %s (N=%d)" % (gamma, len(dirs)), "fixed_gamma", dirs, fusion,
                     gamma=gamma, members=[runs_info[d]["name"] for d in dirs])
    for source, dirs in runs["controls"].items():
        add_ensemble("control_" + source, "%s (N=%d, %s fusion)" % (CONTROL_LABELS[source], len(dirs), fusion), "control",
                     dirs, fusion, source=source, gammas=[runs_info[d]["gamma"] for d in dirs],
                     members=[runs_info[d]["name"] for d in dirs])
    hard = runs["baseline"]
    hard_ids = []
    if len(hard) == 1:
        add(BASELINE, "Hard labels, single classifier", "baseline", ensemble_eq.softmax(scores[hard[0]]), hard)
    elif hard:
        hard_ids = ["hard_%d" % k for k in range(len(hard))]     # by place: the same ids in every repeat
        add_ensemble(BASELINE, "Hard labels (N=%d, %s fusion)" % (len(hard), fusion), "baseline", hard, fusion,
                     members=hard_ids)
        for method_id, d in zip(hard_ids, hard):
            add(method_id, "Hard labels, single classifier, seed %d" % runs_info[d]["seed"], "hard_single",
                ensemble_eq.softmax(scores[d]), [d])

    by_id = {row["id"]: row for row in rows}
    best_single = max(single_ids, key=lambda i: by_id[i]["accuracy"])
    best_hard_single = max(hard_ids, key=lambda i: by_id[i]["accuracy"]) if hard_ids else None
    aliases = {"best_single": best_single, "best_hard_single": best_hard_single}
    correct = {i: p.argmax(axis=1) == labels for i, p in probs.items()}
    compared = [BASELINE] * (BASELINE in by_id) + ["best_single"] + ["best_hard_single"] * bool(hard_ids) + [
        row["id"] for row in rows if row["kind"] in ("fixed_gamma", "control")]
    for fused in ensemble_eq.FUSIONS:
        row = by_id["ensemble_" + fused]
        ours = correct[row["id"]]
        row["mcnemar_p"], row["mcnemar_discordant"], row["difference_ci95"] = {}, {}, {}
        for key in compared:
            theirs = correct[aliases.get(key, key)]
            p, only_ours, only_theirs = metrics.mcnemar_exact(ours, theirs)
            row["mcnemar_p"][key], row["mcnemar_discordant"][key] = p, [only_ours, only_theirs]
            row["difference_ci95"][key] = metrics.bootstrap_ci(ours.astype(np.float64) - theirs)

    configured = "ensemble_" + fusion
    predictions = probs[configured].argmax(axis=1)
    disagreement, diversity = ensemble_eq.pairwise_disagreement([scores[d].argmax(axis=1) for d in members])
    plotted = [configured, BASELINE, best_single]
    return {
        "test_count": int(len(labels)), "methods": rows,
        "ensemble": {"fusion": fusion, "method": configured, "best_single": best_single,
                     "best_hard_single": best_hard_single,
                     "confusion": confusion_percent(labels, predictions, probs[configured].shape[1]).tolist(),
                     "disagreement": disagreement.tolist(), "diversity": diversity},
        "reliability": {i: _reliability(probs[i], labels) for i in plotted if i in probs},
        "examples": examples(labels, probs[configured], truth),
    }


def over_repeats(evaluations):
    """Repeat 0's evaluation, with each method's test accuracy in every repeat of the base-classifier
    stage (``repeats``, ``mean``, ``sd``; sd null for one repeat) and ``repeats``: per comparison of
    the perturbed ensemble (with the hard-label baseline and each control) the per-repeat accuracy
    differences and a paired t-test across the repeats (metrics.paired_t_test)."""
    first = evaluations[0]
    by_repeat = [{row["id"]: row for row in evaluation["methods"]} for evaluation in evaluations]
    for row in first["methods"]:
        accuracies = [rows[row["id"]]["accuracy"] for rows in by_repeat]
        row.update(repeats=accuracies, mean=float(np.mean(accuracies)),
                   sd=float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else None)
    configured = first["ensemble"]["method"]
    others = [row["id"] for row in first["methods"] if row["kind"] in ("baseline", "control")]
    comparisons = {}
    for other in others:
        differences = [rows[configured]["accuracy"] - rows[other]["accuracy"] for rows in by_repeat]
        comparisons[other] = dict(metrics.paired_t_test(differences), differences=differences)
    first["repeats"] = {"count": len(evaluations), "method": configured, "comparisons": comparisons}
    return first


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


def near_tie(j, first, second, first_value, second_value):
    """The NearTie of a row of softlabel.near_ties (class indices and D's values)."""
    return NearTie(CLASSES[j], CLASSES[first], CLASSES[second], [first_value, second_value])


def results(evaluation, **entries):
    """results.json's content: the test-set part (``evaluation``, ``over_repeats``) and the other
    entries, by Results' field names (records or plain values)."""
    return _plain(Results(**dict(evaluation, **entries)))


def _plain(value):
    """JSON's value of a record, list or mapping of them."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return collections.OrderedDict((field.rstrip("_"), _plain(v)) for field, v in zip(value._fields, value))
    if isinstance(value, dict):
        return collections.OrderedDict((key, _plain(v)) for key, v in value.items())
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def write_results(exp_dir, content):
    """exp_dir/results.json of ``results``' content."""
    with atomic_path(os.path.join(exp_dir, paths.RESULTS_FILE)) as tmp:
        with open(tmp, "w") as handle:
            json.dump(content, handle, indent=2)


def view(content):
    """A Results of results.json's content (or of its test-set part alone)."""
    return _read(Results, content)


def read_results(exp_dir):
    """The Results an experiment wrote into exp_dir/results.json."""
    with open(os.path.join(exp_dir, paths.RESULTS_FILE)) as handle:
        return view(json.load(handle))


def _read(kind, data):
    nested = _NESTED.get(kind, {})
    values = {}
    for key, value in data.items():
        inner = nested.get(key)
        if value is not None and isinstance(inner, tuple):
            value = ([_read(inner[1], v) for v in value] if inner[0] == "list"
                     else collections.OrderedDict((k, _read(inner[1], v)) for k, v in value.items()))
        elif value is not None and inner:
            value = _read(inner, value)
        values[key + "_" if key + "_" in kind._fields else key] = value
    return kind(**values)


def method(results, method_id):
    """One Method of a Results by its id, or None."""
    return next((row for row in results.methods if row.id == method_id), None)
