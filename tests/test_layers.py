"""The soft-label KL loss layer (eqs. 5-6) in real Caffe: values, gradients, errors, training."""
import os
import textwrap

import caffe
import numpy as np
import pytest

from pycaffe_fer.config import load_config
from pycaffe_fer.lmdb_io import LMDBWriter, image_datum, record_key, vector_datum
from pycaffe_fer.templates import render_solver, render_train_val, write_prototxt
from helpers import logged_losses, run_caffe, separable_images

KL_LAYER = 'type: "Python" python_param { module: "pycaffe_fer.layers" layer: "SoftLabelKLLossLayer" %s }'


def loss_net(tmp_path, shape, losses, param_str=""):
    """A pycaffe net whose scores are learnable Parameter blobs, so their diff is dLoss/dscores.

    ``losses``: (name, kind, loss_weight) with kind "kl" (on targets) or "softmax" (on labels);
    each loss gets its own scores blob `<name>_scores`. Inputs: `targets` (shape) and `labels` (N).
    """
    dims = " ".join("dim: %d" % d for d in shape)
    text = ['layer { name: "targets" type: "Input" top: "targets" input_param { shape { %s } } }' % dims,
            'layer { name: "labels" type: "Input" top: "labels" input_param { shape { dim: %d } } }' % shape[0]]
    for name, kind, weight in losses:
        text.append('layer { name: "%s_scores" type: "Parameter" top: "%s_scores" '
                    'parameter_param { shape { %s } } }' % (name, name, dims))
        if kind == "kl":
            param = " param_str: '%s'" % param_str if param_str else ""
            text.append('layer { name: "%s" bottom: "%s_scores" bottom: "targets" top: "%s" loss_weight: %g %s }'
                        % (name, name, name, weight, KL_LAYER % param))
        else:
            text.append('layer { name: "%s" type: "SoftmaxWithLoss" bottom: "%s_scores" bottom: "labels" '
                        'top: "%s" loss_weight: %g }' % (name, name, name, weight))
    text.append('layer { name: "silence" type: "Silence" bottom: "labels" bottom: "targets" }')
    path = tmp_path / "net.prototxt"
    path.write_text("\n".join(text))
    return caffe.Net(str(path), caffe.TRAIN)


def soft_targets(rng, num, classes=7):
    targets = rng.gamma(0.5, size=(num, classes))
    targets[0, 3] = 0.0   # a zero target: 0 * log 0 must count as 0
    return targets / targets.sum(axis=1, keepdims=True)


def set_inputs(net, scores, targets, labels=None):
    for name in net.params:
        net.params[name][0].data[...] = scores.reshape(net.params[name][0].data.shape)
    net.blobs["targets"].data[...] = targets.reshape(net.blobs["targets"].data.shape)
    if labels is not None:
        net.blobs["labels"].data[...] = labels


def loss_and_gradient(net, name):
    net.forward()
    loss = net.blobs[name].data.item()
    for blob in net.params.values():
        blob[0].diff[...] = 0
    net.backward()
    return loss, net.params[name + "_scores"][0].diff.reshape(net.blobs["targets"].data.shape[:2]).copy()


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1, 1)])
@pytest.mark.parametrize("form", ["kl", "cross_entropy"])
def test_gradient_matches_finite_differences(tmp_path, shape, form):
    caffe.set_mode_cpu()
    net = loss_net(tmp_path, shape, [("loss", "kl", 1)], '{"form": "%s"}' % form)
    rng = np.random.RandomState(0)
    scores, targets = rng.randn(5, 7) * 2, soft_targets(rng, 5)
    set_inputs(net, scores, targets)
    _, gradient = loss_and_gradient(net, "loss")
    step = 1e-2
    numeric = np.zeros_like(scores)
    for index in np.ndindex(*scores.shape):
        losses = []
        for sign in (1, -1):
            moved = scores.copy()
            moved[index] += sign * step
            set_inputs(net, moved, targets)
            losses.append(net.forward()["loss"].item())
        numeric[index] = (losses[0] - losses[1]) / (2 * step)
    np.testing.assert_allclose(gradient, numeric, atol=2e-4)
    assert np.abs(gradient).max() > 1e-2   # a real gradient, not zeros on both sides


def test_kl_is_zero_when_prediction_equals_target_and_cross_entropy_adds_the_entropy(tmp_path):
    caffe.set_mode_cpu()
    rng = np.random.RandomState(1)
    targets = soft_targets(rng, 4)
    scores = np.log(np.maximum(targets, 1e-30)) + 3.0   # softmax(scores) == targets
    kl = loss_net(tmp_path, (4, 7), [("loss", "kl", 1)])
    set_inputs(kl, scores, targets)
    assert abs(kl.forward()["loss"].item()) < 1e-6
    entropy = -(targets * np.log(np.where(targets > 0, targets, 1))).sum() / 4
    cross_entropy = loss_net(tmp_path, (4, 7), [("loss", "kl", 1)], '{"form": "cross_entropy"}')
    set_inputs(cross_entropy, scores, targets)
    assert cross_entropy.forward()["loss"].item() == pytest.approx(entropy, rel=1e-5)


def test_one_hot_targets_equal_softmax_with_loss_and_loss_weight_scales_the_gradient(tmp_path):
    caffe.set_mode_cpu()
    net = loss_net(tmp_path, (6, 7), [("kl", "kl", 1), ("softmax", "softmax", 1), ("half", "kl", 0.5)])
    rng = np.random.RandomState(2)
    scores, labels = rng.randn(6, 7) * 3, rng.randint(0, 7, size=6)
    set_inputs(net, scores, np.eye(7)[labels], labels)
    net.forward()
    net.backward()
    grad = {name: net.params[name + "_scores"][0].diff.copy() for name in ("kl", "softmax", "half")}
    assert net.blobs["kl"].data.item() == pytest.approx(net.blobs["softmax"].data.item(), abs=1e-5)
    assert net.blobs["kl"].data.item() > 0.5
    np.testing.assert_allclose(grad["kl"], grad["softmax"], atol=1e-5)
    np.testing.assert_allclose(grad["half"], 0.5 * grad["kl"], atol=1e-7)
    assert np.abs(grad["kl"]).max() > 0.01


def test_extreme_scores_stay_finite(tmp_path):
    caffe.set_mode_cpu()
    net = loss_net(tmp_path, (2, 7), [("loss", "kl", 1)])
    scores = np.array([[1e4, -1e4, 0, 0, 0, 0, 0], [-3e4] * 7])
    set_inputs(net, scores, np.eye(7)[[1, 2]])
    loss, gradient = loss_and_gradient(net, "loss")
    assert np.isfinite(loss) and np.isfinite(gradient).all()
    assert loss == pytest.approx((2e4 + np.log(7)) / 2, rel=1e-6)   # -log p: 2e4 and log 7
    np.testing.assert_allclose(gradient[0], [0.5, -0.5, 0, 0, 0, 0, 0], atol=1e-6)


@pytest.mark.parametrize("targets, message", [
    (np.full((3, 7), 1 / 6.0), "soft target of sample 0 of the batch sums to 1.166667, not 1"),
    (np.vstack([np.eye(7)[:2], [[1.5, -0.5, 0, 0, 0, 0, 0]]]), "soft target of sample 2 of the batch has a negative entry"),
    (np.vstack([np.eye(7)[:1], [[np.nan] * 7], np.eye(7)[:1]]), "soft target of sample 1 of the batch is not finite"),
])
def test_bad_targets_fail_with_a_message_naming_the_layer(tmp_path, targets, message):
    caffe.set_mode_cpu()
    net = loss_net(tmp_path, (3, 7), [("loss", "kl", 1)])
    set_inputs(net, np.zeros((3, 7)), targets)
    with pytest.raises(ValueError, match="SoftLabelKLLossLayer: " + message):
        net.forward()


@pytest.mark.parametrize("bottoms, param_str, message", [
    ('bottom: "s" bottom: "t"', "", "scores .* and soft targets .* must both be N x C"),
    ('bottom: "s"', "", "needs 2 bottoms"),
    ('bottom: "s" bottom: "s"', '{"tolerance": "big"}', "tolerance must be a number"),
    ('bottom: "s" bottom: "s"', '{"form": "mse"}', "form must be one of"),
    ('bottom: "s" bottom: "s"', '{"gamma": 1}', "unknown param_str key"),
    ('bottom: "s" bottom: "s"', "{form: kl}", "param_str is not JSON"),
])
def test_bad_shapes_and_parameters_fail_at_setup(tmp_path, bottoms, param_str, message):
    caffe.set_mode_cpu()
    param = " param_str: '%s'" % param_str if param_str else ""
    (tmp_path / "net.prototxt").write_text(textwrap.dedent("""
        layer { name: "s" type: "Input" top: "s" input_param { shape { dim: 4 dim: 7 } } }
        layer { name: "t" type: "Input" top: "t" input_param { shape { dim: 4 dim: 6 } } }
        layer { name: "loss" %s top: "loss" loss_weight: 1 %s }
        """) % (bottoms, KL_LAYER % param))
    with pytest.raises(ValueError, match="SoftLabelKLLossLayer: " + message):
        caffe.Net(str(tmp_path / "net.prototxt"), caffe.TRAIN)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Tiny 48 x 48 separable image and soft-label LMDBs, and a small-variant config over them."""
    root = tmp_path_factory.mktemp("kl_train")
    for split, count, seed in (("train", 96, 0), ("val", 32, 1)):
        images, labels = separable_images(count, size=48, seed=seed)
        with LMDBWriter(str(root / ("%s_lmdb" % split))) as img, \
                LMDBWriter(str(root / ("%s_soft" % split))) as soft:
            for i, (image, label) in enumerate(zip(images, labels)):
                img.put(record_key(i, "img%d" % i), image_datum(image, label))
                target = np.full(7, 0.04)
                target[label] = 0.76
                soft.put(record_key(i, "img%d" % i), vector_datum(target, label))
    config = load_config("fer2013", ["net.input_size=48", "net.width=0.125", "net.fc_width=128",
                                     "net.input_scale=0.0078125", "net.batch_size=16",
                                     "net.test_batch_size=16", "solver.max_iter=60", "solver.display=5",
                                     "solver.test_interval=60", "solver.random_seed=3"])
    return root, config


def test_caffe_train_with_the_kl_head_lowers_the_loss_on_the_small_net(tiny_run, caffe_bin):
    root, config = tiny_run
    net = write_prototxt(str(root / "train_val.prototxt"), render_train_val(
        config, "soft", str(root / "train_lmdb"), str(root / "val_lmdb"),
        str(root / "train_soft"), str(root / "val_soft")), "net")
    solver = write_prototxt(str(root / "solver.prototxt"),
                            render_solver(config, net, str(root / "snap"), 2), "solver")
    code, log = run_caffe(caffe_bin, ["train", "-solver", solver], cwd=str(root))
    assert code == 0, log[-3000:]
    losses = logged_losses(log)
    assert sorted(losses) == list(range(0, 61, 5))
    assert losses[60] < 0.6 * losses[0], losses
    # The KL layer also runs in the TEST phase, next to the accuracy against the hard labels.
    assert "Test net output #1: loss = " in log and "Test net output #0: accuracy = " in log
    assert os.path.exists(str(root / "snap_iter_60.caffemodel"))


@pytest.mark.parametrize("target, message", [
    (np.full(7, 0.5), "soft target of sample 0 of the batch sums to 3.500000, not 1"),
    (np.full(6, 1 / 6.0), r"scores (16, 7) and soft targets (16, 6, 1, 1) must both be N x C"),
])
def test_caffe_binary_prints_why_the_layer_failed_and_exits_non_zero(tiny_run, caffe_bin, target, message):
    root, config = tiny_run
    bad = str(root / ("bad_soft_%d" % len(target)))
    with LMDBWriter(bad) as soft:
        for i in range(96):
            soft.put(record_key(i, "img%d" % i), vector_datum(target))
    net = write_prototxt(bad + ".prototxt", render_train_val(
        config, "soft", str(root / "train_lmdb"), None, bad), "net")
    solver = write_prototxt(bad + "_solver.prototxt", render_solver(config, net, bad + "_snap", None), "solver")
    code, log = run_caffe(caffe_bin, ["train", "-solver", solver], cwd=str(root))
    assert code != 0
    # Caffe itself only says "terminate called after throwing ... error_already_set"; the layer's line is ours.
    assert "SoftLabelKLLossLayer: " + message in log, log[-2000:]


def test_force_backward_gives_input_gradients_and_zero_target_gradients(tmp_path):
    """With force_backward (saliency maps, input gradients) Caffe asks every bottom for a gradient,
    the soft targets too: they get zeros, and the gradient reaching the images stays exact."""
    caffe.set_mode_cpu()
    path = tmp_path / "net.prototxt"
    path.write_text("\n".join([
        "force_backward: true",
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 10 } } }',
        'layer { name: "targets" type: "Input" top: "targets" input_param { shape { dim: 4 dim: 7 } } }',
        'layer { name: "score" type: "InnerProduct" bottom: "data" top: "score" '
        'inner_product_param { num_output: 7 bias_term: false weight_filler { type: "gaussian" std: 1 } } }',
        'layer { name: "loss" bottom: "score" bottom: "targets" top: "loss" loss_weight: 1 %s }' % (KL_LAYER % "")]))
    net = caffe.Net(str(path), caffe.TRAIN)
    rng = np.random.RandomState(1)
    images, targets = rng.randn(4, 10), soft_targets(rng, 4)
    net.blobs["data"].data[...] = images
    net.blobs["targets"].data[...] = targets
    net.blobs["targets"].diff[...] = 5.0                  # stale values must be overwritten
    net.forward()
    net.backward()
    weights = net.params["score"][0].data.astype(np.float64)
    scores = images.dot(weights.T)
    probabilities = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    # dL/dx = (p - d) W / N
    np.testing.assert_allclose(net.blobs["data"].diff, (probabilities - targets).dot(weights) / 4, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(net.blobs["targets"].diff, 0.0)
