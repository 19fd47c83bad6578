"""The embedded synthetic set: exact formats, determinism, speed, and mixtures that carry the confusions."""
import filecmp
import os
import subprocess
import sys
import time

import cv2
import numpy as np

from pycaffe_fer.classes import CLASSES, NUM_CLASSES
from pycaffe_fer.datasets.raf import RAF_TO_CANONICAL
from pycaffe_fer.synth import (CANVAS, SFEW_FOLDERS, _STREAMS, draw_face, draw_portraits, expression_of, expression_person,
                               portrait_person, read_mixtures, sample_mixture, true_soft_labels, true_soft_labels_of,
                               write_synthetic_set)
from dataset_fixtures import SMALL, read_csv, synth  # noqa: F401 (synth: a fixture)
from helpers import REPO


def all_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def test_fer2013_csv_is_in_the_fer2013_format(synth):
    with open(synth / "fer2013.csv") as handle:
        lines = handle.read().split("\n")
    assert lines[0] == "emotion,pixels,Usage" and lines[-1] == ""
    rows = read_csv(synth / "fer2013.csv")[1:]
    usages = [row[2] for row in rows]
    # Training rows first, then PublicTest, then PrivateTest, as in the original file.
    assert usages == ["Training"] * SMALL["train"] + ["PublicTest"] * SMALL["val"] + ["PrivateTest"] * SMALL["test"]
    keys, labels, mixtures = read_mixtures(synth / "fer2013_mixtures.csv")
    assert keys == ["fer%07d" % i for i in range(len(rows))]
    for line, (emotion, pixels, _), label, mixture in zip(lines[1:], rows, labels, mixtures):
        assert line.startswith('%s,"' % emotion)   # the pixels field is quoted
        values = [int(v) for v in pixels.split(" ")]
        assert len(values) == 48 * 48 and 0 <= min(values) and max(values) <= 255
        assert int(emotion) == label and mixture[label] > 0   # a vote for an expression in the face
    assert np.allclose(mixtures.sum(axis=1), 1, atol=1e-5)
    # Mostly the dominant expression, but not always: labels are as ambiguous as the faces.
    agreement = np.mean(labels == mixtures.argmax(axis=1))
    assert 0.5 < agreement < 0.9
    assert set(int(row[0]) for row in rows[:SMALL["train"]]) == set(range(NUM_CLASSES))


def test_faces_vary_and_are_not_blank(synth):
    rows = read_csv(synth / "fer2013.csv")[1:]
    images = np.array([[int(v) for v in row[1].split()] for row in rows[:50]], dtype=np.float64)
    assert images.std(axis=1).min() > 10                     # every face has contrast
    assert np.abs(np.diff(images, axis=0)).mean() > 10       # consecutive faces differ


def test_raf_and_sfew_layouts(synth):
    basic = synth / "raf" / "basic"
    lines = (basic / "EmoLabel" / "list_patition_label.txt").read_text().splitlines()
    keys, labels, _ = read_mixtures(synth / "raf_mixtures.csv")
    truth = dict(zip(keys, labels))
    assert len(lines) == len(keys) == 14 + 7
    for line in lines:
        name, raf_label = line.split()
        stem = name[:-len(".jpg")]
        split, digits = stem.split("_")
        assert len(digits) == {"train": 5, "test": 4}[split]
        assert RAF_TO_CANONICAL[int(raf_label) - 1] == truth[stem]
        aligned = cv2.imread(str(basic / "Image" / "aligned" / (stem + "_aligned.jpg")), cv2.IMREAD_UNCHANGED)
        assert aligned.shape == (100, 100, 3)
        assert (basic / "Image" / "original" / name).is_file()
    keys, labels, _ = read_mixtures(synth / "sfew_mixtures.csv", "val")
    assert len(keys) == 7
    for key, label in zip(keys, labels):
        folder, stem = key.split("/")
        assert folder == SFEW_FOLDERS[label]
        image = cv2.imread(str(synth / "sfew" / "Val" / "Val_Aligned_Faces" / folder / (stem + ".png")))
        assert image.shape == (100, 100, 3)


def test_ferplus_votes_follow_the_mixtures(synth):
    rows = read_csv(synth / "fer2013new.csv")
    assert rows[0] == ["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                       "fear", "contempt", "unknown", "NF"]
    fer_rows = read_csv(synth / "fer2013.csv")[1:]
    assert [r[0] for r in rows[1:]] == [r[2] for r in fer_rows]
    for index, row in enumerate(rows[1:]):
        votes = [int(v) for v in row[2:]]
        if row[1]:
            assert row[1] == "fer%07d.png" % index and sum(votes[:-1]) == 10 and votes[-1] == 0
        else:
            assert votes == [0] * 9 + [10]   # not a face


def test_same_seed_same_bytes_other_seed_other_faces(tmp_path):
    sizes = {"train": 21, "val": 7, "test": 7}
    write_synthetic_set(str(tmp_path / "a"), seed=3, workers=1, **sizes)
    write_synthetic_set(str(tmp_path / "b"), seed=3, workers=2, **sizes)   # parallel drawing, same bytes
    write_synthetic_set(str(tmp_path / "c"), seed=4, workers=1, **sizes)
    files = all_files(tmp_path / "a")
    assert files == all_files(tmp_path / "b") and len(files) > 30
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert mismatch == [] and errors == []
    assert (tmp_path / "a" / "fer2013.csv").read_bytes() != (tmp_path / "c" / "fer2013.csv").read_bytes()


def test_true_soft_labels_carry_the_confusions_of_real_data(synth):
    D = true_soft_labels_of(str(synth / "fer2013.csv"), "train")
    keys, labels, mixtures = read_mixtures(synth / "fer2013_mixtures.csv", "train")
    assert np.allclose(D, true_soft_labels(mixtures, labels))
    assert np.allclose(D.sum(axis=1), 1)
    assert (D.argmax(axis=1) == np.arange(NUM_CLASSES)).all()
    runner_up = {CLASSES[j]: CLASSES[np.argsort(D[j])[-2]] for j in range(NUM_CLASSES)}
    assert runner_up["DI"] == "AN" and runner_up["SA"] == "NE"
    assert runner_up["FE"] in ("SU", "SA")
    fe = dict(zip(CLASSES, D[CLASSES.index("FE")]))
    assert fe["SU"] + fe["SA"] > 3 * (fe["HA"] + fe["DI"])


def test_make_synth_tool_writes_a_few_thousand_images_in_seconds(tmp_path):
    start = time.time()
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_synth.py"), "--out", str(tmp_path),
                           "--train", "2000", "--val", "400", "--test", "400", "--layouts", "fer2013,raf"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    seconds = time.time() - start
    assert proc.returncode == 0, proc.stdout
    assert len(read_csv(tmp_path / "fer2013.csv")) == 2801
    assert not (tmp_path / "sfew").exists() and (tmp_path / "raf" / "basic").is_dir()
    assert seconds < 30, "2800 + 240 images took %.1f s" % seconds


def test_make_synth_tool_refuses_unknown_layouts(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_synth.py"), "--out", str(tmp_path),
                           "--layouts", "fer2013,affectnet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    assert proc.returncode == 2 and "unknown layouts: affectnet" in proc.stderr
    assert os.listdir(str(tmp_path)) == []


def skin_at_the_sides(image, who):
    """Where ``image`` shows exactly ``who``'s skin, in the columns no expression feature reaches
    (draw_face: beyond CANVAS / 2 +- 66): the outline of the face."""
    skin = np.all(image == np.round(who.skin).astype(np.uint8), axis=2)
    columns = np.abs(np.arange(CANVAS) + 0.5 - CANVAS / 2.0) > 67
    return skin & columns[None, :]


def test_a_person_has_one_face_shape_whatever_the_expression_gaze_and_background():
    who, other = portrait_person(0, 5), portrait_person(0, 6)
    outlines = []
    for index in range(NUM_CLASSES):
        rng = np.random.default_rng(index)            # each image its own background, gaze, expression
        expression = expression_of(rng, sample_mixture(rng, index))
        outlines.append(skin_at_the_sides(draw_face(rng, expression, who), who))
    assert outlines[0].sum() > 200                    # the face's sides are there
    for outline in outlines[1:]:
        np.testing.assert_array_equal(outline, outlines[0])
    rng = np.random.default_rng(0)
    expression = expression_of(rng, sample_mixture(rng, 0))
    assert not np.array_equal(skin_at_the_sides(draw_face(rng, expression, other), who), outlines[0])
    # Everything of a person is fixed by the person's number: drawn again, the same person.
    assert portrait_person(0, 5) == who and portrait_person(1, 5) != who


def test_no_person_of_the_expression_set_is_one_of_the_pretraining_set():
    # Every (layout, split) stream of the expression set at make demo's sizes (RAF and SFEW: a
    # tenth), against a few hundred pretraining persons, for equal and different seeds of the two sets.
    sizes = {stream: 2400 if layout == "fer2013" else 240 for (layout, _), stream in _STREAMS.items()}
    pretraining = {portrait_person(seed, who) for seed in (0, 1) for who in range(512)}
    assert len(pretraining) == 1024
    expression = {expression_person(seed, stream, index) for seed in (0, 1)
                  for stream, size in sizes.items() for index in range(size)}
    assert len(expression) == 2 * sum(sizes.values())    # every face of the expression set a person of its own
    assert not expression & pretraining


def test_the_pretraining_set_shows_its_persons_with_every_expression():
    pairs = [(who, number) for who in range(3) for number in range(14)]
    images = list(draw_portraits(0, pairs, 48, True))
    again = list(draw_portraits(0, pairs[::-1], 48, True))[::-1]      # each image drawn on its own
    assert all(np.array_equal(a, b) for a, b in zip(images, again))
    assert images[0].shape == (48, 48) and len({image.tobytes() for image in images}) == len(pairs)
