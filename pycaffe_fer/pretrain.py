"""The synthetic VGG-Face: a config's VGG16 trained in Caffe to tell synthetic persons apart, as
VGG-Face was trained on 2,622 celebrities, so that every net of an experiment can start from one
face-pretrained init (section 4.2) where VGG_FACE.caffemodel is not at hand or does not fit the net.

The persons are the synthetic generator's "faces" population (synth.draw_portraits): each seen with
every expression, pose, lighting and noise, none of them a face of the expression set. The model's
layers are VGG-Face's, conv1_1 .. fc7 and the identity classifier fc8, so `--weights` (weights.py)
fills conv1_1 .. fc7 of an expression net and leaves its fc8_expression at its filler.

It is cached as the Caffe build is, in

    $PYCAFFE_FER_CACHE/pretrained/faces-<key>/     (default ~/.cache/pycaffe_fer)
        vggface_synth.caffemodel   the model
        vggface_synth.json         what it is: its settings, the identity accuracy on held-out faces
        work/                      the faces as LMDBs, and the training run (train.log, metrics.csv)

where the key hashes everything the model's bytes depend on: the generator (the pretraining
settings, the image size and colour, synth.py), the net (the config's net section, the templates),
the solver and the BLAS thread count, and the code that trains it. The same key gives the same
weights (on the CPU), so the model is trained once per net and reused by every config with that net. A killed
pretraining resumes from its run's last snapshot; the model and its json appear whole or not at all
(the json last: it marks the entry done), and a second process asking for the same model waits for
the first.
"""
import collections
import fcntl
import hashlib
import json
import os
import shutil
import time

import numpy as np

from . import synth, templates, training
from .assets import cache_root
from .atomic import atomic_path
from .config import BLAS_THREADS, pretraining
from .datasets import is_gray
from .datasets.base import file_digest
from .executor import LocalExecutor
from .lmdb_io import LMDBWriter, image_batches, image_datum, record_key
from .tasks import Task

MODEL = "vggface_synth.caffemodel"
INFO = "vggface_synth.json"
# The files whose content decides the model's bytes, besides the settings.
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
CODE = [os.path.join(_PACKAGE, name) for name in ("synth.py", "pretrain.py", "training.py")] + [
    os.path.join(templates.TEMPLATE_DIR, name)
    for name in ("vgg16.j2", "train_val.prototxt.j2", "deploy.prototxt.j2", "solver.prototxt.j2")]

# model: the caffemodel's path; info: its json, as Info.
Pretrained = collections.namedtuple("Pretrained", "model info")
# vggface_synth.json: what the model is (recipe: what its bytes depend on), how many persons and
# faces, the top-1 identity accuracy on the held-out faces and chance (1 / identities), the
# iterations, the training run's directory, and the seconds spent drawing faces and training.
Info = collections.namedtuple("Info", "recipe identities train_images held_out_images identity_accuracy chance "
                                      "iterations run seconds")


def pretraining_config(config):
    """The config the pretraining run trains with: the config's net, with the pretraining's dropout,
    and the pretraining's solver."""
    settings = pretraining(config)
    return dict(config, net=dict(config["net"], dropout=settings["dropout"]), solver=settings["solver"])


def recipe(config):
    """Everything the model's bytes depend on, as JSON data: the generator (pretraining settings,
    image size, gray or colour, synth.py), the net, the solver, the BLAS thread count, the code."""
    settings, run_config = pretraining(config), pretraining_config(config)
    return {"generator": {"seed": settings["seed"], "identities": settings["identities"], "images": settings["images"],
                          "held_out": settings["held_out"], "size": config["net"]["input_size"],
                          "gray": is_gray(config["data"]["format"])},
            "net": run_config["net"], "solver": run_config["solver"],
            "blas_threads": config.get("blas_threads", BLAS_THREADS),
            "code": {os.path.relpath(path, os.path.dirname(_PACKAGE)): file_digest(path, "sha256") for path in CODE}}


def entry_dir(config):
    """The cache entry of a config's synthetic VGG-Face: pretrained/faces-<key of its recipe>."""
    key = hashlib.sha256(json.dumps(recipe(config), sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return os.path.join(cache_root(), "pretrained", "faces-" + key)


def read_pretrained(entry):
    """The Pretrained of a finished cache entry, or None."""
    path = os.path.join(entry, INFO)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return Pretrained(os.path.join(entry, MODEL), Info(**json.load(handle)))


def pretrained_model(config, executor=None, log=print):
    """The Pretrained of a config's synthetic VGG-Face: from the cache, or trained now (on
    ``executor``, default this machine) and cached."""
    entry = entry_dir(config)
    found = read_pretrained(entry)
    if found:
        return found
    os.makedirs(os.path.dirname(entry), exist_ok=True)
    with open(entry + ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another process is pretraining %s: waiting for it" % entry)
            fcntl.flock(lock, fcntl.LOCK_EX)
        return read_pretrained(entry) or _pretrain(config, entry, executor or LocalExecutor(log=log), log)


def _pretrain(config, entry, executor, log):
    settings, work = pretraining(config), os.path.join(entry, "work")
    net = config["net"]
    identities, images, held_out = settings["identities"], settings["images"], settings["held_out"]
    began = time.time()
    lmdbs = {"train": os.path.join(work, "train_lmdb"), "held_out": os.path.join(work, "held_out_lmdb")}
    missing = [part for part in lmdbs if not os.path.isdir(lmdbs[part])]
    if missing:
        log("drawing %d faces of %d synthetic persons (%d each, %d of them held out) into %s"
            % (identities * (images + held_out), identities, images + held_out, held_out, work))
        write_faces(lmdbs, settings, net["input_size"], is_gray(config["data"]["format"]), net["batch_size"], missing)
    drawn = time.time()
    run_config = pretraining_config(config)
    spec = training.make_spec("faces", lmdbs["train"], lmdbs["held_out"], settings["seed"], identities=identities)
    run_dir = training.prepare_run(os.path.join(work, "run"), run_config, spec)
    executor.run([Task("pretraining", run_dir, "pycaffe_fer.training", gpu=True, in_process=False)], "pretraining")
    trained = time.time()
    accuracy = held_out_accuracy(run_dir, lmdbs["held_out"], net)
    info = Info(recipe=recipe(config), identities=identities, train_images=identities * images,
                held_out_images=identities * held_out, identity_accuracy=accuracy, chance=1.0 / identities,
                iterations=int(settings["solver"]["max_iter"]), run=run_dir,
                seconds={"faces": round(drawn - began, 1), "training": round(trained - drawn, 1)})
    with atomic_path(os.path.join(entry, MODEL)) as tmp:
        shutil.copyfile(training.final_model(run_dir), tmp)
    with atomic_path(os.path.join(entry, INFO)) as tmp:
        with open(tmp, "w") as handle:
            json.dump(info._asdict(), handle, indent=2, sort_keys=True)
    log("synthetic VGG-Face: %s (identity accuracy %.2f%% on %d held-out faces of %d persons; chance %.2f%%)"
        % (os.path.join(entry, MODEL), 100 * accuracy, identities * held_out, identities, 100.0 / identities))
    return read_pretrained(entry)


def write_faces(lmdbs, settings, size, gray, batch_size, parts):
    """The image LMDBs of the pretraining set's ``parts``: "train" (images 0 .. images-1 of every
    person, shuffled, padded with its first records to whole batches) and "held_out" (the next
    held_out images of every person); each record's label is its person."""
    persons, images, held_out = range(settings["identities"]), settings["images"], settings["held_out"]
    numbers = {"train": range(images), "held_out": range(images, images + held_out)}
    with synth.drawing_pool() as pool:
        for part in parts:
            pairs = [(who, number) for who in persons for number in numbers[part]]
            if part == "train":     # shuffled, and whole batches: a resumed run finds its data position fast
                pairs = [pairs[i] for i in np.random.RandomState(settings["seed"]).permutation(len(pairs))]
                pairs += pairs[:(-len(pairs)) % batch_size]
            with LMDBWriter(lmdbs[part], force=True) as writer:
                for index, ((who, number), image) in enumerate(zip(pairs, synth.draw_portraits(
                        settings["seed"], pairs, size, gray, pool))):
                    if gray:              # the nets take 3 channels: gray replicated, as the expression LMDBs
                        image = np.repeat(image[:, :, None], 3, axis=2)
                    writer.put(record_key(index, "person%05d_%03d" % (who, number)), image_datum(image, who))
                writer.manifest = {"kind": "image", "source": "synthetic persons (pycaffe_fer.pretrain)",
                                   "part": part, "identities": len(persons), "shape": [3, size, size]}


def held_out_accuracy(run_dir, lmdb_path, net):
    """The finished run's top-1 identity accuracy on every record of the held-out LMDB."""
    import caffe

    from .ensemble import forward_scores

    caffe.set_mode_cpu()
    model = caffe.Net(os.path.join(run_dir, "deploy.prototxt"), caffe.TEST, weights=training.final_model(run_dir))
    (scores,), labels = forward_scores([model], image_batches(lmdb_path, int(net["test_batch_size"])),
                                       net["mean_value"], float(net["input_scale"]), templates.IDENTITY_CLASSIFIER)
    return float(np.mean(scores.argmax(axis=1) == labels))
