"""Formats with one home: results.json, ensemble.json and run.json are written and read by their own
modules (results, ensemble, training), and everyone else reads them through those modules' records
(results.Results, ensemble.Ensemble, training.RunSpec) and accessors, never by indexing keys."""
import os
import re

import numpy as np
import pytest

from pycaffe_fer import ensemble, paths, results, training
from pycaffe_fer.datasets import is_gray
from pycaffe_fer.lmdb_io import parse_record_key, record_key
from helpers import REPO

SCANNED = ("pycaffe_fer", "tools", "bench")
# The keys of each format that no other structure of the code uses (a key the config, the ONNX
# metadata, scoring.json, metrics.csv, paper_results.yaml or predict's output also has, such as
# `ensemble`, `fusion`, `val_accuracy`, `confusion` or `probabilities`, or a method id such as
# `best_single`, cannot be told apart by a grep and is left out): indexed anywhere but in the home
# module, the format is read around its home.
FORMATS = {
    "results.json": ("pycaffe_fer/results.py", (
        "experiment", "data_description", "test_split", "test_count", "test_lmdb", "true_softlabels",
        "label_noise_entropy", "curves", "methods", "reliability", "examples", "off_diagonal", "near_ties",
        "matrix", "test_accuracy", "selected", "rule", "ci95", "nll", "brier", "ece", "kl_to_truth", "tv_to_truth",
        "top2_agreement", "mcnemar_p", "mcnemar_discordant", "difference_ci95", "member_accuracies",
        "gain_over_mean_single", "disagreement", "comparisons", "differences", "mixture", "misclassified")),
    "ensemble.json": ("pycaffe_fer/ensemble.py", ("deploy", "grayscale")),
    "vggface_synth.json": ("pycaffe_fer/pretrain.py", (
        "recipe", "train_images", "held_out_images", "identity_accuracy", "chance")),
    "run.json": ("pycaffe_fer/training.py", (
        "spec", "settings", "status", "test_iter", "head", "train_lmdb", "val_lmdb", "train_soft_lmdb",
        "val_soft_lmdb", "weights")),
}


def string_indexing(root, keys, home):
    """(path:line, key) of each `["key"]` or `.get("key"` of these keys in the scanned trees' Python
    files under ``root``, the home module left out."""
    pattern = re.compile(r"""(?:\[\s*|\.get\(\s*)["'](%s)["']""" % "|".join(map(re.escape, keys)))
    found = []
    for tree in SCANNED:
        for folder, _, names in os.walk(os.path.join(root, tree)):
            for name in sorted(n for n in names if n.endswith(".py")):
                path = os.path.join(folder, name)
                relative = os.path.relpath(path, root)
                if relative == home:
                    continue
                with open(path) as handle:
                    for number, line in enumerate(handle, 1):
                        found += ["%s:%d %s" % (relative, number, key) for key in pattern.findall(line)]
    return found


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_nobody_but_its_home_indexes_a_format_by_its_keys(name):
    home, keys = FORMATS[name]
    assert os.path.exists(os.path.join(REPO, home))
    assert string_indexing(REPO, keys, home) == []


def test_the_scan_finds_string_indexing(tmp_path):
    """The scan sees what it looks for: a module that indexes each format, and one that reads them
    through their homes."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "bad.py").write_text(
        'spec = run["spec"]\nn = results.get("test_count")\nx = member[ "deploy" ]\n')
    (tmp_path / "tools" / "good.py").write_text('spec = training.read_spec(d)\nn = view.test_count\nx = m.deploy\n')
    assert [string_indexing(str(tmp_path), keys, home) for home, keys in
            (FORMATS[n] for n in ("run.json", "results.json", "ensemble.json"))] == [
        ["tools/bad.py:1 spec"], ["tools/bad.py:2 test_count"], ["tools/bad.py:3 deploy"]]


def test_results_read_back_as_records_with_absent_fields_none(tmp_path):
    """results.json written from records and plain dicts reads back as the same records; a field the
    file lacks reads as None, and a near tie's class is "class" in the file."""
    tie = results.near_tie(1, 1, 2, 0.41, 0.40)
    content = results.results(
        {"test_count": 6, "methods": [{"id": "baseline", "kind": "baseline", "accuracy": 50.0}],
         "reliability": {"baseline": {"count": [6], "confidence": [0.5], "accuracy": [0.5]}}},
        experiment="demo", softlabels=results.SoftLabels(source="a file", matrix=np.eye(2).tolist(), near_ties=[tie]),
        curves=[results.Curve("constructor/hard", "hard", 0, results.Progress([20], [1.9]),
                              results.Validation([20], [0.3]))])
    results.write_results(str(tmp_path), content)
    with open(str(tmp_path / paths.RESULTS_FILE)) as handle:
        assert '"class": "DI"' in handle.read()
    view = results.read_results(str(tmp_path))
    assert view.experiment == "demo" and view.test_count == 6 and view.constructor is None
    assert view.softlabels.near_ties == [results.NearTie("DI", "DI", "FE", [0.41, 0.40])]
    assert view.softlabels.matrix == [[1.0, 0.0], [0.0, 1.0]] and view.softlabels.val_accuracy is None
    row = results.method(view, "baseline")
    assert (row.kind, row.accuracy, row.tv_to_truth) == ("baseline", 50.0, None)
    assert view.reliability["baseline"].count == [6]
    assert view.curves[0].progress.loss == [1.9] and view.curves[0].validation.val_accuracy == [0.3]
    with pytest.raises(TypeError):
        results.results({"test_count": 6}, unknown_entry=1)


def test_an_ensemble_reads_back_as_members(tmp_path):
    members = [ensemble.Member("a/deploy.prototxt", "a/a.caffemodel", "g1.0", 1.0),
               ensemble.Member("b/deploy.prototxt", "b/b.caffemodel", "seed0", None)]
    ensemble.write_ensemble(str(tmp_path), members, "score", {"mean_value": [1, 2, 3], "input_scale": 0.5,
                                                               "input_size": 48}, True)
    assert ensemble.load_ensemble(str(tmp_path)) == ensemble.Ensemble(members, "score", [1, 2, 3], 0.5, 48, True)
    # A record with more keys (scoring.json's members) gives its Member.
    assert ensemble.read_member(dict(members[0]._asdict(), identity={"size": 1})) == members[0]


def test_a_run_spec_reads_back_with_a_hard_runs_soft_fields_none(tmp_path):
    spec = training.make_spec("seed3", "train_lmdb", "val_lmdb", 3)
    training.write_run(str(tmp_path), {"spec": spec, "settings": {"net": {}, "solver": {"max_iter": 40}}})
    read = training.read_spec(str(tmp_path))
    assert (read.name, read.head, read.seed, read.gamma, read.source, read.softlabels) == ("seed3", "hard", 3, None, None, None)
    assert read._asdict() == dict(spec, source=None, softlabels=None, identities=None)
    assert training.iterations(str(tmp_path)) == 40
    spec = training.make_spec("faces", "train_lmdb", "val_lmdb", 0, identities=256)
    training.write_run(str(tmp_path), {"spec": spec, "settings": {"net": {}, "solver": {"max_iter": 40}}})
    assert training.read_spec(str(tmp_path))._asdict() == dict(spec, source=None, softlabels=None)
    assert (training.read_spec(str(tmp_path)).head, training.read_spec(str(tmp_path)).identities) == ("identity", 256)


def test_lmdb_keys_parse_back_and_gray_formats():
    assert parse_record_key(record_key(12, "fer2013_Training_00007")) == (12, "fer2013_Training_00007")
    assert record_key(12, "x") == b"00000012_x"
    assert [f for f in ("fer2013", "ferplus", "raf", "sfew", "folder") if is_gray(f)] == ["fer2013", "ferplus"]
