#!/usr/bin/env python3
"""Run the paper's pipeline for one experiment config, from dataset files to report.md.

    tools/run_experiment.py --config configs/demo.yaml
    tools/run_experiment.py --config configs/fer2013.yaml --data PATH/fer2013.csv \\
        --weights VGG_FACE.caffemodel --gpu 0

Every stage skips what an earlier call finished and resumes interrupted training runs.
"""
import argparse
import os
import sys

# Caffe logs every layer it builds; only warnings and errors interest a pipeline user. glog reads
# this when libcaffe loads, so before anything imports caffe.
os.environ.setdefault("GLOG_minloglevel", "2")

from pycaffe_fer.config import load_config
from pycaffe_fer.errors import run_cli
from pycaffe_fer.pipeline import Experiment
from pycaffe_fer.tasks import TaskFailed


def parse_gpus(text):
    return [int(g) for g in text.split(",") if g.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a configs/*.yaml file or preset name (fer2013, raf, sfew, demo)")
    parser.add_argument("--data", help="the dataset file or folder (default: the config's synthetic set)")
    parser.add_argument("--weights", help="initial weights, e.g. VGG_FACE.caffemodel (copied by layer name)")
    parser.add_argument("--out", help="experiment directory (default: runs/<config name>)")
    device = parser.add_mutually_exclusive_group()
    device.add_argument("--gpu", type=int, help="train and evaluate on this GPU (default: CPU)")
    device.add_argument("--gpus", type=parse_gpus, help="comma-separated GPU ids, handed to runs in turn")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set solver.max_iter=100 (repeatable)")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.set)
    gpus = [args.gpu] if args.gpu is not None else args.gpus
    experiment = Experiment(config, args.out or os.path.join("runs", config["name"]), data=args.data,
                            weights=args.weights, gpus=gpus, jobs=max(1, args.jobs))
    try:
        experiment.run()
    except TaskFailed as error:
        print("error: %s" % error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
