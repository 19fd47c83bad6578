"""Video and batch prediction on real files: a short video written by OpenCV from synthetic faces,
scored by the real onnxruntime and Caffe backends."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from pycaffe_fer import backends, faces, predict, synth
from pycaffe_fer.classes import CLASSES
from ensemble_fixtures import random_ensemble
from helpers import REPO

FPS, FRAMES, FACE = 10.0, 30, 120


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 30-frame 320 x 240 MP4 at 10 frames/s of one synthetic face moving (its box in each
    frame), and an ensemble."""
    root = tmp_path_factory.mktemp("video")
    path = str(root / "clip.mp4")
    boxes = synth.write_video(path, FRAMES, FPS, (320, 240), FACE)
    assert sorted(os.listdir(str(root))) == ["clip.mp4"]
    return path, boxes, random_ensemble(str(root / "run"), members=2)


def run_predict(*args):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "predict.py")] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          env=dict(os.environ, GLOG_minloglevel="2"))
    return proc


def test_every_kth_frame_gives_frame_time_box_label_and_probabilities_and_an_annotated_video(video, tmp_path):
    path, boxes, run_root = video
    annotated = str(tmp_path / "labelled.mp4")
    proc = run_predict("--ensemble", run_root, "--backend", "onnx", path, "--every", "3", "--annotate", annotated,
                       "--format", "json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    frames = [r["frame"] for r in results]
    assert set(frames) <= set(range(0, FRAMES, 3)) and len(set(frames)) >= 6     # the face is found in most
    for r in results:
        assert r["image"] == path and r["time"] == pytest.approx(r["frame"] / FPS, abs=1e-3)
        assert r["face"] == 0 and 0.5 <= r["confidence"] <= 1          # one face, found by the ssd detector
        assert r["label"] in CLASSES and abs(sum(r["probabilities"].values()) - 1) < 1e-4
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
        x, y, w, h = r["box"]                             # holds the pasted face, margin included
        face_x, face_y, side = boxes[r["frame"]]
        assert x <= face_x + 15 and x + w >= face_x + side - 15 and y <= face_y + 15 and y + h >= face_y + side - 15
        assert x + w <= 320 and y + h <= 240
    # The same faces through pycaffe: the same labels and probabilities.
    caffe_results = json.loads(run_predict("--ensemble", run_root, "--backend", "caffe", path, "--every", "3",
                                           "--format", "json").stdout)
    assert [(r["frame"], r["box"], r["label"]) for r in caffe_results] == [(r["frame"], r["box"], r["label"]) for r in results]
    for mine, theirs in zip(results, caffe_results):
        np.testing.assert_allclose(list(mine["probabilities"].values()), list(theirs["probabilities"].values()), atol=1e-5)
    # Every frame is written, each with the box of the last sampled frame drawn in green.
    capture = cv2.VideoCapture(annotated)
    written = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        written.append(frame)
    assert len(written) == FRAMES and written[0].shape == (240, 320, 3)
    first = results[0]
    x, y, w, h = first["box"]
    edge = written[first["frame"]][y, x + 5:x + w - 5].astype(int)
    assert edge[:, 1].mean() > 180 and edge[:, 0].mean() < 90 and edge[:, 2].mean() < 90
    assert sorted(os.listdir(str(tmp_path))) == ["labelled.mp4"]            # no temporary left


def test_csv_rows_of_a_video_carry_frame_time_and_box(video):
    path, _, run_root = video
    proc = run_predict("--ensemble", run_root, "--backend", "opencv", path, "--every", "10", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "image,frame,time,face,x,y,w,h,confidence,label," + ",".join(CLASSES)
    rows = [line.split(",") for line in lines[1:]]
    assert rows and [row[1] for row in rows] == [str(f) for f in sorted({int(row[1]) for row in rows})]
    assert all(int(row[1]) % 10 == 0 and float(row[2]) == int(row[1]) / FPS and row[3] == "0" and
               0.5 <= float(row[8]) <= 1 and row[9] in CLASSES for row in rows)


class CountingBackend:
    """A real backend whose net calls are counted."""

    def __init__(self, backend):
        self.backend, self.calls = backend, []
        self.input_size, self.grayscale = backend.input_size, backend.grayscale

    def run(self, faces):
        self.calls.append(len(faces))
        return self.backend.run(faces)


def test_faces_are_scored_a_batch_at_a_time(video, tmp_path):
    path, _, run_root = video
    backend = CountingBackend(backends.open_backend("onnx", run_root))
    images = []
    for index in range(10):
        images.append(str(tmp_path / ("face%d.png" % index)))
        cv2.imwrite(images[-1], synth.render(np.random.default_rng(index), np.eye(7)[index % 7], 64, False))
    results = predict.predict(backend, images, batch_size=4)                 # face crops: no detector
    assert [r["image"] for r in results] == images and backend.calls == [4, 4, 2]
    backend.calls = []
    results = predict.predict(backend, [path], detector=faces.open_detector("ssd"), batch_size=8)
    assert sum(backend.calls) == len(results) >= 12 and max(backend.calls) == 8
    assert len(backend.calls) == -(-len(results) // 8)                # full batches, then the rest


def test_a_file_that_is_neither_image_nor_video_fails_in_one_line(video, tmp_path):
    _, _, run_root = video
    bad = tmp_path / "notes.txt"
    bad.write_text("not a video\n")
    message = "%s: not a readable image or video" % bad
    proc = run_predict("--ensemble", run_root, "--backend", "onnx", str(bad), "--format", "json")
    assert proc.returncode == 1                                   # an input failed; not a usage error
    assert proc.stderr.strip() == "error: " + message and json.loads(proc.stdout) == [{"image": str(bad), "error": message}]
    proc = run_predict("--ensemble", run_root, "--backend", "onnx", str(bad), "--strict")
    assert proc.returncode == 2 and proc.stderr.strip() == "error: " + message and proc.stdout == ""
    proc = run_predict("--ensemble", run_root, str(bad), str(bad), "--annotate", str(tmp_path / "out.mp4"))
    assert proc.returncode == 2 and "--annotate writes one image or video" in proc.stderr
