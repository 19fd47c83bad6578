"""The image LMDB of one dataset split, described by a recipe that a task directory holds, so that
the build can run anywhere (``python -m pycaffe_fer.splits DIRECTORY``).

A recipe (build.json): the LMDB to write, the source file or folder, its format and split, the
image size and shuffling seed; ``mirror`` adds each image's mirror copy, ``holdout`` {fraction,
seed, part: kept | held} keeps one side of a stratified split, ``pad_to`` repeats the first records
up to a whole number of batches (training sets: a resumed run then finds its data position fast),
``detect`` names the face detector that crops each image to its largest face (or is None).
"""
import json
import os
import sys

from .atomic import atomic_path
from .datasets import open_dataset, stratified_split, with_mirror_copies
from .errors import InputError, run_cli
from .lmdb_build import build_image_lmdb
from .lmdb_io import read_manifest
from .tasks import task_main

RECIPE_FILE = "build.json"


def recipe(out, source, fmt, split, size, seed, pad_to=None, mirror=False, holdout=None, detect=None):
    return {"out": os.path.abspath(out), "source": os.path.abspath(source), "format": fmt, "split": split,
            "size": int(size), "seed": int(seed), "pad_to": pad_to, "mirror": bool(mirror), "holdout": holdout,
            "detect": detect}


def check_existing(lmdb_path, source, size, detect=None):
    """An LMDB already there must come from this source at this size, cropped by this detector."""
    manifest = read_manifest(lmdb_path)
    built_with = (manifest.get("face_detector") or {}).get("detector")
    if built_with != detect:
        raise InputError("%s was built with face detector %s, not %s (data.detect): remove it or use another "
                         "output directory" % (lmdb_path, built_with, detect))
    if manifest["source"] != source or manifest["shape"][1:] != [size, size]:
        raise InputError("%s was built from %s at %s, not from %s at %dx%d: remove it or use another "
                         "output directory" % (lmdb_path, manifest["source"], "x".join(map(str, manifest["shape"][1:])),
                                                source, size, size))


def dataset_of(build):
    """The Dataset a recipe describes (the source is read here)."""
    dataset = open_dataset(build["source"], build["split"], build["format"])
    if build["mirror"]:
        dataset = with_mirror_copies(dataset)
    if build["holdout"]:
        kept, held = stratified_split(dataset, float(build["holdout"]["fraction"]), int(build["holdout"]["seed"]))
        dataset = kept if build["holdout"]["part"] == "kept" else held
    samples = list(dataset)
    batch = build["pad_to"]
    if batch and len(samples) % batch:
        extra = batch - len(samples) % batch
        dataset = dataset.derive(samples + samples[:extra], padded_with_repeats=extra)
    return dataset


def prepare_build(directory, build):
    os.makedirs(directory, exist_ok=True)
    with atomic_path(os.path.join(directory, RECIPE_FILE)) as tmp:
        with open(tmp, "w") as handle:
            json.dump(build, handle, indent=2, sort_keys=True)
    return directory


def read_recipe(directory):
    with open(os.path.join(directory, RECIPE_FILE)) as handle:
        return json.load(handle)


def run_task(directory, gpu=None, log=print):
    build = read_recipe(directory)
    build_image_lmdb(dataset_of(build), build["out"], size=build["size"], seed=build["seed"],
                     progress=sys.stderr.isatty(), detect=build.get("detect"))


def task_done(directory):
    return os.path.isdir(read_recipe(directory)["out"])


if __name__ == "__main__":
    sys.exit(run_cli(lambda argv: task_main(run_task, "Build the image LMDB of a build directory's recipe.", argv)))
