#!/usr/bin/env python3
"""Label face images with a trained ensemble: one line per image with its path, label and the
7 probabilities (AN DI FE HA SA SU NE).

    tools/predict.py --ensemble runs/demo photo.jpg faces/
"""
import argparse
import csv
import json
import os
import sys

# Caffe logs every layer it builds; only warnings and errors interest a pipeline user. glog reads
# this when libcaffe loads, so before anything imports caffe.
os.environ.setdefault("GLOG_minloglevel", "2")

from pycaffe_fer.classes import CLASSES
from pycaffe_fer.errors import run_cli
from pycaffe_fer.predict import predict


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ensemble", required=True, metavar="RUNDIR", help="an experiment directory (runs/demo)")
    parser.add_argument("images", nargs="+", metavar="IMAGE|FOLDER")
    parser.add_argument("--format", choices=("text", "csv", "json"), default="text")
    parser.add_argument("--no-detect", action="store_true", help="the images are face crops: do not look for faces")
    parser.add_argument("--gpu", type=int, help="GPU id (default: CPU)")
    args = parser.parse_args(argv)
    results = predict(args.ensemble, args.images, detect=not args.no_detect, gpu=args.gpu)
    if args.format == "json":
        json.dump([{"image": path, "label": label, "probabilities": dict(zip(CLASSES, map(float, p)))}
                   for path, label, p in results], sys.stdout, indent=2)
        print()
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["image", "label"] + list(CLASSES))
        for path, label, p in results:
            writer.writerow([path, label] + ["%.4f" % v for v in p])
    else:
        for path, label, p in results:
            print("%s %s %s" % (path, label, " ".join("%s=%.4f" % kv for kv in zip(CLASSES, p))))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
