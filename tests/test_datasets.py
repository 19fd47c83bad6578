"""Dataset readers: every layout users have, mapped to the canonical labels; detection; holdout and mirror."""
import os
import shutil

import numpy as np
import pytest

from pycaffe_fer.classes import NUM_CLASSES
from pycaffe_fer.datasets import detect_format, fer2013, open_dataset, stratified_split, with_mirror_copies
from pycaffe_fer.errors import InputError
from pycaffe_fer.synth import SFEW_FOLDERS
from dataset_fixtures import (SMALL, folder_variant, icml_variant, kaggle_test_variant, kaggle_train_variant,
                              raf_kaggle_variant, read_csv, synth, true_labels)  # noqa: F401 (synth: a fixture)


def labelled(dataset):
    return {s.key: s.label for s in dataset}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_fer2013_splits_follow_usage(synth, split):
    dataset = open_dataset(str(synth / "fer2013.csv"), split)
    assert dataset.format == "fer2013" and len(dataset) == SMALL[split]
    assert labelled(dataset) == true_labels(synth, "fer2013", split)
    image, _ = dataset.samples[0].image.load(gray=False)
    assert image.shape == (48, 48, 3) and (image[:, :, 0] == image[:, :, 2]).all()
    assert dataset.samples[0].image.load(gray=True)[0].shape == (48, 48)


def test_kaggle_icml_face_data_reads_like_fer2013(synth, tmp_path):
    icml = icml_variant(synth / "fer2013.csv", tmp_path / "icml_face_data.csv")
    assert detect_format(icml) == "fer2013"
    for split in ("train", "test"):
        original, variant = open_dataset(str(synth / "fer2013.csv"), split), open_dataset(icml, split)
        assert labelled(variant) == labelled(original)
        assert (variant.samples[3].image.load(True)[0] == original.samples[3].image.load(True)[0]).all()


def test_kaggle_train_csv_is_the_training_split(synth, tmp_path):
    train = kaggle_train_variant(synth / "fer2013.csv", tmp_path / "train.csv")
    assert labelled(open_dataset(train, "train")) == true_labels(synth, "fer2013", "train")
    with pytest.raises(InputError, match=r"train.csv: no 'Usage' column, so every row is Training"):
        open_dataset(train, "val")


def test_kaggle_test_csv_has_no_labels(synth, tmp_path):
    test = kaggle_test_variant(synth / "fer2013.csv", tmp_path / "test.csv")
    with pytest.raises(InputError, match=r"test.csv line 1: no 'emotion' column .*has no labels"):
        open_dataset(test, "test")


def test_official_md5_is_recognised(synth, monkeypatch):
    dataset = open_dataset(str(synth / "fer2013.csv"), "val")
    (entry,) = dataset.source_files
    assert entry["official"] is None and len(entry["md5"]) == 32
    monkeypatch.setitem(fer2013.OFFICIAL_MD5, entry["md5"], "fer2013.csv")
    assert open_dataset(str(synth / "fer2013.csv"), "val").source_files[0]["official"] == "fer2013.csv"


def test_ferplus_majority_labels_and_vote_distributions(synth):
    rows = read_csv(synth / "fer2013new.csv")
    columns = rows[0]
    dataset = open_dataset(str(synth / "fer2013new.csv"), "val")
    assert dataset.format == "ferplus" and dataset.has_soft()
    samples = {s.key: s for s in dataset}
    no_votes = 0
    for index, row in enumerate(rows[1:]):
        if row[0] != "PublicTest":
            continue
        votes = np.array([float(row[columns.index(name)]) for name in
                          ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")])
        key = "fer%07d" % index
        if votes.sum() == 0:
            no_votes += 1
            assert key not in samples
            continue
        assert samples[key].label == votes.argmax()
        assert np.allclose(samples[key].soft, votes / votes.sum())
    assert no_votes >= 1 and dataset.excluded == {"no votes among the seven classes": no_votes}
    assert len(dataset) == SMALL["val"] - no_votes


def test_ferplus_needs_its_fer2013_csv(synth, tmp_path):
    shutil.copy(str(synth / "fer2013new.csv"), str(tmp_path))
    with pytest.raises(InputError, match=r"fer2013new.csv: FER\+ holds votes, not pixels.*--pixels"):
        open_dataset(str(tmp_path / "fer2013new.csv"), "train")
    rows = read_csv(synth / "fer2013.csv")
    short = tmp_path / "short.csv"
    short.write_text("\n".join(",".join(r) for r in rows[:-1]) + "\n")
    with pytest.raises(InputError, match=r"different numbers of rows: not the matching fer2013.csv"):
        open_dataset(str(tmp_path / "fer2013new.csv"), "test", pixels=str(short))


@pytest.mark.parametrize("split", ["train", "test"])
def test_raf_basic_maps_raf_labels_to_canonical(synth, split):
    for source in (synth / "raf", synth / "raf" / "basic",
                   synth / "raf" / "basic" / "EmoLabel" / "list_patition_label.txt"):
        assert detect_format(str(source)) == "raf"
        dataset = open_dataset(str(source), split)
        assert labelled(dataset) == true_labels(synth, "raf", split)
    assert dataset.samples[0].image.path.endswith("_aligned.jpg")
    assert dataset.samples[0].image.load(False)[0].shape == (100, 100, 3)
    original = open_dataset(str(synth / "raf"), split, images="original")
    assert labelled(original) == labelled(dataset)
    assert original.samples[0].image.load(False)[0].shape == (128, 128, 3)


def test_raf_has_no_val_split(synth):
    with pytest.raises(InputError, match=r"RAF-DB has only train and test.*--holdout 0.2 --part holdout"):
        open_dataset(str(synth / "raf"), "val")


def test_raf_kaggle_repackaging(synth, tmp_path):
    root = raf_kaggle_variant(str(synth / "raf" / "basic"), tmp_path / "raf-db")
    for source in (root, os.path.join(root, "DATASET"), os.path.join(root, "train_labels.csv")):
        assert detect_format(source) == "raf"
        assert labelled(open_dataset(source, "train")) == true_labels(synth, "raf", "train")
    assert labelled(open_dataset(root, "test")) == true_labels(synth, "raf", "test")


@pytest.mark.parametrize("split", ["train", "val"])
def test_sfew_maps_class_folders_by_name(synth, split):
    assert detect_format(str(synth / "sfew")) == "sfew"
    dataset = open_dataset(str(synth / "sfew"), split)
    assert labelled(dataset) == true_labels(synth, "sfew", split)
    # Alphabetical folder order would make Neutral 4 and Sad 5; by name they are 6 and 4.
    by_folder = {s.key.split("/")[0]: s.label for s in dataset}
    assert by_folder.get("Neutral", 6) == 6 and by_folder.get("Sad", 4) == 4
    assert all(SFEW_FOLDERS[label] == folder for folder, label in by_folder.items())


def test_sfew_test_labels_are_not_public(synth):
    with pytest.raises(InputError, match=r"SFEW's test labels are not public.*--split val"):
        open_dataset(str(synth / "sfew"), "test")


def test_folder_tree_with_synonyms_and_any_case(synth, tmp_path):
    names = {"Angry": "anger", "Disgust": "DISGUSTED", "Fear": "fear", "Happy": "Happiness", "Sad": "sad",
             "Surprise": "surprised", "Neutral": "Neutral"}
    root = folder_variant(str(synth / "sfew"), tmp_path / "faces", names)
    assert detect_format(root) == "folder"
    for split in ("train", "val"):
        dataset = open_dataset(root, split)
        expected = {"%s/%s" % (names[k.split("/")[0]], k.split("/")[1]): v for k, v in true_labels(synth, "sfew", split).items()}
        assert labelled(dataset) == expected
    # A folder of class folders is one split by itself.
    assert labelled(open_dataset(os.path.join(root, "val"), "test", format="folder")) == labelled(open_dataset(root, "val"))
    with pytest.raises(InputError, match=r"faces: no test folder \(looked for test/testing/privatetest; found train, val\)"):
        open_dataset(root, "test")
    os.mkdir(os.path.join(root, "train", "contempt"))
    with pytest.raises(InputError, match=r"folder 'contempt' is not a class name"):
        open_dataset(root, "train")


def test_undetectable_sources_ask_for_format(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(InputError, match=r"notes.txt: cannot tell the dataset format.*pass --format"):
        open_dataset(str(tmp_path / "notes.txt"), "train")
    with pytest.raises(InputError, match=r"no such file or directory"):
        open_dataset(str(tmp_path / "missing.csv"), "train")
    with pytest.raises(InputError, match=r"option images does not apply to format fer2013"):
        open_dataset(str(tmp_path / "notes.txt"), "train", format="fer2013", images="original")


def test_stratified_split_holds_out_a_fifth_of_each_class(synth):
    dataset = open_dataset(str(synth / "fer2013.csv"), "train")
    rest, holdout = stratified_split(dataset, 0.2, seed=0)
    assert set(s.key for s in rest).isdisjoint(s.key for s in holdout)
    assert len(rest) + len(holdout) == len(dataset)
    counts = np.bincount([s.label for s in dataset], minlength=NUM_CLASSES)
    held = np.bincount([s.label for s in holdout], minlength=NUM_CLASSES)
    assert (held == np.floor(0.2 * counts + 0.5)).all()
    # Each part keeps the source order; the draw depends on the seed only.
    order = [s.key for s in dataset]
    assert [s.key for s in rest] == [k for k in order if k in set(s.key for s in rest)]
    assert [s.key for s in stratified_split(dataset, 0.2, seed=0)[1]] == [s.key for s in holdout]
    assert [s.key for s in stratified_split(dataset, 0.2, seed=1)[1]] != [s.key for s in holdout]
    assert holdout.notes["holdout"] == {"fraction": 0.2, "split_seed": 0, "part": "holdout"}
    with pytest.raises(InputError, match="strictly between 0 and 1"):
        stratified_split(dataset, 1.0, seed=0)


def test_mirror_copies_stay_on_one_side_of_the_split(synth):
    dataset = open_dataset(str(synth / "sfew"), "train")
    mirrored = with_mirror_copies(dataset)
    assert len(mirrored) == 2 * len(dataset) and mirrored.notes["mirror_copies"]
    assert [s.key for s in mirrored][:2] == [dataset.samples[0].key, dataset.samples[0].key + "_mirror"]
    assert [s.mirror for s in mirrored][:2] == [False, True]
    rest, holdout = stratified_split(mirrored, 0.2, seed=0)
    groups = lambda part: set(s.group for s in part)
    assert groups(rest).isdisjoint(groups(holdout))
    assert all(sum(1 for s in holdout if s.group == g) == 2 for g in groups(holdout))
    assert len(holdout) == 2 * sum(int(0.2 * n + 0.5) for n in np.bincount([s.label for s in dataset]))
