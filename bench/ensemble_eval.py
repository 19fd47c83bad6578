#!/usr/bin/env python3
"""Evaluating N nets as an ensemble against N separate evaluations of one net each.

    .venv/bin/python bench/ensemble_eval.py [--nets 6] [--images 480] [--repeat 3] [--size 224] [--full]

The ensemble path (pycaffe_fer.scoring.scores_on, as the evaluation stage and predict.py use it)
reads and decodes each test image once and forwards the batch through all N nets; the baseline
scores the same LMDB N times, one net at a time, as N separate evaluations would. Both in one run,
alternating which goes first, best of --repeat; prints seconds of each, their ratio (which must be
at most 1.0) and the time of reading and preprocessing the images once, which is what sharing saves
N - 1 times. The nets have random weights: VGG16 of the demo's width (x0.125, fc 128) at --size,
224 by default as the paper's LMDBs, or with --full the paper's VGG16 (far slower on a CPU).
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("GLOG_minloglevel", "2")   # before caffe loads glog: keep the output to the figures

import caffe  # noqa: E402
import numpy as np  # noqa: E402

from pycaffe_fer import paths  # noqa: E402
from pycaffe_fer.config import load_config  # noqa: E402
from pycaffe_fer.errors import run_cli  # noqa: E402
from pycaffe_fer.ensemble import preprocess  # noqa: E402
from pycaffe_fer.lmdb_io import LMDBWriter, image_batches, image_datum, record_key  # noqa: E402
from pycaffe_fer.scoring import scores_on  # noqa: E402
from pycaffe_fer.templates import render_deploy, write_prototxt  # noqa: E402

SMALL_KNOBS = ["net.width=0.125", "net.fc_width=128", "net.input_scale=0.0078125"]


def make_members(root, config, count):
    """`count` deploy nets with different random weights, saved as caffemodels."""
    deploy = write_prototxt(os.path.join(root, "deploy.prototxt"), render_deploy(config), "net")
    members = []
    for index in range(count):
        caffe.set_random_seed(index)
        net = caffe.Net(deploy, caffe.TEST)
        model = os.path.join(root, "net%d.caffemodel" % index)
        net.save(model)
        members.append({"deploy": deploy, "model": model})
    return members


def make_lmdb(root, size, count):
    path = paths.image_lmdb(root, "test")
    rng = np.random.RandomState(0)
    with LMDBWriter(path) as writer:
        for i in range(count):
            writer.put(record_key(i, "r"), image_datum(rng.randint(0, 256, (size, size, 3)), i % 7))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", type=int, default=6)
    parser.add_argument("--images", type=int, default=480)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", type=int, default=224, help="input size of the small nets")
    parser.add_argument("--full", action="store_true", help="full-size VGG16 at 224 x 224")
    args = parser.parse_args(argv)
    caffe.set_mode_cpu()
    config = load_config("fer2013", [] if args.full else SMALL_KNOBS + ["net.input_size=%d" % args.size])
    root = tempfile.mkdtemp(prefix="ensemble_eval_")
    try:
        members = make_members(root, config, args.nets)
        lmdb = make_lmdb(root, config["net"]["input_size"], args.images)
        net = config["net"]
        times = {"ensemble": [], "separate": [], "decode": []}
        for repeat in range(args.repeat):
            for path in (("ensemble", "separate") if repeat % 2 == 0 else ("separate", "ensemble")):
                start = time.time()
                if path == "ensemble":
                    together, _ = scores_on(lmdb, members, net)
                else:
                    alone = [scores_on(lmdb, [member], net)[0][0] for member in members]
                times[path].append(time.time() - start)
            start = time.time()
            for images, _ in image_batches(lmdb, int(net["test_batch_size"])):
                preprocess(images, net["mean_value"], net["input_scale"])
            times["decode"].append(time.time() - start)
            for a, b in zip(together, alone):
                assert np.array_equal(a, b), "the ensemble path must give each net's own scores"
        ensemble, separate, decode = (min(times[k]) for k in ("ensemble", "separate", "decode"))
        print("%d nets (%s), %d images of %dx%d, best of %d" % (
            args.nets, "VGG16" if args.full else "small VGG16", args.images, config["net"]["input_size"],
            config["net"]["input_size"], args.repeat))
        print("ensemble, decode shared:   %7.2f s" % ensemble)
        print("N separate evaluations:    %7.2f s" % separate)
        print("ratio ensemble / separate: %7.3f  (target: at most 1.0)" % (ensemble / separate))
        print("reading + preprocessing the images once: %.2f s (shared: saved %d times)" % (decode, args.nets - 1))
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    sys.exit(run_cli(main))
