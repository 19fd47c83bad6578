"""The diverse ensemble (section 3.4, eq. 7): average the base classifiers' fc scores, take argmax.

Also the evaluation of N trained nets on one image set, where each image is read and decoded once
and its preprocessed batch is forwarded through every net, and ensemble.json: what an experiment's
ensemble is (its members' deploy prototxts and models, the fusion and the input transform), for
prediction.
"""
import collections
import json
import os

import numpy as np

from . import paths
from .atomic import atomic_path
from .errors import InputError

FUSIONS = ("score", "probability")
# ensemble.json: the members' nets, how their scores are fused, and the TEST phase's transform of
# the input (from the config's net section; grayscale: trained on gray images, datasets.is_gray).
Ensemble = collections.namedtuple("Ensemble", "members fusion mean_value input_scale input_size grayscale")
# One base classifier: its deploy prototxt and caffemodel, and the run's name and gamma (None: hard labels).
Member = collections.namedtuple("Member", "deploy model name gamma")


def member(run_dir):
    """The Member of a finished run directory."""
    from . import training    # here, not above: config imports this module without Caffe or lmdb

    spec = training.read_spec(run_dir)
    return Member(os.path.join(run_dir, "deploy.prototxt"), training.final_model(run_dir), spec.name, spec.gamma)


def read_member(record):
    """The Member a JSON record of one holds (other keys of the record, such as scoring's, left out)."""
    return Member(*(record[field] for field in Member._fields))


def write_ensemble(run_root, members, fusion, net_config, grayscale):
    """<run_root>/ensemble.json of these Members, fused by ``fusion``, with the net section's transform."""
    with atomic_path(os.path.join(run_root, paths.ENSEMBLE_FILE)) as tmp:
        with open(tmp, "w") as handle:
            json.dump({"members": [m._asdict() for m in members], "fusion": fusion, "mean_value": net_config["mean_value"],
                       "input_scale": net_config["input_scale"], "input_size": net_config["input_size"],
                       "grayscale": grayscale}, handle, indent=2)


def load_ensemble(run_root):
    """The experiment's Ensemble, from its ensemble.json."""
    path = os.path.join(run_root, paths.ENSEMBLE_FILE)
    if not os.path.exists(path):
        raise InputError("%s: no ensemble.json: is this an experiment directory whose base classifiers "
                         "finished training?" % run_root)
    with open(path) as handle:
        spec = json.load(handle)
    return Ensemble(**dict(spec, members=[read_member(m) for m in spec["members"]]))


def average_scores(score_list):
    """The diverse ensemble's fusion (section 3.4, eq. 7): (1/N) sum_t s_gamma_t.

    Parameters
    ----------
    score_list : sequence of array_like, each M x C
        The N base classifiers' pre-softmax fc scores on the same M images.

    Returns
    -------
    ndarray, M x C
        Their mean; eq. 7's prediction is its argmax over the C classes (``predict``).

    Raises
    ------
    InputError
        With no scores, or scores of different shapes.
    """
    arrays = [np.asarray(scores, dtype=np.float64) for scores in score_list]
    if not arrays:
        raise InputError("average_scores: no classifier scores given")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 2:
        raise InputError("average_scores: every classifier must give M x C scores, got shapes %s"
                         % sorted(shapes))
    return np.mean(arrays, axis=0)


def softmax(scores):
    """Row-wise softmax of M x C scores (eq. 6), stable for large scores."""
    scores = np.asarray(scores, dtype=np.float64)
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def fuse(score_list, fusion="score"):
    """M x C fused outputs of N classifiers: eq. 7 (``score``) or the mean of their softmax
    probabilities (``probability``, an option the paper does not use)."""
    if fusion == "score":
        return average_scores(score_list)
    if fusion == "probability":
        return average_scores([softmax(scores) for scores in score_list])
    raise InputError("fusion must be one of %s, got %r" % (", ".join(FUSIONS), fusion))


def predict(score_list, fusion="score"):
    """Eq. 7's y = argmax_j of the fused outputs, for each of the M samples."""
    return fuse(score_list, fusion).argmax(axis=1)


def pairwise_disagreement(predictions):
    """Ensemble diversity: for N classifiers' M predictions (N x M), the fraction of samples on
    which each pair disagrees, as an N x N matrix (0 on the diagonal), and its mean over pairs."""
    predictions = np.asarray(predictions)
    count = predictions.shape[0]
    matrix = np.zeros((count, count))
    for i in range(count):
        matrix[i] = (predictions[i][None, :] != predictions).mean(axis=1)
    pairs = matrix[np.triu_indices(count, k=1)]
    return matrix, float(pairs.mean()) if pairs.size else 0.0


def preprocess(images, mean_value, scale=1.0):
    """N x C x H x W uint8 -> float32 net input, as Caffe's Data layer transforms in TEST:
    (x - mean_value[c]) * scale, no mirror, no crop."""
    mean = np.asarray(mean_value, dtype=np.float32).reshape(1, -1, 1, 1)
    return (images.astype(np.float32) - mean) * np.float32(scale)


def forward_scores(nets, batches, mean_value, scale=1.0, score_blob="fc8_expression"):
    """Scores of every net on every image: each batch of N x C x H x W uint8 images is
    preprocessed once and forwarded through all nets (the images are read and decoded once).

    batches: iterable of (images, labels). Returns ([M x C scores per net], labels (M,)).
    """
    scores = [[] for _ in nets]
    labels = []
    for images, batch_labels in batches:
        data = preprocess(images, mean_value, scale)
        for net, out in zip(nets, scores):
            expected = net.blobs["data"].data.shape[1:]
            if data.shape[1:] != expected:
                raise InputError("images are %s but the net expects %s (C x H x W): build the LMDB "
                                 "with the net's input size" % ("x".join(map(str, data.shape[1:])),
                                                                "x".join(map(str, expected))))
            net.blobs["data"].reshape(*data.shape)
            net.blobs["data"].data[...] = data
            net.forward()
            out.append(net.blobs[score_blob].data.reshape(len(data), -1).copy())
        labels.append(np.asarray(batch_labels))
    if not labels:
        raise InputError("no images to evaluate")
    return [np.concatenate(out) for out in scores], np.concatenate(labels)


def select_gammas(gammas, accuracies, tolerance):
    """The paper's rule (section 4.3): the contiguous range of gammas around the best one whose
    validation accuracy stays within `tolerance` (accuracy units) of the best."""
    accuracies = list(accuracies)
    best = int(np.argmax(accuracies))
    floor = accuracies[best] - tolerance
    low = high = best
    while low > 0 and accuracies[low - 1] >= floor:
        low -= 1
    while high < len(accuracies) - 1 and accuracies[high + 1] >= floor:
        high += 1
    return list(gammas[low:high + 1])
