"""Small dataset fixtures for the dataset, LMDB and synthetic-set tests, built from the synthetic set:
the real layouts and their variants (Kaggle's FER-2013 CSVs, Kaggle's RAF-DB, class folders), and
reading LMDBs back through real Caffe Data layers.
"""
import csv
import importlib.util
import math
import os
import shutil
import tempfile

import caffe
import numpy as np
import pytest

from pycaffe_fer.synth import read_mixtures, true_soft_labels_of, write_synthetic_set
from helpers import REPO

# FER-2013 rows per split of the small synthetic set (RAF-DB and SFEW hold a tenth: 14 / 7).
SMALL = {"train": 140, "val": 70, "test": 70}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """The synthetic set with SMALL sizes, once per test module, plus D.npy: the true soft labels
    of its FER-2013 PublicTest rows."""
    root = tmp_path_factory.mktemp("synth")
    write_synthetic_set(str(root), seed=0, workers=1, **SMALL)
    np.save(str(root / "D.npy"), true_soft_labels_of(str(root / "fer2013.csv"), "val"))
    return root


def true_labels(synth, layout, split):
    """{source key: true canonical label} of a layout's split, from the synthetic set's mixtures."""
    keys, labels, _ = read_mixtures(synth / ("%s_mixtures.csv" % layout), split)
    return dict(zip(keys, labels.tolist()))


def load_tool(name):
    """The module of tools/<name>.py, so tests call its main() in-process."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "tools", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return str(path)


def icml_variant(fer_csv, path):
    """Kaggle's icml_face_data.csv: columns 'emotion, Usage, pixels' (other order, leading spaces)."""
    rows = read_csv(fer_csv)
    return write_csv(path, [["emotion", " Usage", " pixels"]] + [[e, u, p] for e, p, u in rows[1:]])


def kaggle_train_variant(fer_csv, path):
    """Kaggle's train.csv: 'emotion,pixels', the Training rows only."""
    rows = read_csv(fer_csv)
    return write_csv(path, [["emotion", "pixels"]] + [[e, p] for e, p, u in rows[1:] if u == "Training"])


def kaggle_test_variant(fer_csv, path):
    """Kaggle's test.csv: 'pixels' only, no labels."""
    rows = read_csv(fer_csv)
    return write_csv(path, [["pixels"]] + [[p] for e, p, u in rows[1:] if u != "Training"])


def raf_kaggle_variant(basic, root):
    """Kaggle's RAF-DB: DATASET/{train,test}/<RAF label>/<stem>_aligned.jpg and {split}_labels.csv."""
    labels = {"train": [["image", "label"]], "test": [["image", "label"]]}
    with open(os.path.join(basic, "EmoLabel", "list_patition_label.txt")) as handle:
        for line in handle:
            name, raf_label = line.split()
            stem = os.path.splitext(name)[0]
            split = stem.split("_")[0]
            folder = os.path.join(root, "DATASET", split, raf_label)
            os.makedirs(folder, exist_ok=True)
            shutil.copy(os.path.join(basic, "Image", "aligned", stem + "_aligned.jpg"), folder)
            labels[split].append([stem + "_aligned.jpg", raf_label])
    for split, rows in labels.items():
        write_csv(os.path.join(root, "%s_labels.csv" % split), rows)
    return str(root)


def folder_variant(sfew, root, names):
    """<root>/{train,val}/<names[class folder]>/*.png from the SFEW tree (renamed class folders)."""
    for split, top in (("train", "Train"), ("val", "Val")):
        aligned = os.path.join(sfew, top, top + "_Aligned_Faces")
        for folder in os.listdir(aligned):
            shutil.copytree(os.path.join(aligned, folder), os.path.join(root, split, names[folder]))
    return str(root)


def caffe_read(sources, batch_size, count):
    """Read the first ``count`` records of each LMDB in ``sources`` through real Caffe Data layers
    in one net (side by side, same batches): [(data N x C x H x W, label N)] per source."""
    layers = "".join(
        'layer { name: "d%d" type: "Data" top: "data%d" top: "label%d"\n'
        '        data_param { source: "%s" batch_size: %d backend: LMDB } }\n' % (i, i, i, source, batch_size)
        for i, source in enumerate(sources))
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as handle:
        handle.write('name: "read"\n' + layers)
    try:
        caffe.set_mode_cpu()
        net = caffe.Net(handle.name, caffe.TEST)
        batches = [([], []) for _ in sources]
        for _ in range(int(math.ceil(count / float(batch_size)))):
            net.forward()
            for i, (data, labels) in enumerate(batches):
                data.append(net.blobs["data%d" % i].data.copy())
                labels.append(net.blobs["label%d" % i].data.copy())
    finally:
        os.remove(handle.name)
    return [(np.concatenate(data)[:count], np.concatenate(labels)[:count].astype(int)) for data, labels in batches]


def leftovers(path):
    """Whatever a failed build left at ``path`` or as a temporary sibling of it."""
    parent, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(parent):
        return []
    return sorted(entry for entry in os.listdir(parent) if entry == name or entry.startswith("." + name + ".")
                  or entry.startswith(name + "_soft"))
