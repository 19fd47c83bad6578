"""Reports: accuracies, confusion matrices in the paper's layout, plots, and report.md.

`write_report` turns an experiment's results.json (written by the pipeline's evaluation stage)
into report.md with its PNGs, next to the paper's numbers from configs/paper_results.yaml.
"""
import json
import os

import matplotlib
import numpy as np
import yaml

from .atomic import atomic_path
from .classes import CLASSES
from .config import CONFIG_DIR

matplotlib.use("Agg")  # training machines have no display
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

PAPER_RESULTS = os.path.join(CONFIG_DIR, "paper_results.yaml")


def accuracy(labels, predictions):
    """Percent of predictions equal to the labels."""
    return 100.0 * float(np.mean(np.asarray(labels) == np.asarray(predictions)))


def confusion_percent(labels, predictions, num_classes=len(CLASSES)):
    """C x C confusion matrix in percent of each true class (row = true, column = predicted),
    as Tables 3, 5 and 7; a class absent from the labels gives a row of NaN."""
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * counts / totals


def markdown_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def matrix_markdown(matrix, corner, fmt):
    """A class x class matrix as a markdown table: rows and columns named AN .. NE."""
    return markdown_table([corner] + list(CLASSES),
                          [[CLASSES[i]] + [fmt % v for v in row] for i, row in enumerate(matrix)])


def matrix_text(matrix, fmt="%.4f"):
    """The plain-text layout of the paper's Table 1 (for the console)."""
    lines = ["      " + "  ".join("%6s" % c for c in CLASSES)]
    lines += ["%-4s  " % CLASSES[i] + "  ".join(fmt % v for v in row) for i, row in enumerate(matrix)]
    return "\n".join(lines)


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
        axes.text(j, i, fmt % value, ha="center", va="center", fontsize=7,
                  color="white" if value > 0.6 * high else "black")
    _save(figure, path)


def plot_gamma(gammas, accuracies, selected, path, title):
    """Fig. 4: validation accuracy against the perturbation factor, the selected gammas marked."""
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(gammas, accuracies, "o-", color="tab:blue", label="single classifier")
    marked = [(g, a) for g, a in zip(gammas, accuracies) if any(abs(g - s) < 1e-9 for s in selected)]
    if marked:
        axes.plot(*zip(*marked), "o", color="tab:red", markersize=9, label="selected for the ensemble")
    axes.set_xlabel("perturbation factor gamma")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    _save(figure, path)


def _save(figure, path):
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)


def _pct(value):
    return "-" if value is None else "%.2f" % value


def write_report(run_root, results, paper_key):
    """Write run_root/report.md and its PNGs from `results` (the evaluation stage's dict)."""
    with open(PAPER_RESULTS) as handle:
        paper = yaml.safe_load(handle)[paper_key]
    ours_on = results["data_description"]
    out = ["# pycaffe_fer report: %s" % results["experiment"], "",
           "Ours: %s; test set `%s` (%d images). Paper: Gan, Chen & Xu (2019) on %s. The two columns "
           "are **not** the same data unless the line above names the paper's dataset." % (
               ours_on, results["test_split"], results["test_count"], paper_key.upper()), ""]

    out += ["## Soft labels (Table 1)", ""]
    D = np.asarray(results["softlabels"]["matrix"])
    plot_matrix(D, os.path.join(run_root, "softlabels.png"), "soft labels D (row = true class)", "%.2f")
    out += ["Source: %s." % results["softlabels"]["source"], "", matrix_markdown(D, "ours", "%.4f"), "",
            "![soft labels](softlabels.png)", ""]
    if results["softlabels"].get("off_diagonal"):
        out += ["**The paper's condition j = argmax_k d_jk fails** for %s: those classes' soft labels name "
                "another class first (kept because constructor.allow_off_diagonal is set)."
                % results["softlabels"]["off_diagonal"], ""]
    constructor = results.get("constructor")
    if constructor:
        out += ["Constructor (hard labels): validation accuracy %.2f%%, test accuracy %.2f%% "
                "(paper: %.2f%% and %.2f%%)." % (constructor["val_accuracy"], constructor["test_accuracy"],
                                                 paper["constructor"]["val"], paper["constructor"]["test"])
                if "constructor" in paper else
                "Constructor (hard labels): validation accuracy %.2f%%, test accuracy %.2f%%."
                % (constructor["val_accuracy"], constructor["test_accuracy"]), ""]
    truth = results.get("true_softlabels")
    if truth is not None:
        truth = np.asarray(truth)
        out += ["The synthetic set's **true** soft labels (row j: the mean expression mixture of the images labelled j):", "",
                matrix_markdown(truth, "truth", "%.4f"), "",
                "Distance of the constructed D from the truth: mean absolute difference %.4f, largest %.4f; "
                "mean total-variation distance per row %.4f." % (
                    np.abs(D - truth).mean(), np.abs(D - truth).max(), 0.5 * np.abs(D - truth).sum(axis=1).mean()), ""]

    investigation = results.get("investigation")
    if investigation:
        plot_gamma(investigation["gammas"], investigation["accuracy"], investigation["selected"],
                   os.path.join(run_root, "gamma.png"), "gamma investigation (%s)" % results["experiment"])
        out += ["## Gamma investigation (Fig. 4)", "",
                "Trained on `%s`, validated on `%s`." % (investigation["train"], investigation["val"]), "",
                markdown_table(["gamma"] + ["%.1f" % g for g in investigation["gammas"]],
                               [["accuracy (%)"] + [_pct(a) for a in investigation["accuracy"]]]), "",
                "Selected for the ensemble (%s): %s; the paper selected %s on %s." % (
                    investigation["rule"], ", ".join("%.1f" % g for g in investigation["selected"]),
                    ", ".join("%.1f" % g for g in paper["selected_gammas"]), paper_key.upper()), "",
                "![gamma investigation](gamma.png)", ""]

    out += ["## Accuracy (Table %d)" % paper["comparison_table"], ""]
    rows = []
    ensemble = results["ensemble"]
    singles = [s["accuracy"] for s in ensemble["singles"]]
    rows.append(["Ours, gamma perturbation (N=%d, %s fusion)" % (len(singles), ensemble["fusion"]),
                 _pct(ensemble["accuracy"]), "%s (best %s)" % (_pct(np.mean(singles)), _pct(max(singles))),
                 _pct(paper["rows"]["ensemble"].get("ensemble")), _pct(paper["rows"]["ensemble"].get("single"))])
    rows += [["Ours, gamma perturbation, %s fusion" % other, _pct(accuracy), "", "", ""]
             for other, accuracy in sorted(ensemble["accuracy_by_fusion"].items()) if other != ensemble["fusion"]]
    for fixed in results.get("fixed_gamma", []):
        paper_row = paper["rows"].get("fixed_gamma_%s" % fixed["gamma"], {})
        fixed_singles = [s["accuracy"] for s in fixed["singles"]]
        rows.append(["Ours, gamma = %s (N=%d)" % (fixed["gamma"], len(fixed_singles)), _pct(fixed["accuracy"]),
                     _pct(np.mean(fixed_singles)), _pct(paper_row.get("ensemble")), _pct(paper_row.get("single"))])
    baseline = results.get("baseline")
    if baseline:
        rows.append(["Ours, hard labels (baseline)", _pct(baseline.get("ensemble")), _pct(baseline["accuracy"]),
                     _pct(paper["rows"]["baseline"].get("ensemble")), _pct(paper["rows"]["baseline"].get("single"))])
    out += [markdown_table(["method", "ours: ensemble", "ours: single (mean)", "paper: ensemble",
                            "paper: single"], rows), ""]
    out += ["Single classifiers of the ensemble:", "",
            markdown_table(["gamma"] + ["%.1f" % s["gamma"] for s in ensemble["singles"]],
                           [["accuracy (%)"] + [_pct(a) for a in singles]]), ""]

    out += ["## Ensemble diversity", "",
            "Pairwise disagreement (fraction of test images two base classifiers label differently), "
            "which the paper credits for the ensemble's gain but does not measure: mean %.4f." % ensemble["diversity"],
            ""]
    names = ["%.1f" % s["gamma"] for s in ensemble["singles"]]
    out += [markdown_table(["gamma"] + names, [[n] + ["%.3f" % v for v in row]
                                               for n, row in zip(names, ensemble["disagreement"])]), ""]

    confusion = np.asarray(ensemble["confusion"], dtype=float)
    plot_matrix(confusion, os.path.join(run_root, "confusion.png"), "ensemble confusion (%)", "%.1f",
                xlabel="predicted", ylabel="true")
    paper_confusion = np.asarray(paper["confusion"])
    plot_matrix(paper_confusion, os.path.join(run_root, "confusion_paper.png"),
                "paper, Table %d (%%)" % paper["confusion_table"], "%.1f", xlabel="predicted", ylabel="true")
    out += ["## Confusion matrix of the ensemble (Table %d), percent of each true class" % paper["confusion_table"], "",
            "Ours:", "", matrix_markdown(confusion, "true \\ predicted", "%.2f"), "",
            "Paper (%s):" % paper_key.upper(), "", matrix_markdown(paper_confusion, "true \\ predicted", "%.2f"), "",
            "![ours](confusion.png) ![paper](confusion_paper.png)", ""]
    with atomic_path(os.path.join(run_root, "report.md")) as tmp:
        with open(tmp, "w") as handle:
            handle.write("\n".join(out))
    with atomic_path(os.path.join(run_root, "results.json")) as tmp:
        with open(tmp, "w") as handle:
            json.dump(results, handle, indent=2)
    return os.path.join(run_root, "report.md")
