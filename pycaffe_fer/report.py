"""Reports: the paper's tables and figures beside ours, and the evidence the paper does not give.

`write_report` turns an experiment's results (a pycaffe_fer.results.Results, as read_results reads
the results.json the pipeline's evaluation stage wrote) into report.md with its PNGs, next to the
paper's numbers from configs/paper_results.yaml: a five-line summary, then one section per table
or figure.
"""
import collections
import os

import matplotlib
import numpy as np
import yaml

from . import paths
from . import results as results_format
from .atomic import atomic_path
from .classes import CLASSES
from .config import CONFIG_DIR
from .lmdb_io import datum_array, read_lmdb
from .softlabel import NEAR_TIE

matplotlib.use("Agg")  # training machines have no display
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

PAPER_RESULTS = os.path.join(CONFIG_DIR, "paper_results.yaml")
SIGNIFICANCE_LEVEL = 0.05
DPI = 110

# What report.md's sections are drawn from: the run directory, the results dict, the paper's
# numbers of the dataset named by the config's `paper` key, and that key.
Context = collections.namedtuple("Context", "run_root results paper paper_key")


def matrix_markdown(matrix, corner, fmt):
    """A class x class matrix as a markdown table: rows and columns named AN .. NE."""
    return markdown_table([corner] + list(CLASSES),
                          [[CLASSES[i]] + [fmt % v for v in row] for i, row in enumerate(matrix)])


def markdown_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def matrix_text(matrix, fmt="%.4f"):
    """The plain-text layout of the paper's Table 1 (for the console)."""
    lines = ["      " + "  ".join("%6s" % c for c in CLASSES)]
    lines += ["%-4s  " % CLASSES[i] + "  ".join(fmt % v for v in row) for i, row in enumerate(matrix)]
    return "\n".join(lines)


# ---- plots -------------------------------------------------------------------------------------

def plot_matrix(matrix, path, title, fmt, xlabel="", ylabel=""):
    """A heatmap of a class x class matrix with its values written in the cells."""
    matrix = np.asarray(matrix, dtype=float)
    figure, axes = plt.subplots(figsize=(6, 5))
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    axes.set_xticks(range(len(CLASSES)))
    axes.set_xticklabels(CLASSES)
    axes.set_yticks(range(len(CLASSES)))
    axes.set_yticklabels(CLASSES)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    high = np.nanmax(matrix) if np.isfinite(matrix).any() else 1
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, fmt % value, ha="center", va="center", fontsize=8,
                  color="white" if value > 0.6 * high else "black")
    _save(figure, path)


def plot_gamma(gammas, accuracies, selected, path, title, paper_range=None, paper_name=""):
    """Fig. 4: validation accuracy against the perturbation factor, the selected gammas marked and
    the range the paper selected shaded."""
    figure, axes = plt.subplots(figsize=(7, 4.2))
    if paper_range:
        axes.axvspan(min(paper_range) - 0.05, max(paper_range) + 0.05, color="tab:orange", alpha=0.18,
                     label="paper's selected range (%s)" % paper_name)
    axes.plot(gammas, accuracies, "o-", color="tab:blue", label="single classifier")
    marked = [(g, a) for g, a in zip(gammas, accuracies) if any(abs(g - s) < 1e-9 for s in selected)]
    if marked:
        axes.plot(*zip(*marked), "o", color="tab:red", markersize=10, label="ours, selected for the ensemble")
    axes.set_xlabel("perturbation factor gamma", fontsize=11)
    axes.set_ylabel("validation accuracy (%)", fontsize=11)
    axes.set_title(title, fontsize=12)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=9, loc="lower center")
    _save(figure, path)


def plot_curves(curves, noise_entropy, path):
    """Training loss against iteration: hard-label runs (cross-entropy, with the labels' noise
    entropy where known) and soft-label runs (KL divergence) side by side; validation accuracy below."""
    figure, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex="col", gridspec_kw={"height_ratios": [3, 2]})
    for column, (head, title) in enumerate((("hard", "hard labels: cross-entropy"), ("soft", "soft labels: KL divergence"))):
        loss, accuracy = axes[0, column], axes[1, column]
        for curve in (c for c in curves if c.head == head):
            line, = loss.plot([curve.start + i for i in curve.progress.iteration], curve.progress.loss, ".-",
                              label=curve.run)
            accuracy.plot([curve.start + i for i in curve.validation.iteration],
                          [100 * a for a in curve.validation.val_accuracy], "o-", color=line.get_color())
        if head == "hard" and noise_entropy is not None:
            loss.axhline(noise_entropy, color="black", linestyle="--",
                         label="the labels' noise entropy (%.3f)" % noise_entropy)
        loss.set_title(title, fontsize=11)
        loss.set_ylabel("training loss (nats)")
        loss.grid(alpha=0.3)
        loss.legend(fontsize=7)
        accuracy.set_xlabel("iteration" + (" (a fine-tune of the constructor counted on from its end)"
                                           if any(c.start for c in curves) else ""))
        accuracy.set_ylabel("validation accuracy (%)")
        accuracy.grid(alpha=0.3)
    _save(figure, path)


def plot_reliability(curves, path):
    """Reliability diagram: accuracy against confidence per bin, one line per method (curves:
    [(label, {count, confidence, accuracy})]), and how many test images fall in each bin."""
    figure, (axes, counts) = plt.subplots(2, 1, figsize=(6.5, 6.5), sharex=True,
                                          gridspec_kw={"height_ratios": [3, 1]})
    axes.plot([0, 1], [0, 1], "--", color="gray", label="perfectly calibrated")
    bins = len(curves[0][1].count)
    centres = (np.arange(bins) + 0.5) / bins
    width = 0.8 / bins / len(curves)
    for k, (label, curve) in enumerate(curves):
        count = np.asarray(curve.count)
        filled = count > 0                     # empty bins have no accuracy (null in results.json)
        line, = axes.plot(np.asarray(curve.confidence, dtype=float)[filled],
                          np.asarray(curve.accuracy, dtype=float)[filled],
                          "o-", label=label)
        counts.bar(centres + (k - (len(curves) - 1) / 2) * width, count, width, color=line.get_color())
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_ylabel("accuracy in the bin", fontsize=11)
    axes.set_title("reliability (%d equal-width confidence bins)" % bins, fontsize=12)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=9, loc="upper left")
    counts.set_xlabel("confidence (top-label probability)", fontsize=11)
    counts.set_ylabel("images", fontsize=11)
    _save(figure, path)


def plot_mixtures(rows, path):
    """How close each method's predicted distributions come to the images' true mixtures."""
    labels = [row.label.replace("Ours, ", "") for row in rows]
    figure, (tv, top2) = plt.subplots(1, 2, figsize=(10, 0.45 * len(rows) + 1.9), sharey=True)
    y = np.arange(len(rows))
    colours = ["tab:red" if row.kind == "ensemble" else "tab:gray" if row.kind in ("baseline", "hard_single")
               else "tab:green" if row.kind == "control" else "tab:blue" for row in rows]
    tv.barh(y, [row.tv_to_truth for row in rows], color=colours)
    top2.barh(y, [100 * row.top2_agreement for row in rows], color=colours)
    tv.set_yticks(y)
    tv.set_yticklabels(labels, fontsize=9)
    tv.invert_yaxis()
    tv.set_xlabel("mean total-variation distance\nto the true mixture (lower is better)", fontsize=10)
    top2.set_xlabel("top-2 classes are the true mixture's\ntop 2, % of images (higher is better)", fontsize=10)
    for axes in (tv, top2):
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle("recovered mixtures (red: perturbed ensembles, gray: hard labels, green: controls, blue: soft labels)",
                    fontsize=11)
    _save(figure, path)


def plot_faces(images, bars, captions, path, title, bar_labels=()):
    """A grid of faces (7 per row), each above a bar chart of its distributions over the seven
    classes (bars: per face a list of distributions, drawn side by side), captioned."""
    columns = min(7, len(images))
    rows = int(np.ceil(len(images) / float(columns)))
    figure, axes = plt.subplots(2 * rows, columns, figsize=(1.7 * columns, 3.2 * rows + 0.8),
                                gridspec_kw={"height_ratios": [1.6, 1.0] * rows}, squeeze=False)
    colours = ("tab:blue", "tab:orange", "tab:green")
    for k in range(rows * columns):
        face, chart = axes[2 * (k // columns), k % columns], axes[2 * (k // columns) + 1, k % columns]
        face.axis("off")
        if k >= len(images):
            chart.axis("off")
            continue
        face.imshow(images[k], cmap="gray" if images[k].ndim == 2 else None)
        face.set_title(captions[k], fontsize=13)
        width = 0.8 / len(bars[k])
        for b, distribution in enumerate(bars[k]):
            chart.bar(np.arange(len(CLASSES)) + (b - (len(bars[k]) - 1) / 2.0) * width, distribution, width,
                      color=colours[b], label=bar_labels[b] if bar_labels else None)
        chart.set_ylim(0, 1)
        chart.set_xticks(range(len(CLASSES)))
        chart.set_xticklabels(CLASSES, fontsize=7.5)
        chart.set_yticks([0, 0.5, 1])
        chart.tick_params(axis="y", labelsize=9, labelleft=k % columns == 0)
        chart.grid(axis="y", alpha=0.3)
    if bar_labels:
        figure.legend(*axes[1, 0].get_legend_handles_labels(), loc="lower center", ncol=len(bar_labels), fontsize=11)
    figure.suptitle(title, fontsize=14)
    height = figure.get_size_inches()[1]
    figure.subplots_adjust(left=0.035, right=0.995, top=1 - 0.75 / height, bottom=(0.55 if bar_labels else 0.25) / height,
                           hspace=0.45, wspace=0.12)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    plt.close(figure)


def _save(figure, path):
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    plt.close(figure)


def test_images(lmdb_path, indices):
    """{index: H x W x 3 RGB (or H x W gray) uint8} of the index-th records of an image LMDB."""
    wanted, images = set(indices), {}
    for index, (_, datum) in enumerate(read_lmdb(lmdb_path)):
        if index in wanted:
            image = datum_array(datum).transpose(1, 2, 0)[:, :, ::-1]
            gray = (image == image[:, :, :1]).all()
            images[index] = image[:, :, 0] if gray else image
            if len(images) == len(wanted):
                break
    return images


# ---- numbers as text -------------------------------------------------------------------------------

def _pct(value):
    return "-" if value is None else "%.2f" % value


def _with_ci(row):
    return "%.2f [%.1f, %.1f]" % (row.accuracy, row.ci95[0], row.ci95[1])


def _p(value):
    return "%.3g" % value if value >= 1e-4 else "%.1e" % value


def _verdict(p):
    return ("significant (p = %s < %g)" if p < SIGNIFICANCE_LEVEL else "not significant (p = %s >= %g)") % (
        _p(p), SIGNIFICANCE_LEVEL)


def _name(row):
    return row.label.replace("Ours, ", "")


def _seeds(seeds):
    """[3, 4, 5] -> '3-5'; other lists as they are."""
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return "%d-%d" % (seeds[0], seeds[-1])
    return ", ".join(str(seed) for seed in seeds)


def _compared(results, key):
    """The method row an ensemble was compared with under `key` (a method id, or best_single /
    best_hard_single, which results.ensemble resolves)."""
    return results_format.method(results, getattr(results.ensemble, key) if key.startswith("best_") else key)


# ---- sections of report.md ----------------------------------------------------------------------------

def summary(ctx):
    """Five lines a reader can act on: best method, its margin, significance, calibration, D."""
    results = ctx.results
    rows = results.methods
    best, runner_up = sorted(rows, key=lambda row: -row.accuracy)[:2]
    ens = results_format.method(results, results.ensemble.method)
    baseline = results_format.method(results, results_format.BASELINE)
    best_single = results_format.method(results, results.ensemble.best_single)
    lines = ["- **Best method: %s**, %.2f%% test accuracy (95%% CI %.1f-%.1f) on %d images, %.2f points "
             "ahead of the next, %s." % (_name(best), best.accuracy, best.ci95[0], best.ci95[1],
                                         results.test_count, best.accuracy - runner_up.accuracy, _name(runner_up))]
    if baseline:
        lines.append("- Ensemble vs hard-label baseline: %+.2f points (%.2f vs %.2f), %s." % (
            ens.accuracy - baseline.accuracy, ens.accuracy, baseline.accuracy,
            _verdict(ens.mcnemar_p[results_format.BASELINE])))
    lines.append("- Ensemble vs its best single classifier (%s): %+.2f points, %s." % (
        _name(best_single), ens.accuracy - best_single.accuracy, _verdict(ens.mcnemar_p["best_single"])))
    if baseline:
        lines.append("- Calibration: ensemble ECE %.3f, NLL %.3f; hard-label baseline ECE %.3f, NLL %.3f: the ensemble "
                     "is %s calibrated." % (ens.ece, ens.nll, baseline.ece, baseline.nll,
                                            "better" if ens.ece < baseline.ece else "worse"))
    else:
        lines.append("- Calibration: ensemble ECE %.3f, NLL %.3f." % (ens.ece, ens.nll))
    off = results.softlabels.off_diagonal
    lines.append("- The paper's condition j = argmax_k d_jk on D: %s." % (
        "**not met** for %s (constructor.allow_off_diagonal)" % off if off else "met on all %d rows" % len(CLASSES)))
    return ["## Summary", ""] + lines + [""]


def title(ctx):
    return ["# pycaffe_fer report: %s" % ctx.results.experiment, ""]


def data_line(ctx):
    results = ctx.results
    return ["Ours: %s; test set `%s` (%d images). Paper: Gan, Chen & Xu (2019) on %s. The two columns "
            "are **not** the same data unless the line above names the paper's dataset." % (
                results.data_description, results.test_split, results.test_count, ctx.paper_key.upper()), ""]


def pretraining(ctx):
    info = ctx.results.pretraining
    if not info:
        return []
    line = ("Initial weights of every net: the synthetic VGG-Face `%s`, this config's net trained in Caffe to tell "
            "%d synthetic persons apart, as VGG-Face was trained on 2,622 celebrities (%d iterations; top-1 identity "
            "accuracy %.2f%% on %d held-out faces of those persons, chance %.2f%%)." % (
                os.path.basename(info.model), info.identities, info.iterations, 100 * info.identity_accuracy,
                info.held_out_images, 100 * info.chance))
    if info.shared_faces == 0:
        line += (" Its persons and the expression set's are disjoint: 0 of the expression set's %d faces show one "
                 "of them." % info.expression_faces)
    elif info.shared_faces:
        line += " **%d of the expression set's %d faces show one of its persons.**" % (
            info.shared_faces, info.expression_faces)
    return [line, ""]


def softlabels(ctx):
    results, paper = ctx.results, ctx.paper
    D = np.asarray(results.softlabels.matrix)
    plot_matrix(D, os.path.join(ctx.run_root, "softlabels.png"), "soft labels D (row = true class)", "%.2f")
    out = ["## Soft labels (Table 1)", "", "Source: %s." % results.softlabels.source, "",
           matrix_markdown(D, "ours", "%.4f"), "", "![soft labels](softlabels.png)", ""]
    if results.softlabels.off_diagonal:
        out += ["**The paper's condition j = argmax_k d_jk fails** for %s: those classes' soft labels name "
                "another class first (kept because constructor.allow_off_diagonal is set)."
                % results.softlabels.off_diagonal, ""]
    for tie in results.softlabels.near_ties or []:
        out += ["**Near tie in D, row %s**: %s %.3f vs %s %.3f (within %g). Perturbing or learning this row can "
                "move its argmax, so soft-label nets may call %s faces %s: see their per-class accuracy." % (
                    tie.class_, tie.first, tie.values[0], tie.second, tie.values[1], NEAR_TIE,
                    tie.class_, tie.second if tie.first == tie.class_ else tie.first), ""]
    constructor = results.constructor
    if constructor:
        line = "Constructor (hard labels): validation accuracy %.2f%%, test accuracy %.2f%%" % (
            constructor.val_accuracy, constructor.test_accuracy)
        if "constructor" in paper:
            line += " (paper: %.2f%% and %.2f%%)" % (paper["constructor"]["val"], paper["constructor"]["test"])
        out += [line + ".", ""]
    truth = results.true_softlabels
    if truth is not None:
        truth = np.asarray(truth)
        out += ["The synthetic set's **true** soft labels (row j: the mean expression mixture of the images labelled j):", "",
                matrix_markdown(truth, "truth", "%.4f"), "",
                "Distance of the constructed D from the truth: mean absolute difference %.4f, largest %.4f; "
                "mean total-variation distance per row %.4f." % (
                    np.abs(D - truth).mean(), np.abs(D - truth).max(), 0.5 * np.abs(D - truth).sum(axis=1).mean()), ""]
    return out


def soft_label_faces(ctx):
    """Fig. 1: test faces with their soft label (D's row of their class) and, where known, their true mixture."""
    examples = ctx.results.examples.soft
    D = np.asarray(ctx.results.softlabels.matrix)
    images = test_images(ctx.results.test_lmdb, [e.index for e in examples])
    known = all(e.mixture is not None for e in examples)
    bars = [[D[e.label]] + ([e.mixture] if known else []) for e in examples]
    plot_faces([images[e.index] for e in examples], bars, [CLASSES[e.label] for e in examples],
               os.path.join(ctx.run_root, "softlabel_faces.png"), "test faces and their soft labels",
               ["soft label d_j from the constructor"] + (["the face's true mixture"] if known else []))
    return ["## Faces and their soft labels (Fig. 1)", "",
            "The first test face of each class, its soft label (the constructor's row of D for its class)%s." % (
                " and the true expression mixture it was drawn with" if known else ""), "",
            "![soft labels of test faces](softlabel_faces.png)", ""]


def investigation(ctx):
    inv, paper = ctx.results.investigation, ctx.paper
    if not inv:
        return []
    plot_gamma(inv.gammas, inv.accuracy, inv.selected, os.path.join(ctx.run_root, "gamma.png"),
               "gamma investigation (%s)" % ctx.results.experiment, paper["selected_gammas"], ctx.paper_key.upper())
    return ["## Gamma investigation (Fig. 4)", "",
            "Trained on `%s`, validated on `%s`." % (inv.train, inv.val), "",
            markdown_table(["gamma"] + ["%.1f" % g for g in inv.gammas],
                           [["accuracy (%)"] + [_pct(a) for a in inv.accuracy]]), "",
            "Selected for the ensemble (%s): %s; the paper selected %s on %s (shaded)." % (
                inv.rule, ", ".join("%.1f" % g for g in inv.selected),
                ", ".join("%.1f" % g for g in paper["selected_gammas"]), ctx.paper_key.upper()), "",
            "![gamma investigation](gamma.png)", ""]


def training_curves(ctx):
    results = ctx.results
    curves = results.curves
    if not curves:
        return []
    noise = results.label_noise_entropy
    plot_curves(curves, noise, os.path.join(ctx.run_root, "curves.png"))
    out = ["## Training curves", "",
           "Training loss (mean over each display interval) and validation accuracy at the end of each segment, "
           "from each run's metrics.csv: the constructor and the hard-label baseline (cross-entropy) and the "
           "perturbed ensemble's nets (KL divergence to their soft labels)."]
    if noise is not None:
        hard = [c for c in curves if c.head == "hard" and c.progress.loss]
        fitted = [c.run for c in hard if c.progress.loss[-1] < noise]
        out[-1] += (" The dashed line is the labels' noise entropy (%.3f nats, the mean entropy of the training "
                    "faces' true mixtures): a hard-label loss below it means the net memorises its noisy labels (%s)."
                    % (noise, "here: " + ", ".join(fitted) if fitted else "none does here"))
    return out + ["", "![training curves](curves.png)", ""]


def accuracy_table(ctx):
    results, paper = ctx.results, ctx.paper
    rows_by_kind = collections.defaultdict(list)
    for row in results.methods:
        rows_by_kind[row.kind].append(row)
    singles = rows_by_kind["single"]
    configured = results.ensemble.method
    ensembles = sorted(rows_by_kind["ensemble"], key=lambda row: row.id != configured)

    def terms(row):
        return [str(row.init), str(row.iterations), str(row.n), _seeds(row.seeds)]

    def mean_best(accuracies):
        return "%s (best %s)" % (_pct(np.mean(accuracies)), _pct(max(accuracies)))

    table = []
    for row in ensembles:
        papers = paper["rows"]["ensemble"] if row.id == configured else {}
        table.append([row.label, _with_ci(row), mean_best(row.member_accuracies) if row.id == configured else "",
                      _pct(papers.get("ensemble")), _pct(papers.get("single"))] + terms(row))
    for row in rows_by_kind["fixed_gamma"]:
        papers = paper["rows"].get("fixed_gamma_%s" % row.gamma, {})
        table.append([row.label, _with_ci(row), mean_best(row.member_accuracies),
                      _pct(papers.get("ensemble")), _pct(papers.get("single"))] + terms(row))
    for row in rows_by_kind["control"]:
        table.append([row.label, _with_ci(row), mean_best(row.member_accuracies), "-", "-"] + terms(row))
    for row in rows_by_kind["baseline"]:
        papers = paper["rows"]["baseline"]
        ours = [_with_ci(row), mean_best(row.member_accuracies)] if row.n > 1 else ["-", _with_ci(row)]
        table.append([row.label] + ours + [_pct(papers.get("ensemble")), _pct(papers.get("single"))] + terms(row))
    trained = ensembles + rows_by_kind["fixed_gamma"] + rows_by_kind["control"] + rows_by_kind["baseline"]
    kinds = {(str(row.init), str(row.iterations)) for row in trained}
    if len(kinds) == 1:
        (init, iterations), = kinds
        terms_line = ("Every row trained on equal terms: init %s, %s iterations of the same solver (`ensemble.solver`), "
                      "seeds as listed." % (init, iterations))
    else:
        terms_line = "**Not on equal terms**: the rows differ in init or iterations (%s)." % "; ".join(
            "%s: %s, %s" % (_name(row), row.init, row.iterations) for row in trained)
    return ["## Accuracy (Table %d)" % paper["comparison_table"], "",
            "Test accuracy in percent, with its 95%% bootstrap interval (%d resamples of the test images); "
            "single: the mean (and best) of the ensemble's members. Each row's terms: its initial weights, "
            "iterations, number of nets N and their seeds." % results_format.metrics.BOOTSTRAP_RESAMPLES, "",
            markdown_table(["method", "ours: ensemble", "ours: single (mean)", "paper: ensemble", "paper: single",
                            "init", "iterations", "N", "seeds"], table), "",
            terms_line, "",
            "Single classifiers of the ensemble:", "",
            markdown_table(["gamma"] + ["%.1f" % s.gamma for s in singles],
                           [["accuracy (%)"] + [_with_ci(s) for s in singles]]), ""]


def per_class(ctx):
    """Recall per true class of every method: where a near-tied row of D shows."""
    rows = ctx.results.methods
    ties = ctx.results.softlabels.near_ties or []
    out = ["## Per-class accuracy", "",
           "Percent of each true class's test images the method labels correctly (the diagonal of its confusion "
           "matrix)." + (" Near-tied rows of D: %s." % ", ".join(t.class_ for t in ties) if ties else ""), "",
           markdown_table(["method"] + list(CLASSES), [[_name(row)] + [_pct(v) for v in row.per_class] for row in rows]),
           ""]
    return out


def plot_sources(curves, hard, path):
    """Single-classifier test accuracy against gamma, one line per soft-label source (curves:
    [(label, gammas, accuracies)]), the hard-label nets' mean as a horizontal line."""
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for label, gammas, accuracies in curves:
        axes.plot(gammas, accuracies, "o-", label=label)
    if hard is not None:
        axes.axhline(hard, color="tab:gray", linestyle="--", label="hard labels (mean of the nets)")
    axes.set_xlabel("perturbation factor gamma", fontsize=11)
    axes.set_ylabel("test accuracy of the single net (%)", fontsize=11)
    axes.set_title("what helps: the source of the soft labels", fontsize=12)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=9)
    _save(figure, path)


def what_helps(ctx):
    """Each soft-label source's ensemble beside hard labels: D's class structure, or smoothing alone?"""
    results = ctx.results
    rows = results.methods
    controls = [row for row in rows if row.kind == "control"]
    if not controls:
        return []
    ours = results_format.method(results, results.ensemble.method)
    singles = [row for row in rows if row.kind == "single"]
    hard = results_format.method(results, results_format.BASELINE)
    curves = [("constructed D (the paper's)", [s.gamma for s in singles], [s.accuracy for s in singles])]
    curves += [(row.source, row.gammas, row.member_accuracies) for row in controls]
    hard_mean = float(np.mean(hard.member_accuracies)) if hard and hard.member_accuracies is not None else (
        hard.accuracy if hard else None)
    plot_sources(curves, hard_mean, os.path.join(ctx.run_root, "sources.png"))
    known = ours.tv_to_truth is not None
    repeated = results.repeats.count > 1
    table = []
    for row in [ours] + controls + ([hard] if hard else []):
        singles_mean = np.mean(row.member_accuracies) if row.member_accuracies is not None else row.accuracy
        table.append([_name(row), _with_ci(row)] + ([_mean_sd(row)] if repeated else []) +
                     [_pct(singles_mean), "%.4f" % row.ece] + (["%.4f" % row.tv_to_truth] if known else []))
    return ["## What helps? Soft-label sources on equal terms", "",
            "The perturbed ensemble trained again with other soft labels, every other term the same (gammas, N, "
            "init, solver, seeds): uniform smoothing whose rows have the mean entropy of each perturbed D "
            "(smoothing without D's class structure) and, where the true mixtures are known, the true class-level "
            "soft labels (the best a class-level D can be).", "",
            markdown_table(["method", "ensemble (%) [95% CI]"] +
                           (["mean +- sd over %d repeats" % results.repeats.count] if repeated else []) +
                           ["single (mean, %)", "ECE"] + (["TV to truth"] if known else []), table), "",
            "![accuracy against gamma per source](sources.png)", ""]


def _mean_sd(row):
    return "%.2f +- %.2f" % (row.mean, row.sd)


def repeats(ctx):
    """Training noise: every method's accuracy over K repeats of the base classifiers (disjoint seeds),
    and the perturbed ensemble's paired differences across them."""
    results = ctx.results
    count = results.repeats.count
    if count == 1:
        return []
    rows = [row for row in results.methods if row.kind not in ("single", "hard_single")]
    ours = results_format.method(results, results.repeats.method)
    table = [[_name(row)] + [_pct(a) for a in row.repeats] + [_mean_sd(row)] for row in rows]
    tests = []
    for other_id, test in sorted(results.repeats.comparisons.items()):
        tests.append([_name(results_format.method(results, other_id))] +
                     ["%+.2f" % d for d in test.differences] +
                     ["%+.2f +- %.2f" % (test.mean, test.sd), "%.3g" % test.t, _p(test.p),
                      "yes" if test.p < SIGNIFICANCE_LEVEL else "no"])
    return ["## Over %d repeats (training noise)" % count, "",
            "The base-classifier stage trained %d times with disjoint seeds (`ensemble.repeats`, `--repeats`; the "
            "constructor and D stay one): each method's test accuracy per repeat, and its mean and standard deviation. "
            "McNemar and the bootstrap above cover the test sample of repeat 0; these numbers cover the randomness of "
            "training." % count, "",
            markdown_table(["method"] + ["repeat %d" % r for r in range(count)] + ["mean +- sd"], table), "",
            "%s minus each other method, per repeat, and a paired t-test across the repeats (%d degrees of freedom):"
            % (_name(ours), count - 1), "",
            markdown_table(["minus"] + ["repeat %d" % r for r in range(count)] +
                           ["mean +- sd", "t", "p", "significant at %g" % SIGNIFICANCE_LEVEL], tests), ""]


def significance(ctx):
    results = ctx.results
    out = ["## Significance", "",
           "McNemar's exact test on the test images both classifiers saw: under the null hypothesis the images "
           "only one of the two gets right split 50/50 (binomial, two-sided). The interval is the paired "
           "bootstrap's 95% interval of the difference (the same resampled images for both).", ""]
    table, words = [], []
    for row in results.methods:
        if row.kind != "ensemble":
            continue
        for other_key, p in sorted(row.mcnemar_p.items()):
            other = _compared(results, other_key)
            only_this, only_other = row.mcnemar_discordant[other_key]
            low, high = row.difference_ci95[other_key]
            table.append([_name(row), _name(other), "%+.2f [%+.1f, %+.1f]" % (row.accuracy - other.accuracy, low, high),
                          "%d / %d" % (only_this, only_other), _p(p), "yes" if p < SIGNIFICANCE_LEVEL else "no"])
            words.append("%s vs %s: %s." % (_name(row), _name(other), _verdict(p)))
    out += [markdown_table(["ensemble", "compared with", "difference (points) [95% CI]",
                            "only the ensemble right / only the other right", "McNemar p",
                            "significant at %g" % SIGNIFICANCE_LEVEL], table), ""]
    return out + ["- " + w for w in words] + [""]


def calibration(ctx):
    results = ctx.results
    rows = results.methods
    curves = [(_name(results_format.method(results, i)), curve) for i, curve in results.reliability.items()]
    plot_reliability(curves, os.path.join(ctx.run_root, "reliability.png"))
    table = [[_name(row), _with_ci(row)] + ["%.4f" % getattr(row, key) for key, _ in results_format.CALIBRATION]
             for row in rows]
    best = min(rows, key=lambda row: row.ece)
    return ["## Calibration", "",
            "Soft labels are a kind of label smoothing, which changes how far a net's probabilities can be "
            "trusted. NLL: mean negative log-likelihood of the true label (nats); Brier: mean squared error of "
            "the 7-way distribution against the one-hot label; ECE: expected calibration error, %d equal-width "
            "bins of the top-label confidence. Lower is better for all three." % results_format.metrics.ECE_BINS, "",
            markdown_table(["method", "accuracy (%) [95% CI]"] + [h for _, h in results_format.CALIBRATION], table), "",
            "Best calibrated (lowest ECE): %s (%.4f)." % (_name(best), best.ece), "",
            "![reliability diagram](reliability.png)", ""]


def mixtures(ctx):
    results = ctx.results
    rows = [row for row in results.methods if row.tv_to_truth is not None]
    if not rows:
        return []
    plot_mixtures(rows, os.path.join(ctx.run_root, "mixtures.png"))
    table = [[_name(row)] + ["%.1f" % (100 * getattr(row, key)) if key == "top2_agreement" else "%.4f" % getattr(row, key)
                             for key, _ in results_format.MIXTURE] for row in rows]
    closest = min(rows, key=lambda row: row.tv_to_truth)
    baseline = results_format.method(results, results_format.BASELINE)
    ens = results_format.method(results, results.ensemble.method)
    out = ["## Recovered mixtures", "",
           "Every synthetic face is drawn from a known mixture of the seven expressions: the paper's claim that "
           "soft labels describe such mixtures can be measured directly. Per method, the mean KL divergence "
           "KL(true mixture || predicted distribution) (nats), the mean total-variation distance, and how often "
           "the two largest predicted classes are the mixture's two largest (as a set).", "",
           markdown_table(["method"] + [h + (" (%)" if key == "top2_agreement" else "") for key, h in results_format.MIXTURE],
                          table), "",
           "Closest to the true mixtures: %s (TV %.4f)." % (_name(closest), closest.tv_to_truth)]
    if baseline:
        out[-1] += " The ensemble's distributions are %s the true mixtures than the hard-label baseline's (TV %.4f vs %.4f)." % (
            "closer to" if ens.tv_to_truth < baseline.tv_to_truth else "farther from",
            ens.tv_to_truth, baseline.tv_to_truth)
    return out + ["", "![recovered mixtures](mixtures.png)", ""]


def diversity(ctx):
    results = ctx.results
    rows = results.methods
    ensembles = [row for row in rows if row.diversity is not None]
    singles = [row for row in rows if row.kind == "single"]
    names = ["%.1f" % s.gamma for s in singles]
    return ["## Ensemble diversity", "",
            "Pairwise disagreement (fraction of test images two members label differently), which the paper "
            "credits for the ensemble's gain but does not measure, for every ensemble side by side: the "
            "perturbed one's members differ by gamma and seed, a fixed-gamma or hard-label one's by seed alone. "
            "Gain: the ensemble's accuracy minus its members' mean.", "",
            markdown_table(["ensemble", "N", "mean pairwise disagreement", "members' mean (%)", "ensemble (%)",
                            "gain (points)"],
                           [[_name(row), str(row.n), "%.4f" % row.diversity, _pct(np.mean(row.member_accuracies)),
                             _pct(row.accuracy), "%+.2f" % row.gain_over_mean_single] for row in ensembles]), "",
            "Between the perturbed ensemble's members (mean %.4f):" % results.ensemble.diversity, "",
            markdown_table(["gamma"] + names, [[n] + ["%.3f" % v for v in row]
                                                for n, row in zip(names, results.ensemble.disagreement)]), ""]


def confusion(ctx):
    paper = ctx.paper
    ours = np.asarray(ctx.results.ensemble.confusion, dtype=float)
    plot_matrix(ours, os.path.join(ctx.run_root, "confusion.png"), "ensemble confusion (%)", "%.1f",
                xlabel="predicted", ylabel="true")
    theirs = np.asarray(paper["confusion"])
    plot_matrix(theirs, os.path.join(ctx.run_root, "confusion_paper.png"),
                "paper, Table %d (%%)" % paper["confusion_table"], "%.1f", xlabel="predicted", ylabel="true")
    return ["## Confusion matrix of the ensemble (Table %d), percent of each true class" % paper["confusion_table"], "",
            "Ours:", "", matrix_markdown(ours, "true \\ predicted", "%.2f"), "",
            "Paper (%s):" % ctx.paper_key.upper(), "", matrix_markdown(theirs, "true \\ predicted", "%.2f"), "",
            "![ours](confusion.png) ![paper](confusion_paper.png)", ""]


def misclassified_faces(ctx):
    """Figs. 5-7: misclassified test faces captioned true-predicted, with the ensemble's distribution."""
    examples = ctx.results.examples.misclassified
    figure_number = ctx.paper["misclassified_figure"]
    if not examples:
        return ["## False predictions (Fig. %d)" % figure_number, "", "The ensemble misclassified no test image.", ""]
    images = test_images(ctx.results.test_lmdb, [e.index for e in examples])
    known = all(e.mixture is not None for e in examples)
    plot_faces([images[e.index] for e in examples],
               [[e.probabilities] + ([e.mixture] if known else []) for e in examples],
               ["%s-%s" % (CLASSES[e.label], CLASSES[e.prediction]) for e in examples],
               os.path.join(ctx.run_root, "misclassified.png"), "false predictions of the ensemble (true-predicted)",
               ["ensemble's distribution"] + (["the face's true mixture"] if known else []))
    return ["## False predictions (Fig. %d)" % figure_number, "",
            "Up to %d misclassified test faces per true class, captioned true-predicted as in the paper%s." % (
                results_format.MISCLASSIFIED_PER_CLASS,
                ", with the ensemble's distribution and the true mixture" if known else ""), "",
            "![false predictions](misclassified.png)", ""]


SECTIONS = (title, summary, data_line, pretraining, softlabels, soft_label_faces, investigation, training_curves, accuracy_table, what_helps,
            repeats, per_class, significance, calibration, mixtures, diversity, confusion, misclassified_faces)


def write_report(run_root, results, paper_key):
    """Write run_root/report.md and its PNGs from `results` (a pycaffe_fer.results.Results)."""
    with open(PAPER_RESULTS) as handle:
        ctx = Context(run_root, results, yaml.safe_load(handle)[paper_key], paper_key)
    lines = [line for section in SECTIONS for line in section(ctx)]
    path = os.path.join(run_root, paths.REPORT_FILE)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            handle.write("\n".join(lines))
    return path
