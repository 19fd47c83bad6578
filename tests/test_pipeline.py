"""The paper's pipeline end to end in real Caffe, on a small synthetic set with a tiny net."""
import json
import os
import signal
import subprocess
import sys
import time

import caffe
import numpy as np
import pytest

from pycaffe_fer import training
from pycaffe_fer.classes import CLASSES
from pycaffe_fer.config import load_config
from pycaffe_fer.errors import InputError
from pycaffe_fer.pipeline import Experiment
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
    fixed = sorted(os.listdir(os.path.join(out, "fixed_g1.4")))
    assert fixed == ["seed0", "seed1", "seed2"]                 # N members, differing by seed
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
    for png in ("softlabels.png", "gamma.png", "confusion.png", "confusion_paper.png"):
        with open(os.path.join(out, png), "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    results = json.load(open(os.path.join(out, "results.json")))
    confusion = np.array(results["ensemble"]["confusion"])
    assert confusion.shape == (7, 7)
    present = ~np.isnan(confusion).any(axis=1)
    np.testing.assert_allclose(confusion[present].sum(axis=1), 100.0)
    assert 0 <= results["ensemble"]["diversity"] <= 1
    # The ensemble's accuracy is the accuracy of eq. 7 on the members' scores.
    assert results["test_count"] == 140
    assert any(line.startswith("test accuracy: ensemble") for line in lines)


def test_second_call_skips_every_finished_run(experiment):
    _, _, again = experiment
    assert not any("iter " in line for line in again), "nothing is trained twice"
    assert sum("finished earlier: skipped" in line for line in again) >= 3 + 3 + 1


def test_a_run_dir_with_other_settings_is_refused(experiment):
    out, _, _ = experiment
    with pytest.raises(InputError, match="holds a run made with other settings"):
        Experiment(tiny_config("solver.base_lr=0.002"), out, log=lambda line: None).run()


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

    caffe.set_mode_cpu()
    nets = [caffe.Net(os.path.join(d, "deploy.prototxt"), caffe.TEST, weights=training.final_model(d))
            for d in (whole, killed)]
    for name in nets[0].params:
        for a, b in zip(nets[0].params[name], nets[1].params[name]):
            np.testing.assert_array_equal(a.data, b.data, err_msg=name)


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
    from pycaffe_fer import predict, synth
    detector = cv2.CascadeClassifier(predict.cascade_path())
    mixture = np.eye(7)[3]
    face = synth.render(np.random.default_rng(1), mixture, 160, False)
    small = synth.render(np.random.default_rng(2), mixture, 60, False)
    scene = np.full((480, 640, 3), 90, np.uint8)
    scene[100:260, 300:460] = face
    scene[350:410, 40:100] = small                           # a smaller face: not the one kept
    crop = predict.crop_face(scene, detector)
    assert 160 <= crop.shape[0] < 400 and crop.shape[0] == crop.shape[1]    # the face and a margin
    # The crop holds the large face: it matches the pasted pixels at the face's place in it.
    match = cv2.matchTemplate(crop, face, cv2.TM_SQDIFF_NORMED)
    assert match.min() < 1e-6
    assert predict.crop_face(face, detector) is face         # already a face crop: kept whole


def test_missing_weights_or_soft_label_file_fail_before_any_work(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"\(constructor.init, ensemble.init: weights\): pass --weights"):
        Experiment(load_config("fer2013"), str(out), data=str(tmp_path)).run()
    with pytest.raises(InputError, match=r"runs/fer2013/softlabels.npy: no such soft-label file"):
        Experiment(load_config("raf", ["ensemble.init=scratch"]), str(out), data=str(tmp_path)).run()
    assert not out.exists()
