#!/usr/bin/env python3
"""Prediction throughput of the three backends against pycaffe's, in one run.

    .venv/bin/python bench/predict_backends.py [--ensemble runs/demo] [--images 500] [--frames 300] [--repeat 3]

The same --images face crops (synthetic faces written as PNG files, predicted with --no-detect)
and the same --frames-frame 640 x 480 video (a synthetic face moving, faces found by the default
ssd detector in every frame) go through tools/predict.py's path (pycaffe_fer.predict) on each backend:
caffe (pycaffe), opencv (OpenCV DNN on the Caffe files) and onnx (onnxruntime on ensemble.onnx,
exported first if needed). Prints images/s, frames/s, the nets alone on the crops (images/s of
backend.run), each as a ratio to pycaffe, and the largest difference of fused scores from
pycaffe's (share of each image's largest score) with whether every label agrees.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("GLOG_minloglevel", "2")   # before caffe loads glog: keep the output to the figures

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pycaffe_fer import backends, faces, predict, synth  # noqa: E402
from pycaffe_fer.errors import run_cli  # noqa: E402


def write_crops(root, count):
    paths = []
    for index in range(count):
        paths.append(os.path.join(root, "face%04d.png" % index))
        cv2.imwrite(paths[-1], synth.render(np.random.default_rng(index), np.eye(7)[index % 7], 96, False))
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ensemble", default="runs/demo", metavar="RUNDIR")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs, each backend first in turn")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="predict_backends_")
    try:
        crops = write_crops(root, args.images)
        video = os.path.join(root, "clip.mp4")
        synth.write_video(video, args.frames)
        names = ("caffe", "opencv", "onnx")
        detector = faces.open_detector("ssd")
        opened, load = {}, {}
        for name in names:
            start = time.time()
            opened[name] = backends.open_backend(name, args.ensemble)
            load[name] = time.time() - start
        times = {name: {"images": [], "nets": [], "video": []} for name in names}
        scores, found = {}, {}
        for repeat in range(args.repeat):
            for name in names[repeat % 3:] + names[:repeat % 3]:      # each backend first in turn
                backend = opened[name]
                start = time.time()
                predict.predict_images(backend, crops, batch_size=args.batch_size)
                times[name]["images"].append(time.time() - start)
                batch = np.stack([predict.net_input(cv2.imread(p), backend.input_size, backend.grayscale) for p in crops])
                start = time.time()
                scores[name] = np.concatenate([backend.run(batch[b:b + args.batch_size])[0]
                                               for b in range(0, len(batch), args.batch_size)])
                times[name]["nets"].append(time.time() - start)
                start = time.time()
                found[name] = len(predict.predict_video(backend, video, detector, batch_size=args.batch_size))
                times[name]["video"].append(time.time() - start)
        figures = {name: (load[name], args.images / min(times[name]["images"]), args.images / min(times[name]["nets"]),
                          args.frames / min(times[name]["video"]), found[name]) for name in names}
        print("%s: %d face crops, a %d-frame 640x480 video, batch %d, best of %d" % (
            args.ensemble, args.images, args.frames, args.batch_size, args.repeat))
        print("%-7s %7s %10s %7s %10s %7s %10s %7s %6s %11s %s" % ("backend", "load s", "images/s", "ratio", "nets img/s",
                                                                   "ratio", "frames/s", "ratio", "faces", "max diff", "labels"))
        base = figures["caffe"]
        for name, (load, image_rate, net_rate, frame_rate, count) in figures.items():
            reference = scores["caffe"]
            diff = (np.abs(scores[name] - reference) / np.abs(reference).max(axis=1, keepdims=True)).max()
            same = (scores[name].argmax(axis=1) == reference.argmax(axis=1)).all()
            print("%-7s %7.2f %10.1f %7.2f %10.1f %7.2f %10.1f %7.2f %6d %11.2g %s" % (
                name, load, image_rate, image_rate / base[1], net_rate, net_rate / base[2], frame_rate,
                frame_rate / base[3], count, diff, "same" if same else "DIFFER"))
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    sys.exit(run_cli(main))
