"""Dataset readers: the files users have, as samples labelled in the canonical order AN DI FE HA SA SU NE.

``open_dataset(source, split)`` detects the format of a file or folder (or takes ``format``) and
returns a :class:`Dataset`; ``stratified_split`` and ``with_mirror_copies`` derive the gamma
investigation's training sets from it; ``pycaffe_fer.lmdb_build.build_image_lmdb`` writes it to LMDB.
One module per source: fer2013 (and Kaggle's variants), ferplus, raf (basic and Kaggle), sfew, folder.
"""
import os

from ..errors import InputError
from . import fer2013, ferplus, folder, raf, sfew
from .base import SPLITS, BadRecords, Dataset, Sample
from .fer2013 import CsvFile, header_columns
from .split import stratified_split, with_mirror_copies

READERS = {"fer2013": fer2013.read, "ferplus": ferplus.read, "raf": raf.read, "sfew": sfew.read,
           "folder": folder.read}
FORMATS = tuple(READERS)
# Reader options beyond (source, split, bad), by format.
OPTIONS = {"ferplus": ("pixels",), "raf": ("images",)}
CSV_FORMATS = ("fer2013", "ferplus")
# The formats whose exact files the synthetic set (synth.write_synthetic_set) is written in.
LAYOUTS = ("fer2013", "ferplus", "raf", "sfew")
FER2013_NAMES = ("fer2013.csv", "icml_face_data.csv", "train.csv", "test.csv")

__all__ = ["FORMATS", "SPLITS", "Dataset", "Sample", "detect_format", "is_gray", "open_dataset", "stratified_split",
           "with_mirror_copies"]


def is_gray(format):
    """Whether a dataset format's images are gray: FER-2013 and FER+ store 48 x 48 gray pixels in their CSV."""
    return format in CSV_FORMATS


def detect_format(source):
    """The format of a dataset file or folder, from its layout, name and CSV header."""
    if raf.find_layout(source):
        return "raf"
    if os.path.isfile(source):
        if source.lower().endswith(".csv"):
            # By name first, so that a damaged header gets the reader's precise message.
            name = os.path.basename(source).lower()
            columns = header_columns(source, CsvFile(source).records())
            if name == "fer2013new.csv" or "image name" in columns or "nf" in columns:
                return "ferplus"
            if name in FER2013_NAMES or "pixels" in columns:
                return "fer2013"
        raise InputError("%s: cannot tell the dataset format from its name or header; pass --format (%s)"
                         % (source, ", ".join(FORMATS)))
    if sfew.is_sfew(source):
        return "sfew"
    if folder.is_class_tree(source) or any(
            name.lower() in names for name in folder.subfolders(source) for names in folder.SPLIT_FOLDERS.values()):
        return "folder"
    raise InputError("%s: cannot tell the dataset format (not RAF-DB, SFEW aligned faces or class folders); "
                     "pass --format (%s)" % (source, ", ".join(FORMATS)))


def open_dataset(source, split, format=None, skip_bad=False, **options):
    """The samples of ``split`` (train, val or test) of the dataset at ``source``.

    ``format``: one of FORMATS, detected when None. ``skip_bad``: skip and count bad records (label
    lines, CSV rows) instead of raising InputError. Options: ``pixels`` (ferplus: the fer2013.csv
    holding the pixels; default the one next to ``source``), ``images`` (raf: 'aligned' or 'original').
    """
    if split not in SPLITS:
        raise InputError("split %r: expected one of %s" % (split, ", ".join(SPLITS)))
    if not os.path.exists(source):
        raise InputError("%s: no such file or directory" % source)
    format = format or detect_format(source)
    if format not in READERS:
        raise InputError("format %r: expected one of %s" % (format, ", ".join(FORMATS)))
    unknown = sorted(set(options) - set(OPTIONS.get(format, ())))
    if unknown:
        raise InputError("option %s does not apply to format %s" % (", ".join(unknown), format))
    if format in CSV_FORMATS and not os.path.isfile(source):
        raise InputError("%s: format %s reads a CSV file, not a folder" % (source, format))
    try:
        return READERS[format](source, split, BadRecords(skip_bad), **options)
    except OSError as error:
        raise InputError("%s: %s" % (error.filename or source, error.strerror or error))
