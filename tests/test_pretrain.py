"""The synthetic VGG-Face: VGG-Face's layer names, fc8 never copied into an expression net, the
identity accuracy beside the model, a cache keyed by what the bytes depend on, one training when
two ask at once."""
import glob
import json
import os
import subprocess
import sys
import threading

import caffe
import numpy as np
import pytest

from pycaffe_fer import pretrain, templates, training
from pycaffe_fer.config import load_config
from pycaffe_fer.lmdb_io import read_labels
from pycaffe_fer.pipeline import Experiment
from pycaffe_fer.results import read_results
from pycaffe_fer.weights import copy_weights, model_blob_shapes
from helpers import REPO, TINY, tiny_config
from test_weights import VGG_FACE_PARAM_LAYERS

# A few persons, a few faces each, a few iterations: the demo's pretraining in miniature.
SMALL = ["pretraining={identities: 12, images: 4, held_out: 2, solver: {max_iter: 10, snapshot: 5, display: 5}}"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """(Pretrained, the lines it logged), trained into a cache of this module's (PYCAFFE_FER_CACHE)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYCAFFE_FER_CACHE", str(tmp_path_factory.mktemp("cache")))
        lines = []
        yield pretrain.pretrained_model(tiny_config(*SMALL), log=lines.append), lines


def test_the_model_has_vgg_faces_layers_and_its_identity_accuracy_beside_it(pretrained):
    (model, info), lines = pretrained
    assert os.path.dirname(model).startswith(os.path.join(os.environ["PYCAFFE_FER_CACHE"], "pretrained", "faces-"))
    shapes = model_blob_shapes(model)
    assert list(shapes) == VGG_FACE_PARAM_LAYERS + ["fc8"]
    assert shapes["fc8"] == [(12, 32), (12,)]                       # identities x fc_width
    with open(os.path.join(os.path.dirname(model), pretrain.INFO)) as handle:
        assert json.load(handle) == info._asdict()
    assert (info.identities, info.train_images, info.held_out_images, info.iterations) == (12, 48, 24, 10)
    assert 0 <= info.identity_accuracy <= 1 and info.chance == pytest.approx(1 / 12)
    work = os.path.join(os.path.dirname(model), "work")
    # Every person in both parts; the training part padded to whole batches of the net's (48).
    train, held_out = read_labels(os.path.join(work, "train_lmdb")), read_labels(os.path.join(work, "held_out_lmdb"))
    assert sorted(set(train)) == sorted(set(held_out)) == list(range(12))
    assert len(train) == 48 and np.bincount(held_out).tolist() == [2] * 12
    assert any("identity accuracy" in line for line in lines)
    # The run trained the config's net without dropout (pretraining.dropout), with the pretraining's solver.
    settings = training.read_settings(info.run)
    assert settings["net"] == dict(tiny_config()["net"], dropout=0.0) and settings["solver"]["max_iter"] == 10


def test_an_expression_net_takes_conv1_1_to_fc7_and_keeps_fc8_expression_at_its_filler(pretrained, tmp_path):
    (model, _), _ = pretrained
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(templates.render_deploy(tiny_config()))
    caffe.set_mode_cpu()
    caffe.set_random_seed(0)
    net = caffe.Net(str(deploy), caffe.TEST)
    filler = [blob.data.copy() for blob in net.params["fc8_expression"]]
    report = copy_weights(net, model)
    assert report.copied == VGG_FACE_PARAM_LAYERS and report.ignored == ["fc8"]
    assert report.not_initialised == ["fc8_expression"]
    source = caffe.Net(os.path.join(pretrained[0].info.run, "deploy.prototxt"), caffe.TEST, weights=model)
    for name in VGG_FACE_PARAM_LAYERS:
        for a, b in zip(net.params[name], source.params[name]):
            np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    for kept, blob in zip(filler, net.params["fc8_expression"]):
        np.testing.assert_array_equal(kept, blob.data)
    assert filler[0].std() > 0 and not filler[1].any()               # gaussian weights, zero bias: the filler


def test_the_cache_returns_the_model_and_a_new_recipe_trains_another(pretrained):
    (model, info), _ = pretrained
    lines = []
    again = pretrain.pretrained_model(tiny_config(*SMALL), log=lines.append)
    assert again == (model, info) and lines == []                    # found, nothing trained
    other = pretrain.entry_dir(tiny_config(*SMALL + ["pretraining.identities=13"]))
    assert other != os.path.dirname(model)
    assert pretrain.entry_dir(tiny_config(*SMALL + ["pretraining.solver.base_lr=0.02"])) not in (other, os.path.dirname(model))
    assert pretrain.entry_dir(tiny_config(*SMALL + ["net.fc_width=16"])) != os.path.dirname(model)
    # What the expression runs are trained with (their solver, their dropout) is not the pretraining's: the same model.
    assert pretrain.entry_dir(tiny_config(*SMALL + ["solver.base_lr=0.5", "net.dropout=0.3", "ensemble.init=scratch"])) \
        == os.path.dirname(model)


def weights_of(pretrained):
    net = caffe.Net(os.path.join(pretrained.info.run, "deploy.prototxt"), caffe.TEST, weights=pretrained.model)
    return {name: [blob.data.copy() for blob in blobs] for name, blobs in net.params.items()}


def test_the_same_recipe_gives_the_same_weights_and_two_asking_at_once_train_once(pretrained, tmp_path, monkeypatch):
    monkeypatch.setenv("PYCAFFE_FER_CACHE", str(tmp_path / "other_cache"))
    lines, results = [], []
    threads = [threading.Thread(target=lambda: results.append(pretrain.pretrained_model(
        tiny_config(*SMALL), log=lines.append))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert len(results) == 2 and results[0] == results[1]
    assert sum("drawing" in line for line in lines) == 1
    first, second = weights_of(pretrained[0]), weights_of(results[0])
    assert list(first) == list(second)
    for name in first:
        for a, b in zip(first[name], second[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_pretrain_faces_prints_the_model_last_and_refuses_a_bad_setting(pretrained):
    (model, _), _ = pretrained
    command = [sys.executable, os.path.join(REPO, "tools", "pretrain_faces.py"), "--config", "demo"]
    command += [arg for override in TINY + SMALL for arg in ("--set", override)]
    env = dict(os.environ)
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == model and "identity accuracy" in done.stdout
    bad = subprocess.run(command + ["--set", "pretraining.identities=1"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr == "error: config pretraining.identities: 1 is not an integer >= 2\n"


# make demo's protocol in miniature: weights: synthetic, every net from it on one solver (no
# investigation, no ensemble.solver of its own), two gammas and a hard-label ensemble of two.
PROTOCOL = SMALL + ["weights=synthetic", "constructor.init=weights", "ensemble.init=weights", "investigation.gammas=null",
                    "investigation.select=config", "ensemble.solver=null", "ensemble.gammas=[1.0, 1.8]",
                    "ensemble.baseline={n: 2}", "ensemble.fixed_gamma=[]", "ensemble.controls=[]"]


def test_weights_synthetic_starts_every_net_from_the_pretrained_model_on_equal_terms(pretrained, tmp_path):
    (model, info), _ = pretrained
    out, lines = tmp_path / "exp", []
    config = tiny_config(*PROTOCOL)
    assert config["weights"] == "synthetic" and config["ensemble"].get("solver") is None
    Experiment(config, str(out), jobs=2, log=lines.append).run()
    results = read_results(str(out))
    # The cache's model (pretrained with this net), and the expression set's persons are none of its persons.
    assert results.pretraining.model == model and results.pretraining.identities == info.identities == 12
    assert (results.pretraining.shared_faces, results.pretraining.expression_faces) == (0, 336 + 140 + 140)
    trained = [row for row in results.methods if row.kind != "single" and row.init is not None]
    assert {row.kind for row in trained} == {"ensemble", "baseline", "hard_single"}
    assert {(row.init, row.iterations) for row in trained} == {("weights vggface_synth.caffemodel", 20)}
    # Every net's run.json: the pretrained model as its start, the same solver; the constructor is
    # the hard-label ensemble's member 0, its member 1 trained beside the constructor (jobs 2).
    run_files = glob.glob(str(out / "**" / training.RUN_FILE), recursive=True)
    runs = [training.read_run(os.path.dirname(path)) for path in run_files]
    assert len(runs) == 1 + 2 + 1 and {run["spec"]["weights"] for run in runs} == {model}
    assert len({json.dumps(run["settings"]["solver"], sort_keys=True).replace(
        '"random_seed": %d' % run["spec"]["seed"], "") for run in runs}) == 1
    assert "training beside the constructor: seed1 of the hard-label ensemble (they need neither D nor its model)" in lines
    hard = next(row for row in results.methods if row.kind == "baseline")
    assert hard.runs[0].startswith("constructor")
    with open(str(out / "report.md")) as handle:
        report = handle.read()
    assert "Initial weights of every net: the synthetic VGG-Face `vggface_synth.caffemodel`" in report
    assert "disjoint: 0 of the expression set's 616 faces" in report
