"""Ensembles for the export, backend, video and deploy tests: real Caffe nets rendered from our
templates with the configs' net sections, weights drawn by Caffe's own fillers, saved as
caffemodels beside an ensemble.json like the pipeline's; and the checks that backends agree."""
import os

import caffe
import numpy as np

from pycaffe_fer import ensemble, templates
from pycaffe_fer.config import load_config

# Parity: fused scores within this share of the image's largest score, and the same argmax.
RELATIVE = 1e-4


def random_ensemble(root, config="demo", members=3, fusion="score", grayscale=True, overrides=()):
    """An experiment-like directory ``root`` with ensemble.json and ``members`` nets of the config's
    net section (seeded fillers, so members differ); returns ``root``."""
    net = load_config(config, list(overrides))["net"]
    os.makedirs(root, exist_ok=True)
    deploy = os.path.join(root, "deploy.prototxt")
    templates.write_prototxt(deploy, templates.render_deploy({"net": net}), "net")
    spec_members = []
    for index in range(members):
        caffe.set_mode_cpu()
        caffe.set_random_seed(100 + index)
        model = os.path.join(root, "member%d.caffemodel" % index)
        caffe.Net(deploy, caffe.TEST).save(model)
        spec_members.append(ensemble.Member(deploy, model, "m%d" % index, 1.0 + 0.4 * index))
    ensemble.write_ensemble(root, spec_members, fusion, net, grayscale)
    return root


def assert_same_predictions(scores, reference):
    """Every image's fused scores within RELATIVE of the reference's scale, and the same argmax."""
    scores, reference = np.asarray(scores), np.asarray(reference)
    assert scores.shape == reference.shape
    scale = np.abs(reference).max(axis=1, keepdims=True)
    assert (scale > 0).all()
    worst = (np.abs(scores - reference) / scale).max()
    assert worst <= RELATIVE, "fused scores differ by %.3g of their scale" % worst
    np.testing.assert_array_equal(scores.argmax(axis=1), reference.argmax(axis=1))
