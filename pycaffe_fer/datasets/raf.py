"""RAF-DB basic: ``EmoLabel/list_patition_label.txt`` (sic) with ``Image/aligned/<stem>_aligned.jpg``
(or ``Image/original/<name>``), and Kaggle's repackaging ``DATASET/{train,test}/{1..7}/*.jpg`` with
``{train,test}_labels.csv``.

RAF labels 1..7 are Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral; the split is the
image name's prefix (``train_00001.jpg``, ``test_0001.jpg``).
"""
import csv
import os

from ..errors import InputError
from .base import Dataset, ImageFile, file_digest, make_sample, require_samples, source_file

# 0-based RAF label -> canonical label (the permutation is its own inverse).
RAF_TO_CANONICAL = (5, 2, 1, 3, 4, 0, 6)
LABEL_LIST = os.path.join("EmoLabel", "list_patition_label.txt")
IMAGE_FOLDERS = ("aligned", "original")
SPLITS = ("train", "test")


def canonical_label(text):
    """Canonical label of a RAF label 1..7 given as text, or None."""
    text = text.strip()
    if text.isdigit() and 1 <= int(text) <= 7:
        return RAF_TO_CANONICAL[int(text) - 1]
    return None


def find_layout(source):
    """('basic', root holding EmoLabel/) or ('kaggle', root holding DATASET/ and the label CSVs), or None."""
    source = os.path.abspath(source)
    if os.path.isfile(source):
        if os.path.basename(source) == os.path.basename(LABEL_LIST):
            return "basic", os.path.dirname(os.path.dirname(source))
        if os.path.basename(source) in ("%s_labels.csv" % s for s in SPLITS):
            return "kaggle", os.path.dirname(source)
        return None
    for root in (source, os.path.join(source, "basic")):
        if os.path.isfile(os.path.join(root, LABEL_LIST)):
            return "basic", root
    for root in (source, os.path.dirname(source)):
        if os.path.isdir(os.path.join(root, "DATASET")) and any(
                os.path.isfile(os.path.join(root, "%s_labels.csv" % s)) for s in SPLITS):
            return "kaggle", root
    return None


def read(source, split, bad, images="aligned"):
    if split not in SPLITS:
        raise InputError("%s: RAF-DB has only train and test; for validation hold out part of train "
                         "(--split train --holdout 0.2 --part holdout)" % source)
    if images not in IMAGE_FOLDERS:
        raise InputError("RAF-DB images %r: expected one of %s" % (images, ", ".join(IMAGE_FOLDERS)))
    layout = find_layout(source)
    if layout is None:
        raise InputError("%s: neither RAF-DB basic (%s) nor Kaggle's DATASET/ with {train,test}_labels.csv"
                         % (source, LABEL_LIST))
    kind, root = layout
    if kind == "basic":
        return read_basic(source, root, split, bad, images)
    return read_kaggle(source, root, split, bad)


def read_basic(source, root, split, bad, images):
    labels_path = os.path.join(root, LABEL_LIST)
    image_folder = os.path.join(root, "Image", images)
    if not os.path.isdir(image_folder):
        raise InputError("%s: no Image/%s folder next to EmoLabel/" % (root, images))
    samples = []
    with open(labels_path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            where = "%s line %d" % (labels_path, number)
            if len(parts) != 2:
                bad.report("%s: expected '<image name> <label 1..7>', got %r" % (where, line.strip()))
                continue
            stem = os.path.splitext(parts[0])[0]
            prefix = stem.split("_")[0]
            if prefix not in SPLITS:
                bad.report("%s: %s: name starts with neither train_ nor test_" % (where, parts[0]))
                continue
            if prefix != split:
                continue
            label = canonical_label(parts[1])
            if label is None:
                bad.report("%s: label %r is not in 1..7" % (where, parts[1]))
                continue
            name = stem + "_aligned.jpg" if images == "aligned" else parts[0]
            path = os.path.join(image_folder, name)
            if not os.path.isfile(path):
                bad.report("%s: names a missing image %s" % (where, path))
                continue
            samples.append(make_sample(stem, label, ImageFile(path)))
    require_samples(samples, labels_path, split)
    return Dataset(samples, "raf", split, source, [source_file(labels_path, file_digest(labels_path))], bad.messages,
                   notes={"images": images})


def read_kaggle(source, root, split, bad):
    labels_path = os.path.join(root, "%s_labels.csv" % split)
    image_folder = os.path.join(root, "DATASET", split)
    for path in (labels_path, image_folder):
        if not os.path.exists(path):
            raise InputError("%s: no %s (Kaggle's RAF-DB: DATASET/{train,test}/ and {train,test}_labels.csv)"
                             % (root, os.path.relpath(path, root)))
    samples = []
    with open(labels_path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        columns = [name.strip().lower() for name in next(reader, [])]
        for name in ("image", "label"):
            if name not in columns:
                raise InputError("%s line 1: no %r column (header: %s)" % (labels_path, name, ",".join(columns)))
        image_at, label_at = columns.index("image"), columns.index("label")
        for fields in reader:
            if not fields:
                continue
            where = "%s line %d" % (labels_path, reader.line_num)
            if len(fields) != len(columns):
                bad.report("%s: %d fields, expected %d" % (where, len(fields), len(columns)))
                continue
            label = canonical_label(fields[label_at])
            if label is None:
                bad.report("%s: label %r is not in 1..7" % (where, fields[label_at]))
                continue
            # Kaggle files each image under its RAF label's folder.
            path = os.path.join(image_folder, fields[label_at].strip(), fields[image_at].strip())
            if not os.path.isfile(path):
                bad.report("%s: names a missing image %s" % (where, path))
                continue
            stem = os.path.splitext(fields[image_at].strip())[0]
            key = stem[:-len("_aligned")] if stem.endswith("_aligned") else stem
            samples.append(make_sample(key, label, ImageFile(path)))
    require_samples(samples, labels_path, split)
    return Dataset(samples, "raf", split, source, [source_file(labels_path, file_digest(labels_path))], bad.messages,
                   notes={"layout": "kaggle"})
