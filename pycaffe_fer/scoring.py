"""Trained nets on images: Caffe's device for this process, the nets of an ensemble's members, their
fc scores on an LMDB, and the scoring pass as a task (``python -m pycaffe_fer.scoring DIRECTORY``).

A scoring directory holds

    scoring.json    the LMDB, the members ({name, gamma, deploy, model}) with each model's size and
                    modification time, and the net settings the TEST phase transforms images with
    scores.npz      scores (members x M x C, float32) and labels (M,), once the pass is done
    slurm.log       what the task printed, when SLURM ran it
"""
import json
import os
import sys

import numpy as np

from . import ensemble
from .atomic import atomic_path
from .devices import use_device
from .errors import run_cli
from .lmdb_io import image_batches
from .tasks import task_main

SCORING_FILE = "scoring.json"
SCORES_FILE = "scores.npz"


def load_nets(members, gpu=None):
    """caffe.Net (TEST) of each ensemble.Member, each caffemodel checked before Caffe reads it."""
    from .weights import load_trained_net

    use_device(gpu)
    return [load_trained_net(m.deploy, m.model) for m in members]


def scores_on(lmdb_path, members, net_config, gpu=None):
    """Every member's M x C fc scores on the LMDB (each image read and decoded once), and the labels;
    the images are transformed as the TEST phase's Data layer does (config ``net`` section)."""
    return ensemble.forward_scores(load_nets(members, gpu), image_batches(lmdb_path, int(net_config["test_batch_size"])),
                                   net_config["mean_value"], float(net_config["input_scale"]))


def _model_identity(path):
    status = os.stat(path)
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


def prepare_scoring(directory, lmdb_path, members, net_config):
    """A scoring directory for these members on this LMDB. Scores computed earlier are kept only when
    they are of these very models (a retrained model has another size or time) and settings."""
    wanted = {"lmdb": lmdb_path, "members": [dict(m._asdict(), identity=_model_identity(m.model)) for m in members],
              "net": {key: net_config[key] for key in ("test_batch_size", "mean_value", "input_scale")}}
    path = os.path.join(directory, SCORING_FILE)
    if os.path.exists(path):
        with open(path) as handle:
            if json.load(handle) == wanted:
                return directory
    os.makedirs(directory, exist_ok=True)
    if os.path.exists(os.path.join(directory, SCORES_FILE)):
        os.remove(os.path.join(directory, SCORES_FILE))
    with atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            json.dump(wanted, handle, indent=2)
    return directory


def run_task(directory, gpu=None, log=print):
    with open(os.path.join(directory, SCORING_FILE)) as handle:
        job = json.load(handle)
    log("scoring %d net(s) on %s" % (len(job["members"]), job["lmdb"]))
    scores, labels = scores_on(job["lmdb"], [ensemble.read_member(m) for m in job["members"]], job["net"], gpu)
    with atomic_path(os.path.join(directory, SCORES_FILE)) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, scores=np.stack(scores), labels=labels)


def task_done(directory):
    return os.path.exists(os.path.join(directory, SCORES_FILE))


def read_scores(directory):
    """([M x C scores of each member], labels) of a finished scoring pass."""
    with np.load(os.path.join(directory, SCORES_FILE)) as data:
        return list(data["scores"]), data["labels"]


if __name__ == "__main__":
    sys.exit(run_cli(lambda argv: task_main(run_task, "Score the nets of a scoring directory on its LMDB.", argv)))
