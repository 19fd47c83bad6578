"""What every reader produces: samples (key, canonical label, where the pixels are) grouped in a Dataset.

Readers scan labels eagerly (so a split can be counted, split and shuffled) but leave the pixels where
they are: a sample's ``image`` is a small picklable loader that the LMDB builder's worker processes
call, so memory stays flat whatever the dataset size.
"""
import collections
import hashlib
import os

import numpy as np

from ..errors import InputError

# The command-line / config split names.
SPLITS = ("train", "val", "test")

# key: the record's name in its source (becomes part of the LMDB key); label: canonical 0..6;
# image: a loader with .load(gray) -> (H x W [x 3 BGR] uint8, md5 of the bytes read);
# soft: per-image distribution over the canonical classes (FER+) or None; mirror: flip horizontally;
# group: samples of one group (an image and its mirror copy) stay on one side of a holdout split.
Sample = collections.namedtuple("Sample", "key label image soft mirror group")


def make_sample(key, label, image, soft=None):
    return Sample(key, label, image, soft, False, key)


class Dataset:
    """The samples of one split of one source, and what a manifest should say about their origin.

    ``source_files``: [{"path", "md5", "official"}] of the label/CSV files read (``official`` names
    the published file whose MD5 this one matches, or is None); ``skipped``: messages of the bad
    records a reader skipped (``skip_bad``); ``excluded``: {reason: count} of records left out by
    design (FER+ rows with no votes among the seven classes); ``notes``: how the samples were chosen
    (reader options, holdout part, mirror copies).
    """

    def __init__(self, samples, format, split, source, source_files=(), skipped=(), excluded=None,
                 notes=None):
        self.samples = list(samples)
        self.format = format
        self.split = split
        self.source = os.path.abspath(source)
        self.source_files = list(source_files)
        self.skipped = list(skipped)
        self.excluded = dict(excluded or {})
        self.notes = dict(notes or {})

    def __len__(self):
        return len(self.samples)

    def __iter__(self):
        return iter(self.samples)

    def derive(self, samples, **notes):
        """A Dataset of other samples from the same origin, with ``notes`` added."""
        merged = dict(self.notes)
        merged.update(notes)
        return Dataset(samples, self.format, self.split, self.source, self.source_files, self.skipped,
                       self.excluded, merged)

    def has_soft(self):
        return bool(self.samples) and all(s.soft is not None for s in self.samples)



class BadRecords:
    """A reader's policy for a bad record: raise InputError (default) or, with ``skip``, count it."""

    def __init__(self, skip=False):
        self.skip = skip
        self.messages = []

    def report(self, message):
        if not self.skip:
            raise InputError(message)
        self.messages.append(message)


def require_samples(samples, where, split):
    """An empty split is refused: a Caffe Data layer cannot read an empty LMDB."""
    if not samples:
        raise InputError("%s: no records in split %r" % (where, split))
    return samples


class ImageFile(collections.namedtuple("ImageFile", "path")):
    """An image file on disk (any format OpenCV decodes), checked for truncation before decoding."""

    def load(self, gray):
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except OSError as error:
            raise InputError("%s: cannot read image (%s)" % (self.path, error.strerror))
        problem = truncation(data)
        if problem:
            raise InputError("%s: truncated image (%s)" % (self.path, problem))
        import cv2   # here: config imports this package for its formats, and loads without OpenCV

        flags = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
        if image is None:
            raise InputError("%s: not a readable image" % self.path)
        return image, hashlib.md5(data).hexdigest()


def encode_image(path, image, params=()):
    """The bytes of ``image`` in the format ``path``'s extension names, to be written with Python's
    own file calls: a full disk is then an OSError (ENOSPC), where cv2.imwrite only returns False
    (and libpng prints to stderr)."""
    import cv2

    try:
        ok, data = cv2.imencode(os.path.splitext(path)[1], image, list(params))
    except cv2.error:
        ok = False
    if not ok:
        raise InputError("%s: OpenCV cannot write an image with this extension (try .png or .jpg)" % path)
    return data.tobytes()


def truncation(data):
    """Why ``data`` is a cut-off JPEG or PNG, or None: libjpeg decodes a truncated JPEG with only a
    warning, filling the missing rows with gray, so the end marker is checked here."""
    if not data:
        return "empty file"
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        return "JPEG without its end-of-image marker"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-32:]:
        return "PNG without its IEND chunk"
    return None


def file_digest(path, algorithm="md5", chunk=1 << 20):
    """The hex digest of a file (md5 unless `algorithm` names another of hashlib's), read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def source_file(path, md5, official_md5s=None):
    """A ``source_files`` entry; ``official_md5s`` maps published MD5s to the published file names."""
    return {"path": os.path.abspath(path), "md5": md5, "official": (official_md5s or {}).get(md5)}
