"""SFEW 2.0, aligned release: ``Train/Train_Aligned_Faces/<Class>/*.png`` and ``Val/Val_Aligned_Faces/<Class>/``.

Class folders (Angry Disgust Fear Happy Neutral Sad Surprise) are mapped by name: their alphabetical
order is not the canonical one. Test labels are not public, so there is no test split.
"""
import os

from ..errors import InputError
from .base import Dataset, require_samples
from .folder import class_tree_samples

ALIGNED_FOLDERS = {"train": ("Train", "Train_Aligned_Faces"), "val": ("Val", "Val_Aligned_Faces")}


def aligned_candidates(root, split):
    top, aligned = ALIGNED_FOLDERS[split]
    return os.path.join(root, top, aligned), os.path.join(root, aligned)


def aligned_folder(root, split):
    if split not in ALIGNED_FOLDERS:
        raise InputError("%s: SFEW's test labels are not public; results are reported on val (--split val)" % root)
    for candidate in aligned_candidates(root, split):
        if os.path.isdir(candidate):
            return candidate
    raise InputError("%s: no %s folder (SFEW 2.0 aligned faces)" % (root, aligned_candidates(root, split)[0]))


def is_sfew(root):
    return any(os.path.isdir(candidate) for split in ALIGNED_FOLDERS for candidate in aligned_candidates(root, split))


def read(source, split, bad):
    folder = aligned_folder(source, split)
    samples = require_samples(class_tree_samples(folder), folder, split)
    return Dataset(samples, "sfew", split, source, skipped=bad.messages)
