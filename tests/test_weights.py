"""VGG-Face initialisation: copy by layer name from a model built from a V1 deploy prototxt; a
trained model checked before Caffe reads it, by the library and by predict, export and scoring."""
import hashlib
import os
import re
import shutil
import subprocess
import sys

import caffe
import cv2
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from pycaffe_fer import scoring
from pycaffe_fer.config import load_config
from pycaffe_fer.ensemble import load_ensemble
from pycaffe_fer.errors import InputError
from pycaffe_fer.lmdb_io import LMDBWriter, image_datum, record_key, vector_datum
from pycaffe_fer.templates import render_deploy, write_prototxt
from pycaffe_fer.weights import copy_weights, describe, load_trained_net, model_blob_shapes, model_digest
from ensemble_fixtures import random_ensemble
from helpers import REPO, run_caffe
from test_templates import render_cli

SIZE, WIDTH, FC = 48, 0.125, 128
VGG_FACE_PARAM_LAYERS = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
                         "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7"]


def vgg_face_v1_prototxt(width, fc_width, size, fc8=2622):
    """VGG_FACE_deploy.prototxt as Oxford ships it (V1: `layers`, enum types, input_dim), scaled down."""
    def layer(name, kind, bottom, top, body=""):
        return 'layers {\n  bottom: "%s"\n  top: "%s"\n  name: "%s"\n  type: %s\n%s}\n' % (bottom, top, name, kind, body)
    text = 'name: "VGG_FACE_16_layers"\ninput: "data"\n' + "".join("input_dim: %d\n" % d for d in (1, 3, size, size))
    bottom = "data"
    for group, (channels, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
        for index in range(1, convs + 1):
            name = "%d_%d" % (group, index)
            text += layer("conv" + name, "CONVOLUTION", bottom, "conv" + name, "  convolution_param {\n"
                          "    num_output: %d\n    pad: 1\n    kernel_size: 3\n  }\n" % int(channels * width))
            text += layer("relu" + name, "RELU", "conv" + name, "conv" + name)
            bottom = "conv" + name
        text += layer("pool%d" % group, "POOLING", bottom, "pool%d" % group,
                      "  pooling_param {\n    pool: MAX\n    kernel_size: 2\n    stride: 2\n  }\n")
        bottom = "pool%d" % group
    for fc, outputs in (("6", fc_width), ("7", fc_width), ("8", fc8)):
        text += layer("fc" + fc, "INNER_PRODUCT", bottom, "fc" + fc,
                      "  inner_product_param {\n    num_output: %d\n  }\n" % outputs)
        bottom = "fc" + fc
        if fc != "8":
            text += layer("relu" + fc, "RELU", bottom, bottom)
            text += layer("drop" + fc, "DROPOUT", bottom, bottom, "  dropout_param {\n    dropout_ratio: 0.5\n  }\n")
    return text + layer("prob", "SOFTMAX", "fc8", "prob")


def to_v1_model(model, v1_model):
    """Rewrite a caffemodel as the V1 format VGG_FACE.caffemodel uses: `layers`, 4-D legacy blob dims."""
    source = caffe_pb2.NetParameter()
    with open(model, "rb") as handle:
        source.ParseFromString(handle.read())
    old = caffe_pb2.NetParameter(name=source.name)
    for layer in source.layer:
        v1 = old.layers.add(name=layer.name, bottom=layer.bottom, top=layer.top)
        for blob in layer.blobs:
            dims = [1] * (4 - len(blob.shape.dim)) + list(blob.shape.dim)
            v1.blobs.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3], data=blob.data)
    with open(v1_model, "wb") as handle:
        handle.write(old.SerializeToString())


@pytest.fixture(scope="module")
def vgg_face(tmp_path_factory):
    """A VGG-Face-named model at reduced width, made by Caffe from the V1 prototxt, with random weights."""
    root = tmp_path_factory.mktemp("vggface")
    (root / "VGG_FACE_deploy.prototxt").write_text(vgg_face_v1_prototxt(WIDTH, FC, SIZE))
    caffe.set_mode_cpu()
    net = caffe.Net(str(root / "VGG_FACE_deploy.prototxt"), caffe.TEST)   # Caffe upgrades V1 on load
    rng = np.random.RandomState(0)
    for weight, bias in net.params.values():   # He-scaled, so a forward pass stays finite
        weight.data[...] = rng.randn(*weight.data.shape) * np.sqrt(2.0 / np.prod(weight.data.shape[1:]))
        bias.data[...] = rng.randn(*bias.data.shape) * 0.1
    net.save(str(root / "VGG_FACE.caffemodel"))
    to_v1_model(str(root / "VGG_FACE.caffemodel"), str(root / "VGG_FACE_v1.caffemodel"))
    weights = {name: [blob.data.copy() for blob in blobs] for name, blobs in net.params.items()}
    return root, weights


def small_config(*overrides):
    return load_config("fer2013", ["net.input_size=%d" % SIZE, "net.width=%g" % WIDTH,
                                   "net.fc_width=%d" % FC] + list(overrides))


@pytest.mark.parametrize("model", ["VGG_FACE.caffemodel", "VGG_FACE_v1.caffemodel"])
def test_conv1_1_to_fc7_are_copied_and_the_classifier_is_not(vgg_face, tmp_path, model):
    root, weights = vgg_face
    assert list(model_blob_shapes(str(root / model))) == VGG_FACE_PARAM_LAYERS + ["fc8"]
    deploy = write_prototxt(str(tmp_path / "deploy.prototxt"), render_deploy(small_config()), "net")
    net = caffe.Net(deploy, caffe.TEST)
    classifier = [blob.data.copy() for blob in net.params["fc8_expression"]]
    report = copy_weights(net, str(root / model))
    assert report.copied == VGG_FACE_PARAM_LAYERS
    assert report.not_initialised == ["fc8_expression"] and report.ignored == ["fc8"]
    assert describe(report).startswith("copied 15 layers (conv1_1, conv1_2,")
    for name in VGG_FACE_PARAM_LAYERS:
        for got, want in zip(net.params[name], weights[name]):
            np.testing.assert_array_equal(got.data, want)
    for got, before in zip(net.params["fc8_expression"], classifier):
        np.testing.assert_array_equal(got.data, before)
    assert net.params["fc8_expression"][0].data.shape == (7, FC)


def test_a_shape_mismatch_is_an_input_error_not_an_abort(vgg_face, tmp_path):
    root, _ = vgg_face
    deploy = write_prototxt(str(tmp_path / "deploy.prototxt"), render_deploy(small_config("net.fc_width=64")), "net")
    net = caffe.Net(deploy, caffe.TEST)
    with pytest.raises(InputError, match=r"VGG_FACE.caffemodel: layer fc6 has weights of shape \[\(128, 256\), "
                                         r"\(128,\)\] but the net's fc6 has \[\(64, 256\), \(64,\)\]"):
        copy_weights(net, str(root / "VGG_FACE.caffemodel"))


def test_a_file_that_is_not_a_model_is_an_input_error(vgg_face):
    root, _ = vgg_face
    with pytest.raises(InputError, match="VGG_FACE_deploy.prototxt: not a Caffe model"):
        model_blob_shapes(str(root / "VGG_FACE_deploy.prototxt"))
    with pytest.raises(InputError, match="missing.caffemodel: cannot read the weights"):
        model_blob_shapes(str(root / "missing.caffemodel"))


def test_render_then_caffe_train_from_the_repository_root_with_v1_vgg_face_weights(vgg_face, tmp_path, caffe_bin):
    """The commands of docs/method.md, with tmp_path as the repository root: relative paths throughout."""
    root, _ = vgg_face
    for split in ("train", "test"):
        lmdb = str(tmp_path / "data" / "tiny" / ("%s_lmdb" % split))
        with LMDBWriter(lmdb) as img, LMDBWriter(lmdb + "_soft_g1.4") as soft:
            for i in range(8):
                img.put(record_key(i, "r"), image_datum(np.full((SIZE, SIZE, 3), 30 * (i % 7), np.uint8), i % 7))
                soft.put(record_key(i, "r"), vector_datum(np.eye(7)[i % 7]))
    code, _, stderr = render_cli(["--preset", "fer2013", "--gamma", "1.4", "--input-size", str(SIZE), "--width",
                                  str(WIDTH), "--fc-width", str(FC), "--input-scale", "0.0078125",
                                  "--set", "data.lmdb_dir=data/tiny", "--set", "net.batch_size=4",
                                  "--set", "net.test_batch_size=4", "--set", "solver.max_iter=2"], cwd=str(tmp_path))
    assert code == 0, stderr
    for run in ("hard", "g1.4"):
        code, log = run_caffe(caffe_bin, ["train", "-solver", "generated/solver_%s.prototxt" % run,
                                          "-weights", str(root / "VGG_FACE_v1.caffemodel")], cwd=str(tmp_path))
        assert code == 0, log[-2000:]
        assert "deprecated V1LayerParameter: %s" % (root / "VGG_FACE_v1.caffemodel") in log   # upgraded on load
        assert "Ignoring source layer fc8\n" in log and "Optimization Done" in log
        assert not [name for name in VGG_FACE_PARAM_LAYERS if "Ignoring source layer %s\n" % name in log]
        assert "Test net output #0: accuracy = " in log and "nan" not in log
        assert (tmp_path / "generated" / "snapshots" / ("fer2013_%s_iter_2.caffemodel" % run)).exists()


# ---- a trained model checked before Caffe reads it ----------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-member experiment (random_ensemble: the demo net, Caffe's fillers) and its model's bytes."""
    root = random_ensemble(str(tmp_path_factory.mktemp("trained") / "run"), members=1, grayscale=False)
    model = os.path.join(root, "member0.caffemodel")
    with open(model, "rb") as handle:
        return root, model, handle.read()


def cut_at_the_last_layer(data):
    """The model's bytes cut where its last layer with weights begins: a shorter file that still parses."""
    param = caffe_pb2.NetParameter()
    param.ParseFromString(data)
    last = max(i for i, layer in enumerate(param.layer) if layer.blobs)
    del param.layer[last:]
    shorter = param.SerializeToString()
    assert data.startswith(shorter) and len(shorter) < len(data)        # a prefix of the file: a cut
    return shorter


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:len(data) // 2], re.escape("not a Caffe model (binary NetParameter), or one cut short")),
    (lambda data: b"", "empty file, not a Caffe model"),
    (cut_at_the_last_layer, "no weights for layer fc8_expression of .*deploy.prototxt: a model cut short"),
])
def test_a_damaged_model_is_an_input_error_naming_it_before_caffe_reads_it(trained, tmp_path, damage, message):
    root, model, data = trained
    damaged = tmp_path / "damaged.caffemodel"
    damaged.write_bytes(damage(data))
    with pytest.raises(InputError, match="^%s: %s" % (re.escape(str(damaged)), message)):
        load_trained_net(os.path.join(root, "deploy.prototxt"), str(damaged))
    with pytest.raises(InputError, match="missing.caffemodel: cannot read the weights: No such file"):
        load_trained_net(os.path.join(root, "deploy.prototxt"), str(tmp_path / "missing.caffemodel"))
    # The whole model loads with Caffe's own weights.
    net = load_trained_net(os.path.join(root, "deploy.prototxt"), model)
    reference = caffe.Net(os.path.join(root, "deploy.prototxt"), caffe.TEST, weights=model)
    for name in reference.params:
        for ours, theirs in zip(net.params[name], reference.params[name]):
            np.testing.assert_array_equal(ours.data, theirs.data)


def test_a_models_digest_is_the_md5_of_its_bytes_and_changes_when_it_is_cut(trained, tmp_path):
    _, model, data = trained
    assert model_digest(model) == hashlib.md5(data).hexdigest()
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(data[:-1])
    assert model_digest(str(cut)) != model_digest(model)
    with pytest.raises(InputError, match="gone.caffemodel: cannot read it: No such file"):
        model_digest(str(tmp_path / "gone.caffemodel"))


def damaged_experiment(tmp_path):
    """A one-member experiment whose model is cut in half; (root, the model's path)."""
    root = random_ensemble(str(tmp_path / "run"), members=1, grayscale=False)
    model = os.path.join(root, "member0.caffemodel")
    with open(model, "rb") as handle:
        data = handle.read()
    with open(model, "wb") as handle:
        handle.write(data[:len(data) // 2])
    return root, model


def run_tool(*args, **env):
    return subprocess.run([sys.executable] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300, env=dict(os.environ, **env))


def assert_one_line_naming(proc, model):
    """Exit 2 and one line naming the model: no glog abort (exit 134, `Check failed` and a stack trace)."""
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("exporting ")]   # predict's onnx
    assert lines == ["error: %s: not a Caffe model (binary NetParameter), or one cut short" % model], proc.stderr


def test_predict_export_and_scoring_name_a_cut_model_in_one_line(tmp_path):
    root, model = damaged_experiment(tmp_path)
    face = tmp_path / "face.png"
    cv2.imwrite(str(face), np.full((48, 48, 3), 128, np.uint8))
    for backend in ("caffe", "onnx"):          # onnx: exports the ensemble first, from the caffemodels
        assert_one_line_naming(run_tool(os.path.join(REPO, "tools", "predict.py"), "--ensemble", root, "--backend",
                                        backend, "--no-detect", str(face)), model)
    out = tmp_path / "out.onnx"
    assert_one_line_naming(run_tool(os.path.join(REPO, "tools", "export_onnx.py"), "--ensemble", root,
                                    "--out", str(out)), model)
    assert not out.exists()
    lmdb = str(tmp_path / "faces_lmdb")
    with LMDBWriter(lmdb) as writer:
        for i in range(3):
            writer.put(record_key(i, "face%d" % i), image_datum(np.full((48, 48, 3), 40 * i, np.uint8), i))
    spec = load_ensemble(root)
    directory = scoring.prepare_scoring(str(tmp_path / "scoring"), lmdb, spec.members, load_config("demo")["net"])
    # As the executors start the task (GLOG_minloglevel=2: Caffe's own log is the task log's, not stderr's).
    assert_one_line_naming(run_tool("-m", "pycaffe_fer.scoring", directory, GLOG_minloglevel="2"), model)
    assert not scoring.task_done(directory)
