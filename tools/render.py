#!/usr/bin/env python3
"""Render a preset's nets and solvers into generated/ for running Caffe by hand.

    .venv/bin/python tools/render.py --preset fer2013 --gamma 1.4
    .venv/bin/caffe train -solver generated/solver_g1.4.prototxt -weights VGG_FACE.caffemodel

writes train_val_g<gamma>/solver_g<gamma> per gamma (the KL head), train_val_hard/solver_hard (the
soft-label constructor, SoftmaxWithLoss) and deploy.prototxt. Paths inside the files are written as
given (relative ones as they are), so run this and Caffe from the repository root.
"""
import argparse
import sys

from pycaffe_fer.config import load_config
from pycaffe_fer.errors import run_cli
from pycaffe_fer.templates import render_generated

# Command-line knobs that are shorthands for config overrides.
_KNOBS = (("input_size", "net.input_size"), ("width", "net.width"), ("fc_width", "net.fc_width"),
          ("input_scale", "net.input_scale"), ("seed", "solver.random_seed"))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", required=True, help="fer2013, raf, sfew, or a config YAML file")
    parser.add_argument("--gamma", type=float, action="append",
                        help="perturbation factor of a base classifier (repeatable; default: the "
                             "config's ensemble.gammas)")
    parser.add_argument("--out", default="generated", help="output directory (default: generated)")
    parser.add_argument("--train-split", help="split to train on (default: the config's ensemble.train)")
    parser.add_argument("--val-split", help="split the TEST phase reads (default: the config's ensemble.test)")
    parser.add_argument("--train-lmdb", help="image LMDB to train on (default: <data.lmdb_dir>/<split>_lmdb)")
    parser.add_argument("--val-lmdb", help="image LMDB of the TEST phase")
    parser.add_argument("--train-soft-lmdb", help="soft-label LMDB to train on, {gamma} standing for the gamma "
                                                  "(default: <data.lmdb_dir>/<split>_lmdb_soft_g{gamma})")
    parser.add_argument("--val-soft-lmdb", help="soft-label LMDB of the TEST phase, with {gamma}")
    parser.add_argument("--input-size", type=int, help="input height and width (net.input_size; paper: 224)")
    parser.add_argument("--width", type=float, help="multiplier of the conv widths (net.width; paper: 1)")
    parser.add_argument("--fc-width", type=int, help="width of fc6 and fc7 (net.fc_width; paper: 4096)")
    parser.add_argument("--input-scale", type=float,
                        help="pixel scale after mean subtraction (net.input_scale; VGG-Face: 1)")
    parser.add_argument("--gpu", type=int, metavar="ID", help="solver_mode GPU on this device (default: CPU)")
    parser.add_argument("--snapshot-prefix", help="snapshot prefix, {run} standing for hard or g<gamma> "
                                                  "(default: <out>/snapshots/<config name>_{run})")
    parser.add_argument("--seed", type=int, help="solver random_seed (solver.random_seed)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. solver.max_iter=100 (repeatable, applied last)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    overrides = ["%s=%s" % (key, getattr(args, option)) for option, key in _KNOBS
                 if getattr(args, option) is not None]
    config = load_config(args.preset, overrides + args.set)
    ensemble = config.get("ensemble", {})
    lmdbs = {"train": args.train_lmdb, "val": args.val_lmdb,
             "train_soft": args.train_soft_lmdb, "val_soft": args.val_soft_lmdb}
    written = render_generated(
        config, args.gamma if args.gamma else ensemble.get("gammas", []), args.out,
        args.train_split or ensemble.get("train", "train"), args.val_split or ensemble.get("test", "test"),
        lmdbs=lmdbs, snapshot_prefix=args.snapshot_prefix,
        solver_mode="CPU" if args.gpu is None else "GPU", device_id=args.gpu or 0)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
