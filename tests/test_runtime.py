"""The real Caffe runtime: pycaffe, Python layers, and training through pycaffe and the binary."""
import os
import subprocess
import textwrap

import caffe
import numpy as np
import pytest

from pycaffe_fer.lmdb_io import LMDBWriter, image_datum, record_key, vector_datum
from helpers import logged_losses, run_caffe, separable_images


def test_pycaffe_imports_with_python_layers():
    assert "Python" in caffe.layer_type_list()
    assert "SoftmaxWithLoss" in caffe.layer_type_list()
    assert caffe.__version__.startswith("1.0")


def test_caffe_binary_prints_version(caffe_bin):
    out = subprocess.run([caffe_bin, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True).stdout
    assert "caffe version 1.0" in out


@pytest.fixture(scope="module")
def tiny_training_set(tmp_path_factory):
    """A 70-image LMDB of 8x8 images with one-hot soft labels, keyed in the same order."""
    root = tmp_path_factory.mktemp("tiny")
    images, labels = separable_images(70)
    with LMDBWriter(str(root / "img")) as img, LMDBWriter(str(root / "soft")) as soft:
        for i, (image, label) in enumerate(zip(images, labels)):
            key = record_key(i, "img%d" % i)
            img.put(key, image_datum(image, label))
            soft.put(key, vector_datum(np.eye(7)[label]))
    net = textwrap.dedent("""
        name: "tiny"
        layer { name: "data" type: "Data" top: "data" top: "label"
                transform_param { scale: 0.00390625 }
                data_param { source: "{root}/img" batch_size: 14 backend: LMDB } }
        layer { name: "soft" type: "Data" top: "soft"
                data_param { source: "{root}/soft" batch_size: 14 backend: LMDB } }
        layer { name: "score" type: "InnerProduct" bottom: "data" top: "score"
                inner_product_param { num_output: 7 weight_filler { type: "gaussian" std: 0.01 } } }
        layer { name: "loss" type: "Python" bottom: "score" bottom: "soft" top: "loss"
                python_param { module: "pycaffe_fer.layers" layer: "SoftLabelKLLossLayer" }
                loss_weight: 1 }
        layer { name: "silence" type: "Silence" bottom: "label" }
        """).replace("{root}", str(root))
    (root / "net.prototxt").write_text(net)
    (root / "solver.prototxt").write_text(textwrap.dedent("""
        net: "{root}/net.prototxt"
        base_lr: 0.5 lr_policy: "fixed" momentum: 0.9
        max_iter: 40 display: 5 random_seed: 1
        snapshot_after_train: false solver_mode: CPU
        """).replace("{root}", str(root)))
    return root


def test_python_layer_trains_through_sgd_solver(tiny_training_set):
    caffe.set_mode_cpu()
    solver = caffe.SGDSolver(str(tiny_training_set / "solver.prototxt"))
    losses = []
    for _ in range(40):
        solver.step(1)
        losses.append(solver.net.blobs["loss"].data.item())
    assert np.log(7) * 0.8 < losses[0] < np.log(7) * 1.2   # untrained: close to uniform
    assert np.mean(losses[-5:]) < 0.5 * losses[0]


def test_python_layer_trains_through_caffe_binary(tiny_training_set, caffe_bin):
    code, log = run_caffe(caffe_bin, ["train", "-solver", str(tiny_training_set / "solver.prototxt")],
                          cwd=str(tiny_training_set))
    assert code == 0, log[-2000:]
    losses = logged_losses(log)
    assert sorted(losses) == list(range(0, 41, 5))   # every display, and the last
    assert losses[35] < 0.5 * losses[0]
