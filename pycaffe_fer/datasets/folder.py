"""Class-folder trees: ``<root>/<split>/<class>/*``, or ``<root>/<class>/*`` holding one split.

Class folders are matched by name, case-insensitively and with common synonyms (angry/anger,
happy/happiness, sad/sadness, ...), never by their sorted order.
"""
import os

from ..classes import CLASS_NAMES, label_from_name
from ..errors import InputError
from .base import Dataset, ImageFile, make_sample, require_samples

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
SPLIT_FOLDERS = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation", "publictest"),
    "test": ("test", "testing", "privatetest"),
}


def subfolders(path):
    return sorted(name for name in os.listdir(path)
                  if not name.startswith(".") and os.path.isdir(os.path.join(path, name)))


def is_class_tree(path):
    """Whether every (and at least one) subfolder of ``path`` is named after a class."""
    names = subfolders(path)
    return bool(names) and all(label_from_name(name) is not None for name in names)


def class_tree_samples(root):
    """Samples of ``root/<class>/**/<image>``, keyed ``<class folder>/<path without extension>``."""
    samples = []
    for name in subfolders(root):
        label = label_from_name(name)
        if label is None:
            raise InputError("%s: folder %r is not a class name (expected %s or a synonym)"
                             % (root, name, ", ".join(CLASS_NAMES)))
        for dirpath, dirnames, files in os.walk(os.path.join(root, name)):
            dirnames.sort()
            for file_name in sorted(files):
                stem, ext = os.path.splitext(file_name)
                if ext.lower() in IMAGE_EXTENSIONS:
                    path = os.path.join(dirpath, file_name)
                    key = os.path.relpath(os.path.join(dirpath, stem), root).replace(os.sep, "/")
                    samples.append(make_sample(key, label, ImageFile(path)))
    return samples


def split_folder(root, split):
    """The folder of ``split`` under ``root``, or ``root`` itself when it holds class folders."""
    if is_class_tree(root):
        return root
    for name in subfolders(root):
        if name.lower() in SPLIT_FOLDERS[split]:
            return os.path.join(root, name)
    raise InputError("%s: no %s folder (looked for %s; found %s)"
                     % (root, split, "/".join(SPLIT_FOLDERS[split]), ", ".join(subfolders(root)) or "nothing"))


def read(source, split, bad):
    folder = split_folder(source, split)
    samples = require_samples(class_tree_samples(folder), folder, split)
    return Dataset(samples, "folder", split, source, skipped=bad.messages)
