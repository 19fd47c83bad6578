#!/usr/bin/env python3
"""Label face images and videos with a trained ensemble: one line per face of each image (of each
sampled video frame) with its path, box, label and the 7 probabilities (AN DI FE HA SA SU NE).

    tools/predict.py --ensemble runs/demo photo.jpg faces/
    tools/predict.py --ensemble runs/demo group.jpg --annotate group_labelled.jpg
    tools/predict.py --ensemble runs/demo --backend opencv clip.mp4 --every 5 --annotate clip_labelled.mp4
    tools/predict.py --onnx runs/demo/ensemble.onnx photo.jpg          # no Caffe needed

Exit status: 0 when every input was predicted; 1 when some failed (each an `error:` line on stderr
and, in JSON/CSV, a record with `error`); 2 for a usage error, or at the first failure with --strict.
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
from pycaffe_fer.faces import DETECTORS, open_detector
from pycaffe_fer.predict import FACES, predict

# Where a result is, in output order: the video frame, then the face on the image or frame.
PLACE_FIELDS = ("frame", "time", "face", "box", "confidence")


def json_record(result):
    record = {k: result[k] for k in ("image",) + PLACE_FIELDS if k in result}
    if "error" in result:
        record["error"] = result["error"]
    else:
        record.update(label=result["label"], probabilities=dict(zip(CLASSES, map(float, result["probabilities"]))))
    return record


def write_csv(results, out):
    columns = {marker: any(marker in r for r in results) for marker in ("frame", "face", "box", "error")}
    writer = csv.writer(out)
    writer.writerow(["image"] + (["frame", "time"] if columns["frame"] else []) +
                    (["face"] if columns["face"] else []) + (["x", "y", "w", "h"] if columns["box"] else []) +
                    (["confidence"] if columns["face"] else []) + ["label"] + list(CLASSES) +
                    (["error"] if columns["error"] else []))
    for r in results:
        row = [r["image"]]
        if columns["frame"]:
            row += [r["frame"], r["time"]] if "frame" in r else ["", ""]
        if columns["face"]:
            row.append(r.get("face", ""))
        if columns["box"]:
            row += r["box"] if "box" in r else [""] * 4
        if columns["face"]:
            row.append("" if r.get("confidence") is None else r["confidence"])
        row += [r["label"]] + ["%.4f" % v for v in r["probabilities"]] if "label" in r else [""] * (1 + len(CLASSES))
        if columns["error"]:
            row.append(r.get("error", ""))
        writer.writerow(row)


def text_line(r):
    where = " frame=%d time=%.3f" % (r["frame"], r["time"]) if "frame" in r else ""
    if "face" in r:
        where += " face=%d" % r["face"]
    if "box" in r:
        where += " box=%s" % ",".join(map(str, r["box"]))
    if r.get("confidence") is not None:
        where += " confidence=%.3f" % r["confidence"]
    return "%s%s %s %s" % (r["image"], where, r["label"], " ".join("%s=%.4f" % kv for kv in zip(CLASSES, r["probabilities"])))


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
    parser.add_argument("--detector", choices=DETECTORS, default="ssd",
                        help="face detector: ssd (OpenCV's res10 SSD, the default) or haar (OpenCV's cascade)")
    parser.add_argument("--min-confidence", type=float, default=0.5, help="ssd: lowest face confidence (default 0.5)")
    parser.add_argument("--min-face", type=int, default=24, metavar="PIXELS", help="smallest face side (default 24)")
    parser.add_argument("--faces", choices=FACES, default="all", help="every face of an image or frame, or the largest")
    parser.add_argument("--every", type=int, default=1, metavar="K", help="videos: score every K-th frame (default 1)")
    parser.add_argument("--annotate", metavar="OUT", help="write the (one) image or video with face boxes and labels")
    parser.add_argument("--strict", action="store_true", help="stop at the first input that fails (exit status 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="faces per net call (default 32)")
    parser.add_argument("--gpu", type=int, help="GPU id (default: CPU)")
    args = parser.parse_args(argv)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    backend = open_backend(args.backend, args.ensemble, args.onnx, args.gpu, log=log)
    detector = None if args.no_detect else open_detector(args.detector, args.min_confidence, args.min_face, log)
    results = predict(backend, args.inputs, detector=detector, faces=args.faces, batch_size=args.batch_size,
                      every=args.every, annotate=args.annotate, strict=args.strict,
                      on_error=lambda message: log("error: %s" % message))
    if args.format == "json":
        json.dump([json_record(r) for r in results], sys.stdout, indent=2)
        print()
    elif args.format == "csv":
        write_csv(results, sys.stdout)
    else:
        for r in results:
            if "label" in r:
                print(text_line(r))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
