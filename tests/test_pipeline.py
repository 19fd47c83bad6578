"""The paper's pipeline end to end in real Caffe, on a small synthetic set with a tiny net."""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import caffe
import numpy as np
import pytest
import yaml

from pycaffe_fer import members, paths, plan, training
from pycaffe_fer.classes import CLASSES
from pycaffe_fer.config import load_config, settings
from pycaffe_fer.errors import InputError
from pycaffe_fer.pipeline import Experiment
from pycaffe_fer.plan import planned_runs
from pycaffe_fer.weights import model_digest
from helpers import REPO, tiny_config

@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """One full run of every stage, and a second call that must find everything done."""
    out = str(tmp_path_factory.mktemp("experiment"))
    lines = []
    Experiment(tiny_config(), out, jobs=2, log=lines.append).run()     # two runs at a time
    again = []
    Experiment(tiny_config(), out, log=again.append).run()
    return out, lines, again


def test_soft_labels_are_a_row_stochastic_7x7_matrix(experiment):
    out, lines, _ = experiment
    D = np.load(os.path.join(out, "softlabels.npy"))
    assert D.shape == (7, 7)
    assert (D >= 0).all()
    np.testing.assert_allclose(D.sum(axis=1), 1.0, atol=1e-9)
    header = "      " + "  ".join("%6s" % c for c in CLASSES)
    assert any(header in line for line in lines), "D is printed in the layout of Table 1"
    assert open(os.path.join(out, "softlabels.csv")).readline().strip() == "class," + ",".join(CLASSES)


def test_construct_softlabels_gives_the_experiments_D(experiment, tmp_path):
    """tools/construct_softlabels.py, the step a Caffe user runs between caffe train calls, fuses the
    constructor's predictions with the pipeline's code: on the experiment's constructor, its D."""
    from helpers import TINY
    out, _, _ = experiment
    run = os.path.join(out, "constructor", "hard")
    command = [sys.executable, os.path.join(REPO, "tools", "construct_softlabels.py"), "--preset", "demo",
               "--model", training.final_model(run), "--deploy", os.path.join(run, "deploy.prototxt"),
               "--lmdb", training.read_spec(run).val_lmdb] + [arg for override in TINY for arg in ("--set", override)]
    result = subprocess.run(command + ["--out", str(tmp_path / "D.npy"), "--allow-off-diagonal"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, timeout=600)
    assert result.returncode == 0, result.stdout
    np.testing.assert_allclose(np.load(str(tmp_path / "D.npy")), np.load(os.path.join(out, "softlabels.npy")),
                               rtol=0, atol=1e-6)
    assert (tmp_path / "D.csv").read_text() == open(os.path.join(out, "softlabels.csv")).read()
    assert (tmp_path / "D.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "      " + "  ".join("%6s" % c for c in CLASSES) in result.stdout
    missing = subprocess.run(command[:5] + [str(tmp_path / "none.caffemodel")] + command[6:] + ["--out", str(tmp_path / "E.npy")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=600)
    assert missing.returncode == 2 and missing.stdout.strip() == "error: %s: no such model" % (tmp_path / "none.caffemodel")
    assert not (tmp_path / "E.npy").exists()


def test_one_finished_run_per_gamma(experiment):
    out, _, _ = experiment
    results = json.load(open(os.path.join(out, "results.json")))
    grid = results["investigation"]["gammas"]
    assert grid == [0.6, 1.4, 2.2]
    assert results["investigation"]["selected"] == grid        # tolerance 100: every gamma qualifies
    for stage, gammas in (("investigation", grid), ("ensemble", grid)):
        names = sorted(os.listdir(os.path.join(out, stage)))
        assert names == sorted("g%s" % g for g in ("0.6", "1.4", "2.2"))
        for name in names:
            run = training.read_run(os.path.join(out, stage, name))
            assert run["status"] == "finished"
            assert run["spec"]["head"] == "soft" and "g%s" % run["spec"]["gamma"] == name
            assert os.path.exists(os.path.join(out, stage, name, run["model"]))
    # Member k of every ensemble has seed 0 + k; fixed-gamma member 1 (gamma 1.4, seed 1) is the
    # perturbed ensemble's g1.4 run, so it is trained once, there.
    seeds = {name: training.read_run(os.path.join(out, "ensemble", name))["spec"]["seed"] for name in names}
    assert seeds == {"g0.6": 0, "g1.4": 1, "g2.2": 2}
    fixed = sorted(os.listdir(os.path.join(out, "fixed_g1.4")))
    assert fixed == ["seed0", "seed2"]
    rows = {row["id"]: row for row in results["methods"]}
    assert rows["fixed_g1.4"]["runs"] == ["fixed_g1.4/seed0", "ensemble/g1.4", "fixed_g1.4/seed2"]
    assert rows["fixed_g1.4"]["seeds"] == [0, 1, 2] and rows["baseline"]["seeds"] == [0, 1]
    # planned_runs (the GPU check's projection, docs/method.md's counts) counts the runs the pipeline trained.
    trained = [d for d, _, files in os.walk(out) if training.RUN_FILE in files]
    assert dict(planned_runs(tiny_config())) == {"constructor": 1, "investigation": 3, "ensemble": 3,
                                                 "fixed_gamma": 2, "baseline": 2, "controls": 6}
    assert sum(planned_runs(tiny_config()).values()) == len(trained)
    # The soft-label LMDB of each gamma holds eq. 4 of D.
    from pycaffe_fer.lmdb_io import read_manifest
    from pycaffe_fer.softlabel import perturb
    D = np.load(os.path.join(out, "softlabels.npy"))
    manifest = read_manifest(os.path.join(out, "lmdb", "train_train_lmdb_soft_g2.2"))
    np.testing.assert_allclose(manifest["soft_labels"], perturb(D, 2.2), atol=1e-12)


def test_report_has_the_papers_tables_beside_ours(experiment):
    out, lines, _ = experiment
    report = open(os.path.join(out, "report.md")).read()
    for heading in ("## Soft labels (Table 1)", "## Gamma investigation (Fig. 4)", "## Accuracy (Table 2)",
                    "## Ensemble diversity", "## Confusion matrix of the ensemble (Table 3)"):
        assert heading in report
    assert "| Ours, gamma perturbation (N=3, score fusion) |" in report
    assert "| 73.73 | 71.47 |" in report                           # the paper's FER-2013 row
    assert "| Ours, gamma = 1.4 (N=3) |" in report
    assert "**true** soft labels" in report and "total-variation distance" in report
    for heading in ("## Summary", "## Significance", "## Calibration", "## Recovered mixtures",
                    "## Faces and their soft labels (Fig. 1)", "## False predictions (Fig. 5)"):
        assert heading in report
    summary = report.split("## Summary\n\n")[1].split("\n\n")[0].splitlines()
    assert len(summary) == 5 and summary[0].startswith("- **Best method: ")
    assert "The paper's condition j = argmax_k d_jk on D: " in summary[4]
    for png in ("softlabels.png", "gamma.png", "confusion.png", "confusion_paper.png", "reliability.png",
                "mixtures.png", "softlabel_faces.png", "misclassified.png", "sources.png", "curves.png"):
        with open(os.path.join(out, png), "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    results = json.load(open(os.path.join(out, "results.json")))
    confusion = np.array(results["ensemble"]["confusion"])
    assert confusion.shape == (7, 7)
    present = ~np.isnan(confusion).any(axis=1)
    np.testing.assert_allclose(confusion[present].sum(axis=1), 100.0)
    assert 0 <= results["ensemble"]["diversity"] <= 1
    assert results["test_count"] == 140
    # Every method row has its evidence beside its accuracy; the ensembles their McNemar p-values.
    rows = {row["id"]: row for row in results["methods"]}
    assert sorted(rows) == ["baseline", "control_oracle", "control_uniform", "ensemble_probability", "ensemble_score",
                            "fixed_g1.4", "hard_0", "hard_1", "single_g0.6", "single_g1.4", "single_g2.2"]
    from pycaffe_fer.results import CALIBRATION, MIXTURE
    from pycaffe_fer.scoring import read_scores
    counts = np.bincount(read_scores(os.path.join(out, "scores", "test"))[1], minlength=7)
    for row in rows.values():
        low, high = row["ci95"]
        assert low <= row["accuracy"] <= high
        assert {key for key, _ in CALIBRATION + MIXTURE} <= set(row)
        assert row["nll"] > 0 and 0 <= row["brier"] <= 2 and 0 <= row["ece"] <= 1
        assert row["kl_to_truth"] >= 0 and 0 <= row["tv_to_truth"] <= 1 and 0 <= row["top2_agreement"] <= 1
        # Per-class accuracy: the diagonal of the row's confusion, each class's share of its right answers.
        assert len(row["per_class"]) == 7
        assert sum(v * n for v, n in zip(row["per_class"], counts) if v is not None) == pytest.approx(
            row["accuracy"] * counts.sum())
        # Equal terms: every trained row starts from the constructor, with ensemble.solver's 10 iterations.
        assert (row["init"], row["iterations"]) == ("constructor", 10) and len(row["seeds"]) == row["n"]
    for fusion in ("score", "probability"):
        p = rows["ensemble_" + fusion]["mcnemar_p"]
        assert sorted(p) == ["baseline", "best_hard_single", "best_single", "control_oracle", "control_uniform",
                             "fixed_g1.4"]
        assert all(0 < v <= 1 for v in p.values())
        for key, (low, high) in rows["ensemble_" + fusion]["difference_ci95"].items():
            assert low <= rows["ensemble_" + fusion]["accuracy"] - rows[
                results["ensemble"].get(key, key) if key.startswith("best_") else key]["accuracy"] <= high
    for ensemble_id in ("ensemble_score", "fixed_g1.4", "baseline", "control_uniform", "control_oracle"):
        row = rows[ensemble_id]
        assert 0 <= row["diversity"] <= 1
        assert row["gain_over_mean_single"] == pytest.approx(row["accuracy"] - np.mean(row["member_accuracies"]))
    # The hard-label baseline fine-tunes the constructor with the soft nets' solver: it is not the constructor.
    baseline_run = training.read_run(os.path.join(out, "baseline", "seed0"))
    assert baseline_run["spec"]["weights"] == training.final_model(os.path.join(out, "constructor", "hard"))
    assert baseline_run["settings"]["solver"]["max_iter"] == 10
    assert "| Hard labels (N=2, score fusion) |" in report and "## Per-class accuracy" in report
    assert "## What helps? Soft-label sources on equal terms" in report and "## Over " not in report
    assert "![training curves](curves.png)" in report and "noise entropy" in report
    # The constructor's curve as metrics.csv has it: a row every 10 iterations, validation at 10 and 20.
    curves = {curve["run"]: curve for curve in results["curves"]}
    assert curves["constructor/hard"]["head"] == "hard" and curves["ensemble/g1.4"]["head"] == "soft"
    assert curves["constructor/hard"]["progress"]["iteration"] == [10, 20]
    assert curves["constructor/hard"]["start"] == 0 and curves["baseline/seed0"]["start"] == 20   # fine-tunes of it
    assert curves["constructor/hard"]["validation"]["iteration"] == [10, 20]
    assert sorted(curves) == ["baseline/seed0", "baseline/seed1", "constructor/hard", "ensemble/g0.6", "ensemble/g1.4",
                              "ensemble/g2.2"]
    assert 0 < results["label_noise_entropy"] < np.log(7)
    assert rows["ensemble_score"]["repeats"] == [rows["ensemble_score"]["accuracy"]] and rows["baseline"]["sd"] is None
    assert results["ensemble"]["best_single"] in rows and results["ensemble"]["method"] == "ensemble_score"
    assert len(results["examples"]["soft"]) == 7
    for example in results["examples"]["misclassified"]:
        assert example["label"] != example["prediction"]
        np.testing.assert_allclose(sum(example["mixture"]), 1.0, atol=1e-5)
    assert any(line.startswith("test accuracy: ensemble") for line in lines)


def test_the_constructor_is_the_baseline_only_on_the_soft_nets_terms(tmp_path):
    """A hard-label run with the constructor's data, init, solver and seed is the constructor's run;
    other solver settings, weights or seed make it a run of its own."""
    config = settings(tiny_config())
    train, val = str(tmp_path / "train_lmdb"), str(tmp_path / "val_lmdb")
    lmdbs = {"constructor_train": train, "constructor_val": val, "ensemble_train": train, "ensemble_val": val}
    trainer = members.RunTrainer(str(tmp_path), config.as_dict(), config, lmdbs, executor=None,
                                 weights=str(tmp_path / "w.caffemodel"))
    runs = plan.plan_runs(config)
    baseline = [run._replace(init="scratch") for run in runs if run.stage == "baseline"]
    constructor = trainer.prepare(runs[0])
    assert runs[0].stage == "constructor" and constructor == str(tmp_path / "constructor" / "hard")
    assert trainer.prepare(baseline[0]._replace(solver=None)) == constructor
    other_solver = trainer.prepare(baseline[0])                     # the tiny config's ensemble.solver
    assert other_solver == str(tmp_path / "baseline" / "seed0")
    assert training.read_run(other_solver)["settings"]["solver"]["max_iter"] == 10
    from_weights = trainer.prepare(baseline[0]._replace(solver=None, init="weights", folder="baseline_w"))
    assert from_weights not in (constructor, other_solver)
    assert trainer.prepare(baseline[1]._replace(solver=None)) != constructor
    # Run identity as before: a directory holding the run with another seed is refused.
    with pytest.raises(InputError, match=r"holds a run made with other settings \(seed, solver differ\)"):
        training.prepare_run(other_solver, config.as_dict(), dict(training.read_run(other_solver)["spec"], seed=9))


def test_controls_train_like_the_perturbed_ensemble_on_their_own_soft_labels(experiment):
    out, _, _ = experiment
    from pycaffe_fer import softlabel, synth
    from pycaffe_fer.lmdb_io import read_manifest
    D = np.load(os.path.join(out, "softlabels.npy"))
    truth = synth.true_soft_labels_of(os.path.join(out, "synthetic", "fer2013.csv"), "val")
    for source, expected in (("uniform", softlabel.smoothing(softlabel.matched_smoothing(D, 2.2))),
                             ("oracle", softlabel.perturb(truth, 2.2))):
        manifest = read_manifest(os.path.join(out, "lmdb", "train_train_lmdb_soft_%s_g2.2" % source))
        np.testing.assert_allclose(manifest["soft_labels"], expected, atol=1e-12)
        perturbed = training.read_run(os.path.join(out, "ensemble", "g2.2"))
        control = training.read_run(os.path.join(out, "control_" + source, "g2.2"))
        assert control["spec"]["source"] == source and control["spec"]["train_soft_lmdb"].endswith("_soft_%s_g2.2" % source)
        # Every term but the soft labels is the perturbed member's.
        assert control["settings"] == perturbed["settings"]
        assert {k: v for k, v in control["spec"].items() if k not in ("source", "train_soft_lmdb", "val_soft_lmdb", "softlabels")} == \
            {k: v for k, v in perturbed["spec"].items() if k not in ("source", "train_soft_lmdb", "val_soft_lmdb", "softlabels")}


def test_repeats_train_the_base_classifiers_again_with_disjoint_seeds(tmp_path):
    out = str(tmp_path / "repeated")
    small = ["investigation.gammas=null", "investigation.select=config", "ensemble.gammas=[1.0, 2.0]",
             "ensemble.fixed_gamma=[]", "ensemble.controls=[uniform]"]
    Experiment(tiny_config(*small), out, jobs=2, log=lambda line: None).run()
    first = json.load(open(os.path.join(out, "results.json")))
    lines = []
    Experiment(tiny_config(*(small + ["ensemble.repeats=2"])), out, jobs=2, log=lines.append).run()
    assert not any(line.startswith("[hard] iter") for line in lines), "the constructor stays one"
    seeds = [training.read_run(os.path.join(out, "repeat1", "ensemble", g))["spec"]["seed"] for g in ("g1.0", "g2.0")]
    assert seeds == [1000, 1001]
    assert sorted(os.listdir(os.path.join(out, "repeat1"))) == ["baseline", "control_uniform", "ensemble"]
    results = json.load(open(os.path.join(out, "results.json")))
    rows = {row["id"]: row for row in results["methods"]}
    for row in first["methods"]:                       # repeat 0 is the experiment as it was
        assert rows[row["id"]]["repeats"][0] == row["accuracy"] == rows[row["id"]]["accuracy"]
        assert len(rows[row["id"]]["repeats"]) == 2 and rows[row["id"]]["sd"] >= 0
        assert rows[row["id"]]["mean"] == pytest.approx(np.mean(rows[row["id"]]["repeats"]))
    assert sorted(results["repeats"]["comparisons"]) == ["baseline", "control_uniform"]
    differences = results["repeats"]["comparisons"]["baseline"]["differences"]
    assert differences == pytest.approx([ours - theirs for ours, theirs in zip(
        rows["ensemble_score"]["repeats"], rows["baseline"]["repeats"])])
    report = open(os.path.join(out, "report.md")).read()
    assert "## Over 2 repeats (training noise)" in report and "mean +- sd over 2 repeats" in report


def test_the_oracle_control_needs_the_synthetic_set(tmp_path):
    with pytest.raises(InputError, match="config ensemble.controls: 'oracle' needs the synthetic set's true soft labels"):
        load_config("fer2013", ["ensemble.controls=[oracle]"])
    with pytest.raises(InputError, match="ensemble.controls: 'oracle' needs the synthetic set's true soft labels, but --data"):
        Experiment(tiny_config(), str(tmp_path / "x"), data=str(tmp_path / "fer2013.csv")).run()
    assert not os.path.exists(str(tmp_path / "x")), "refused before anything is built"


def test_second_call_skips_every_finished_run(experiment):
    _, _, again = experiment
    assert not any("iter " in line for line in again), "nothing is trained twice"
    assert sum("finished earlier: skipped" in line for line in again) >= 3 + 3 + 1


def test_a_run_dir_with_other_settings_is_refused(experiment):
    out, _, _ = experiment
    with pytest.raises(InputError, match="holds a run made with other settings"):
        Experiment(tiny_config("solver.base_lr=0.002"), out, log=lambda line: None, force_config=True).run()
    # --force-config recorded the new config before a run refused it: put the fixture's back.
    from pycaffe_fer.config import record_experiment_config
    record_experiment_config(out, tiny_config(), ["pycaffe_fer.pipeline.Experiment"], force=True, log=lambda line: None)


def test_the_experiment_records_its_config_and_refuses_another(experiment):
    out, _, _ = experiment
    from pycaffe_fer.config import parse_yaml
    recorded = parse_yaml(open(os.path.join(out, "config.yaml")))
    assert recorded["config"] == tiny_config() and recorded["command"] == ["pycaffe_fer.pipeline.Experiment"]
    with pytest.raises(InputError, match=r"config.yaml: this experiment was run with solver.base_lr: 0.02, not 0.03: "
                                         r"use another --out, or --force-config"):
        Experiment(tiny_config("solver.base_lr=0.03"), out, log=lambda line: None).run()
    assert parse_yaml(open(os.path.join(out, "config.yaml")))["config"] == tiny_config(), "left as it was"
    # Where the tasks run changes no result: accepted, and noted.
    lines = []
    Experiment(tiny_config("slurm={partition: gpu}"), out, log=lines.append).run()
    assert "config slurm.partition: 'gpu' (was None in %s)" % os.path.join(out, "config.yaml") in lines
    assert not any("iter " in line for line in lines)
    # So does another command line: --jobs decides where, not what.
    lines = []
    Experiment(tiny_config(), out, log=lines.append, command=["run_experiment.py", "--jobs", "1"]).run()
    assert "command: run_experiment.py --jobs 1 (was pycaffe_fer.pipeline.Experiment in %s)" % os.path.join(
        out, "config.yaml") in lines
    assert not any("iter " in line for line in lines)
    Experiment(tiny_config(), out, log=lambda line: None).run()              # back as the fixture made it


def test_killed_run_resumes_to_the_same_weights(experiment, tmp_path):
    out, _, _ = experiment
    template = training.read_run(os.path.join(out, "ensemble", "g1.4"))
    config = tiny_config("solver.max_iter=60", "solver.snapshot=10")
    spec = dict(template["spec"], weights=None)
    whole = training.prepare_run(str(tmp_path / "whole"), config, dict(spec, name="whole"))
    killed = training.prepare_run(str(tmp_path / "killed"), config, dict(spec, name="killed"))
    env = dict(os.environ, GLOG_minloglevel="2")
    command = [sys.executable, "-m", "pycaffe_fer.training"]
    subprocess.run(command + [whole], check=True, env=env, stdout=subprocess.DEVNULL)

    process = subprocess.Popen(command + [killed], env=env, stdout=subprocess.DEVNULL)
    marker = os.path.join(killed, "snapshots", "20.done")
    deadline = time.time() + 120
    while not os.path.exists(marker) and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert training.read_run(killed)["status"] == "prepared", "killed before it finished"
    subprocess.run(command + [killed], check=True, env=env, stdout=subprocess.DEVNULL)
    assert "resumed from iteration" in open(os.path.join(killed, "train.log")).read()
    # metrics.csv: the rows past the snapshot the run resumed from are redone once, not kept twice.
    curves = [training.read_metrics(d) for d in (whole, killed)]
    assert curves[0]["progress"]["iteration"] == list(range(10, 61, 10)) == curves[1]["progress"]["iteration"]
    assert curves[0]["progress"]["loss"] == curves[1]["progress"]["loss"]
    assert curves[0]["validation"] == curves[1]["validation"]

    caffe.set_mode_cpu()
    nets = [caffe.Net(os.path.join(d, "deploy.prototxt"), caffe.TEST, weights=training.final_model(d))
            for d in (whole, killed)]
    for name in nets[0].params:
        for a, b in zip(nets[0].params[name], nets[1].params[name]):
            np.testing.assert_array_equal(a.data, b.data, err_msg=name)


def test_a_reopened_run_writes_its_final_snapshot_again_off_the_snapshot_interval(experiment, tmp_path):
    """max_iter 15, snapshot 10: the last snapshot is train()'s own, not Caffe's step(). The damaged
    one left in its place must not be taken for the new one."""
    out, _, _ = experiment
    spec = dict(training.read_run(os.path.join(out, "ensemble", "g1.4"))["spec"], name="r", weights=None)
    run_dir = training.prepare_run(str(tmp_path / "r"), tiny_config("solver.max_iter=15", "solver.snapshot=10"), spec)
    training.train(run_dir, log=lambda line: None)
    model = training.final_model(run_dir)
    assert model.endswith("r_iter_15.caffemodel") and training.model_damage(run_dir) is None
    written = open(model, "rb").read()
    with open(model, "r+b") as handle:
        handle.truncate(len(written) - 1)
    assert training.model_damage(run_dir) == "%s: not the file the run wrote (its MD5 differs from the one in %s)" % (
        model, os.path.join(run_dir, training.RUN_FILE))
    training.reopen(run_dir)
    lines = []
    assert training.train(run_dir, log=lines.append) == model
    assert "[r] resumed from iteration 10" in lines
    assert open(model, "rb").read() == written and training.model_damage(run_dir) is None


def test_loss_that_becomes_nan_stops_the_run(experiment, tmp_path):
    out, _, _ = experiment
    spec = dict(training.read_run(os.path.join(out, "ensemble", "g1.4"))["spec"], name="nan", weights=None)
    run_dir = training.prepare_run(str(tmp_path / "nan"), tiny_config("solver.base_lr=1e12"), spec)
    with pytest.raises(training.TrainingError, match=r"loss became (nan|inf) at iteration \d+"):
        training.train(run_dir, log=lambda line: None)
    assert training.read_run(run_dir)["status"] == "failed"


def test_predict_prints_label_and_probabilities_per_image(experiment, tmp_path):
    out, _, _ = experiment
    import cv2
    from pycaffe_fer.lmdb_io import datum_array, read_lmdb
    paths = []
    for i, (_, datum) in zip(range(3), read_lmdb(os.path.join(out, "lmdb", "test_lmdb"))):
        paths.append(str(tmp_path / ("face%d.png" % i)))
        cv2.imwrite(paths[-1], datum_array(datum).transpose(1, 2, 0))
    command = [sys.executable, os.path.join(REPO, "tools", "predict.py"), "--ensemble", out, "--no-detect"]
    text = subprocess.run(command + paths, check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    lines = text.strip().splitlines()
    assert len(lines) == 3
    for path, line in zip(paths, lines):
        fields = line.split()
        assert fields[0] == path and fields[1] in CLASSES
        probabilities = [float(f.split("=")[1]) for f in fields[2:]]
        assert [f.split("=")[0] for f in fields[2:]] == list(CLASSES)
        assert abs(sum(probabilities) - 1) < 1e-3
        assert fields[1] == CLASSES[int(np.argmax(probabilities))]
    as_json = json.loads(subprocess.run(command + ["--format", "json"] + paths, check=True,
                                        stdout=subprocess.PIPE, universal_newlines=True).stdout)
    assert [item["image"] for item in as_json] == paths
    assert [item["label"] for item in as_json] == [line.split()[1] for line in lines]


def skimage_photo(name):
    """A real photograph shipped by scikit-image (python3-skimage): astronaut.png (Eileen Collins,
    NASA, public domain) or coffee.png (CC0), as its README says; checked by SHA-256."""
    from pycaffe_fer import assets
    return assets.require("scikit-image", name)


def test_a_real_photograph_is_cropped_to_its_face_and_predicted(experiment):
    import cv2
    from pycaffe_fer import faces
    photo = skimage_photo("astronaut.png")
    image = cv2.imread(photo)
    crop = faces.largest_face_crop(image, faces.HaarDetector())
    # The face (about 95 x 95 pixels at x 177, y 66 of 512 x 512) with its margin, cut from the photograph.
    assert 95 <= crop.shape[0] <= 160 and 95 <= crop.shape[1] <= 160
    match = cv2.matchTemplate(image, crop, cv2.TM_SQDIFF)
    top, left = np.unravel_index(match.argmin(), match.shape)
    assert match.min() == 0 and 140 <= left <= 190 and 30 <= top <= 80
    out, _, _ = experiment
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "predict.py"), "--ensemble", out,
                           "--format", "json", photo], stdout=subprocess.PIPE, universal_newlines=True, check=True)
    (item,) = json.loads(proc.stdout)
    assert item["image"] == photo and item["label"] in CLASSES and item["face"] == 0
    x, y, w, h = item["box"]                            # the ssd detector's box holds the same face
    assert x <= 177 and y <= 66 and x + w >= 177 + 95 and y + h >= 66 + 95 and w == h <= 200
    assert sorted(item["probabilities"]) == sorted(CLASSES)
    assert abs(sum(item["probabilities"].values()) - 1) < 1e-3
    assert item["label"] == max(item["probabilities"], key=item["probabilities"].get)


def test_a_photograph_without_a_face_is_an_error_unless_no_detect(experiment):
    out, _, _ = experiment
    photo = skimage_photo("coffee.png")
    command = [sys.executable, os.path.join(REPO, "tools", "predict.py"), "--ensemble", out, photo]
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode == 1 and proc.stdout == ""       # the one input failed
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: %s: no face found (pass --no-detect if the image is a face crop)" % photo]
    proc = subprocess.run(command + ["--no-detect"], stdout=subprocess.PIPE, universal_newlines=True, check=True)
    assert proc.stdout.split()[0] == photo and proc.stdout.split()[1] in CLASSES


def test_predict_finds_every_image_the_dataset_readers_read(tmp_path):
    from pycaffe_fer import predict
    from pycaffe_fer.datasets import folder
    names = ["face%d%s" % (i, ext.upper() if i % 2 else ext) for i, ext in enumerate(folder.IMAGE_EXTENSIONS)]
    for name in names + ["notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    assert ".webp" in folder.IMAGE_EXTENSIONS          # trains from a class folder; was not found by predict
    images, videos = predict.media_paths([str(tmp_path)])
    assert images == sorted(str(tmp_path / name) for name in names) and videos == []


def test_sfew_protocol_data_mirrors_then_holds_out_a_fifth(tmp_path):
    from pycaffe_fer.lmdb_io import lmdb_keys, read_manifest
    from pycaffe_fer.synth import write_synthetic_set
    write_synthetic_set(str(tmp_path / "synth"), seed=1, train=700, val=140, test=140, layouts=["sfew"], workers=1)
    config = load_config("sfew", ["net.input_size=24", "constructor.softlabels=%s" % (REPO + "/configs/paper_softlabels_table1.csv")])
    experiment = Experiment(config, str(tmp_path / "out"), data=str(tmp_path / "synth" / "sfew"), log=lambda line: None)
    lmdbs = experiment.prepare_data()
    assert sorted(lmdbs) == ["ensemble_train", "ensemble_val", "investigation_train", "investigation_val", "test"]
    train = read_manifest(lmdbs["ensemble_train"])
    rest, held = read_manifest(lmdbs["investigation_train"]), read_manifest(lmdbs["investigation_val"])
    images = 70                                                # SFEW layouts hold a tenth of `train`
    assert train["count"] == 96                                # 70 padded to two batches of 48
    # A fifth of the images (rounded per class) held out, each with its mirror copy beside it.
    assert abs(held["count"] - 0.2 * 2 * images) <= 7 * 2
    held_keys = [key.decode().split("_", 1)[1] for key in lmdb_keys(lmdbs["investigation_val"])]
    originals = [key for key in held_keys if not key.endswith("_mirror")]
    assert sorted(held_keys) == sorted(originals + [key + "_mirror" for key in originals])
    assert rest["count"] % 48 == 0 and rest["count"] >= 2 * images - held["count"]
    assert lmdbs["ensemble_val"] == lmdbs["test"]              # SFEW reports on Val


def test_largest_face_is_cropped_from_a_scene_and_a_crop_is_kept_whole():
    import cv2
    from pycaffe_fer import synth
    from pycaffe_fer.faces import HaarDetector, largest_face_crop
    detector = HaarDetector()
    mixture = np.eye(7)[3]
    face = synth.render(np.random.default_rng(1), mixture, 160, False)
    small = synth.render(np.random.default_rng(2), mixture, 60, False)
    scene = np.full((480, 640, 3), 90, np.uint8)
    scene[100:260, 300:460] = face
    scene[350:410, 40:100] = small                           # a smaller face: not the one kept
    crop = largest_face_crop(scene, detector)
    assert 160 <= crop.shape[0] < 400 and crop.shape[0] == crop.shape[1]    # the face and a margin
    # The crop holds the large face: it matches the pasted pixels at the face's place in it.
    match = cv2.matchTemplate(crop, face, cv2.TM_SQDIFF_NORMED)
    assert match.min() < 1e-6
    # A face crop with a margin: the face found fills most of it, so it is kept whole. One cut so
    # tight that the cascade finds no face gives None (predict's "no face found": --no-detect).
    # (30 pixels: the cascade needs some margin round a synthetic person's ears and hair, as round
    # any head; with 10 or 20 it found no face in four faces of five.)
    framed = cv2.copyMakeBorder(face, 30, 30, 30, 30, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    assert largest_face_crop(framed, detector) is framed
    assert largest_face_crop(face, detector) is None


def test_missing_weights_or_soft_label_file_fail_before_any_work(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"\(constructor.init, ensemble.init: weights\): pass --weights"):
        Experiment(load_config("fer2013"), str(out), data=str(tmp_path)).run()
    with pytest.raises(InputError, match=r"runs/fer2013/softlabels.npy: no such soft-label file"):
        Experiment(load_config("raf", ["ensemble.init=scratch"]), str(out), data=str(tmp_path)).run()
    assert not out.exists()


def test_trained_ensemble_scores_the_test_lmdb_alike_in_caffe_onnx_and_opencv(experiment, tmp_path):
    """Eq. 7's fused scores of the trained ensemble on the test LMDB, from pycaffe, onnxruntime on
    the exported graph and OpenCV's DNN module on the Caffe files; the --run export of one member."""
    from pycaffe_fer import backends, onnx_export
    from pycaffe_fer.lmdb_io import image_batches
    from ensemble_fixtures import assert_same_predictions
    out, _, _ = experiment
    onnx_path = str(tmp_path / "ensemble.onnx")
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "export_onnx.py"), "--ensemble", out, "--out", onnx_path],
                   check=True, stdout=subprocess.PIPE)
    faces = np.concatenate([images for images, _ in image_batches(os.path.join(out, "lmdb", "test_lmdb"), 50)])
    faces = faces.transpose(0, 2, 3, 1)
    reference, _ = backends.open_backend("caffe", out).run(faces)
    assert_same_predictions(backends.open_backend(onnx_path=onnx_path).run(faces)[0], reference)
    assert_same_predictions(backends.open_backend("opencv", out).run(faces)[0], reference)
    # One run: its own scores, as the pipeline's evaluation computes them.
    run_dir = os.path.join(out, "ensemble", "g1.4")
    run_path = str(tmp_path / "g1.4.onnx")
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "export_onnx.py"), "--run", run_dir, "--out", run_path],
                   check=True, stdout=subprocess.PIPE)
    spec = onnx_export.run_spec(run_dir)
    assert spec.grayscale and len(spec.members) == 1
    assert_same_predictions(backends.open_backend(onnx_path=run_path).run(faces)[0],
                            backends.CaffeBackend(spec).run(faces)[0])


def test_a_given_soft_label_file_is_saved_in_the_experiment(tmp_path):
    from pycaffe_fer.softlabel import load_matrix
    table1 = os.path.join(REPO, "configs", "paper_softlabels_table1.csv")
    out = tmp_path / "out"
    out.mkdir()
    experiment = Experiment(load_config("raf", ["constructor.softlabels=%s" % table1, "ensemble.init=scratch"]),
                            str(out), data=str(tmp_path), log=lambda line: None)
    D, info, constructor_dir = experiment.softlabels(None)
    assert constructor_dir is None and info.source == "the file %s" % table1
    np.testing.assert_array_equal(np.load(str(out / "softlabels.npy")), load_matrix(table1))
    assert (out / "softlabels.csv").read_text().splitlines()[0] == "class," + ",".join(CLASSES)


def test_a_report_without_true_mixtures_has_no_mixture_section(experiment, tmp_path):
    """A real dataset has no true mixtures: the report leaves that section out and draws the rest."""
    from pycaffe_fer import report
    from pycaffe_fer import results as results_format
    from pycaffe_fer.results import MIXTURE
    out, _, _ = experiment
    results = json.load(open(os.path.join(out, "results.json")))
    del results["true_softlabels"]
    for row in results["methods"]:
        for key, _ in MIXTURE:
            del row[key]
    for example in results["examples"]["soft"] + results["examples"]["misclassified"]:
        del example["mixture"]
    results_format.write_results(str(tmp_path), results)
    text = open(report.write_report(str(tmp_path), results_format.read_results(str(tmp_path)), "raf")).read()
    assert "## Recovered mixtures" not in text and "**true** soft labels" not in text
    assert "## Calibration" in text and "## False predictions (Fig. 7)" in text
    assert sorted(os.listdir(str(tmp_path))) == sorted(
        ["report.md", "results.json", "softlabels.png", "softlabel_faces.png", "gamma.png", "reliability.png",
         "confusion.png", "confusion_paper.png", "misclassified.png", "sources.png", "curves.png"])


def test_data_detect_puts_the_ssd_detector_in_every_lmdb_recipe(tmp_path):
    from pycaffe_fer import splits
    config = load_config("raf", ["data.detect=true", "ensemble.init=scratch", "constructor.init=scratch"])
    experiment = Experiment(config, str(tmp_path / "out"), data=str(tmp_path), log=lambda line: None)
    recipes = experiment.lmdb_recipes()
    assert recipes and {r["detect"] for r in recipes.values()} == {"ssd"}
    plain = Experiment(load_config("raf", ["ensemble.init=scratch", "constructor.init=scratch"]), str(tmp_path / "o2"),
                       data=str(tmp_path), log=lambda line: None)
    assert {r["detect"] for r in plain.lmdb_recipes().values()} == {None}
    assert splits.recipe("o", "s", "folder", "train", 48, 0, detect="ssd")["detect"] == "ssd"


def final_models(out):
    """{run folder: (its final model, the model's modification time)} of every finished run."""
    dirs = [os.path.dirname(p) for p in glob.glob(os.path.join(out, "**", training.RUN_FILE), recursive=True)]
    return {d: (training.final_model(d), os.stat(training.final_model(d)).st_mtime_ns) for d in dirs
            if training.is_finished(d)}


def test_a_damaged_final_model_is_named_and_its_run_alone_trains_again_to_the_same_results(experiment, tmp_path):
    """A member's final caffemodel and the constructor's cut in half (a disk error, a copy cut
    short): --damaged refuse stops, naming one; a plain rerun names each in one line, trains those two
    runs again from their last intact snapshots (the constructor from iteration 10 of 20, the member,
    a single segment, from its start) and nothing else, and results.json is the untouched one."""
    out, _, _ = experiment
    results = json.load(open(os.path.join(out, "results.json")))
    before = final_models(out)
    member, constructor = os.path.join(out, "ensemble", "g1.4"), os.path.join(out, "constructor", "hard")
    written = {}
    for run_dir in (constructor, member):
        model = training.final_model(run_dir)
        written[run_dir] = open(model, "rb").read()
        with open(model, "wb") as handle:
            handle.write(written[run_dir][:len(written[run_dir]) // 2])
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    refused = subprocess.run([sys.executable, os.path.join(REPO, "tools", "run_experiment.py"), "--config", str(config),
                              "--out", out, "--damaged", "refuse"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, timeout=600)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "error: %s: not the file the run wrote (its MD5 differs from the one in %s) (not trained again: --damaged "
        "refuse)" % (training.final_model(constructor), os.path.join(constructor, training.RUN_FILE))]
    assert "iter " not in refused.stdout and training.is_finished(constructor), "refused before any training"

    lines = []
    Experiment(tiny_config(), out, log=lines.append).run()
    assert [line for line in lines if line.startswith("warning: ") and " again " in line] == [
        "warning: %s: not the file the run wrote (its MD5 differs from the one in %s): training %s again from its last "
        "intact snapshot" % (training.final_model(d), os.path.join(d, training.RUN_FILE), d) for d in (constructor, member)]
    assert "[hard] resumed from iteration 10" in lines
    assert sum("validation accuracy" in line for line in lines) == 2, "one segment of each, no other run"
    after = final_models(out)
    assert sorted(d for d in before if after[d] != before[d]) == [constructor, member]
    for run_dir in (constructor, member):     # on the CPU the run trained again is the very same
        assert open(training.final_model(run_dir), "rb").read() == written[run_dir]
    again = json.load(open(os.path.join(out, "results.json")))
    assert [row["id"] for row in again["methods"]] == [row["id"] for row in results["methods"]]
    for ours, untouched in zip(again["methods"], results["methods"]):
        assert ours == untouched, ours["id"]
    assert again == results


def test_a_run_finished_before_digests_were_recorded_is_kept_if_its_model_parses(experiment):
    """An experiment folder from before model digests: no model_digest in run.json, empty snapshot
    markers. Its run is not trained again; once its model no longer parses, it is."""
    out, _, _ = experiment
    run_dir = os.path.join(out, "baseline", "seed1")
    run = training.read_run(run_dir)
    training.write_run(run_dir, {key: value for key, value in run.items() if key != "model_digest"})
    for marker in glob.glob(os.path.join(run_dir, "snapshots", "*.done")):
        open(marker, "w").close()
    lines = []
    Experiment(tiny_config(), out, log=lines.append).run()
    assert not any("iter " in line or " again " in line for line in lines)
    assert "model_digest" not in training.read_run(run_dir), "left as it was"
    model = training.final_model(run_dir)
    with open(model, "r+b") as handle:
        handle.truncate(os.path.getsize(model) - 100)
    lines = []
    Experiment(tiny_config(), out, log=lines.append).run()
    assert "warning: %s: not a Caffe model (binary NetParameter), or one cut short: training %s again from its last " \
           "intact snapshot" % (model, run_dir) in lines
    assert sum("validation accuracy" in line for line in lines) == 1
    assert training.read_run(run_dir)["model_digest"] == model_digest(model)


# Three runs (the constructor, one member, one baseline member), the constructor long enough to be
# killed while it trains.
SMALL_PLAN = ["investigation.gammas=[]", "investigation.select=config", "ensemble.gammas=[1.4]",
              "ensemble.fixed_gamma=[]", "ensemble.controls=[]", "ensemble.baseline={n: 1}", "solver.max_iter=200"]


def wait_for(predicate, what, seconds=300):
    deadline = time.time() + seconds
    while not predicate():
        assert time.time() < deadline, "waited %d s for %s" % (seconds, what)
        time.sleep(0.05)


def test_a_second_run_on_the_folder_stops_at_once_and_a_killed_runs_folder_is_taken_over(tmp_path):
    config, out = tmp_path / "tiny.yaml", str(tmp_path / "experiment")
    config.write_text(yaml.safe_dump(tiny_config(*SMALL_PLAN)))
    command = [sys.executable, os.path.join(REPO, "tools", "run_experiment.py"), "--config", str(config), "--out", out]
    described = "run_experiment.py --config %s --out %s" % (config, out)
    lock = paths.lock(out)
    with open(str(tmp_path / "first.log"), "w") as first_log:
        first = subprocess.Popen(command, stdout=first_log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: os.path.exists(lock) and os.path.getsize(lock), "the first run to hold the folder")
            holder = json.load(open(lock))
            began = time.time()
            second = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                                    timeout=300)
            took = time.time() - began
            assert first.poll() is None, "the first still runs"
            assert second.returncode == 2 and second.stdout == ""
            assert second.stderr.splitlines() == ["error: %s: in use by pid %d on %s since %s (%s): wait for it to end, "
                                                  "or stop it" % (out, first.pid, socket.gethostname(),
                                                                  holder["since"], described)]
            assert took < 60, "stopped at once (Python's imports are most of it): %.1f s" % took
            # Killed while the constructor trains: its training process goes with it (tasks.end_with).
            run_lock = os.path.join(out, "constructor", "hard", training.LOCK_FILE)
            wait_for(lambda: os.path.exists(run_lock) and os.path.getsize(run_lock), "the constructor to train")
            trainer = json.load(open(run_lock))
        finally:
            first.kill()
            first.wait(timeout=60)
    wait_for(lambda: not os.path.exists("/proc/%d" % trainer["pid"]) or
             open("/proc/%d/stat" % trainer["pid"]).read().rsplit(")", 1)[1].split()[0] == "Z", "the trainer to end", 30)
    third = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                           timeout=900)
    assert third.returncode == 0, third.stderr
    lines = third.stdout.splitlines()
    assert [line for line in lines if "taking over" in line] == [
        "%s: taking over from pid %d on %s since %s (%s), which ended without releasing it" % (
            out, first.pid, socket.gethostname(), holder["since"], described),
        "[hard] %s: taking over from pid %d on %s since %s (%s), which ended without releasing it" % (
            os.path.dirname(run_lock), trainer["pid"], socket.gethostname(), trainer["since"], trainer["command"])]
    assert os.path.exists(os.path.join(out, "results.json")) and open(lock).read() == ""
