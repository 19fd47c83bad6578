#!/usr/bin/env python3
"""Label face images and videos with a trained ensemble: one line per image (per face of each
sampled video frame) with its path, label and the 7 probabilities (AN DI FE HA SA SU NE).

    tools/predict.py --ensemble runs/demo photo.jpg faces/
    tools/predict.py --ensemble runs/demo --backend opencv clip.mp4 --every 5 --annotate clip_labelled.mp4
    tools/predict.py --onnx runs/demo/ensemble.onnx photo.jpg          # no Caffe needed
"""
import argparse
import csv
import json
import os
import sys

# Caffe logs every layer it builds; only warnings and errors interest a pipeline user. glog reads
# this when libcaffe loads, so before anything imports caffe.
os.environ.setdefault("GLOG_minloglevel", "2")

from pycaffe_fer.backends import BACKENDS, open_backend
from pycaffe_fer.classes import CLASSES
from pycaffe_fer.errors import run_cli
from pycaffe_fer.predict import predict

VIDEO_FIELDS = ("frame", "time", "box")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ensemble", metavar="RUNDIR", help="an experiment directory (runs/demo)")
    source.add_argument("--onnx", metavar="FILE.onnx", help="a graph written by tools/export_onnx.py")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE|FOLDER|VIDEO")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="how to run the nets (default: the fastest available, in the order %s)" % ", ".join(BACKENDS))
    parser.add_argument("--format", choices=("text", "csv", "json"), default="text")
    parser.add_argument("--no-detect", action="store_true", help="the images are face crops: do not look for faces")
    parser.add_argument("--every", type=int, default=1, metavar="K", help="videos: score every K-th frame (default 1)")
    parser.add_argument("--annotate", metavar="OUT.mp4", help="write the (one) video with face boxes and labels")
    parser.add_argument("--batch-size", type=int, default=32, help="faces per net call (default 32)")
    parser.add_argument("--gpu", type=int, help="GPU id (default: CPU)")
    args = parser.parse_args(argv)
    backend = open_backend(args.backend, args.ensemble, args.onnx, args.gpu, log=lambda line: print(line, file=sys.stderr))
    results = predict(backend, args.inputs, detect=not args.no_detect, batch_size=args.batch_size,
                      every=args.every, annotate=args.annotate)
    video = any("frame" in r for r in results)
    if args.format == "json":
        json.dump([dict({"image": r["image"], "label": r["label"],
                         "probabilities": dict(zip(CLASSES, map(float, r["probabilities"])))},
                        **{k: r[k] for k in VIDEO_FIELDS if k in r}) for r in results], sys.stdout, indent=2)
        print()
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["image"] + (["frame", "time", "x", "y", "w", "h"] if video else []) + ["label"] + list(CLASSES))
        for r in results:
            where = ([r["frame"], r["time"]] + r["box"] if "frame" in r else [""] * 6) if video else []
            writer.writerow([r["image"]] + where + [r["label"]] + ["%.4f" % v for v in r["probabilities"]])
    else:
        for r in results:
            where = " frame=%d time=%.3f box=%s" % (r["frame"], r["time"], ",".join(map(str, r["box"]))) if "frame" in r else ""
            print("%s%s %s %s" % (r["image"], where, r["label"], " ".join("%s=%.4f" % kv for kv in zip(CLASSES, r["probabilities"]))))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
