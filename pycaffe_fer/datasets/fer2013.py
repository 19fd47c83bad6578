"""FER-2013 CSVs: the original ``fer2013.csv`` and Kaggle's ``icml_face_data.csv``, ``train.csv``
and ``test.csv``. Labels 0..6 already are the canonical order.

The CSV is scanned once for labels and Usage, remembering each row's byte span; the 2304 pixels of
a row are parsed later, in a worker process, from that span alone.
"""
import collections
import csv
import hashlib

import numpy as np

from ..classes import NUM_CLASSES
from ..errors import InputError
from .base import Dataset, make_sample, require_samples, source_file

SIDE = 48
USAGE_OF_SPLIT = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
OFFICIAL_MD5 = {
    "f8428a1edbd21e88f42c73edd2a14f95": "fer2013.csv",
    "b114b9e04e6949e5fe8b6a98b3892b1d": "icml_face_data.csv",
    "3f0dfb3d3fd99c811a1299cb947e3131": "train.csv",
    "b02c2298636a634e8c2faabbf3ea9a23": "test.csv",
}


class CsvFile:
    """The records of a CSV file, each with its line number and byte span; ``md5`` once read through."""

    def __init__(self, path):
        self.path = path
        self.md5 = None

    def records(self):
        """Yield (line number, byte offset, byte length, fields), the header included."""
        digest = hashlib.md5()
        with open(self.path, "rb") as handle:
            offset = start = start_line = 0
            pending = b""
            for number, raw in enumerate(handle, 1):
                digest.update(raw)
                if not pending:
                    start, start_line = offset, number
                pending += raw
                offset += len(raw)
                if pending.count(b'"') % 2:
                    continue  # inside a quoted field that goes on on the next line
                text = pending.decode("utf-8", "replace").lstrip("\ufeff")
                pending = b""
                if text.strip():
                    yield start_line, start, offset - start, next(csv.reader([text]))
        self.md5 = digest.hexdigest()


def header_columns(path, records):
    """Lower-cased, stripped column names of the first record (Kaggle writes ' Usage', ' pixels')."""
    for _, _, _, fields in records:
        return [name.strip().lower() for name in fields]
    raise InputError("%s: empty file, no header" % path)


class CsvPixels(collections.namedtuple("CsvPixels", "path offset length column line")):
    """Row ``line`` of a FER-2013 CSV: 48 x 48 gray pixels in field ``column`` of its byte span."""

    def load(self, gray):
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            raw = handle.read(self.length)
        fields = next(csv.reader([raw.decode("utf-8", "replace")]))
        where = "%s line %d" % (self.path, self.line)
        if self.column >= len(fields):
            raise InputError("%s: %d fields, no pixels field" % (where, len(fields)))
        values = fields[self.column].split()
        if len(values) != SIDE * SIDE:
            raise InputError("%s: %d pixels, expected %d (48 x 48)" % (where, len(values), SIDE * SIDE))
        try:
            pixels = np.array(values, dtype=np.int64)
        except ValueError:
            first = next(i for i, v in enumerate(values) if not _is_int(v))
            raise InputError("%s: pixel %d is %r, not an integer 0..255" % (where, first, values[first]))
        out_of_range = np.flatnonzero((pixels < 0) | (pixels > 255))
        if out_of_range.size:
            first = out_of_range[0]
            raise InputError("%s: pixel %d is %d, not in 0..255" % (where, first, pixels[first]))
        image = pixels.astype(np.uint8).reshape(SIDE, SIDE)
        if not gray:
            image = np.repeat(image[:, :, None], 3, axis=2)   # BGR of a gray image: 3 equal channels
        return image, hashlib.md5(raw).hexdigest()


def _is_int(text):
    try:
        int(text)
    except ValueError:
        return False
    return True


def row_key(index):
    """Source key of the index-th data row: FER+'s image name for it, without '.png'."""
    return "fer%07d" % index


def parse_label(text):
    """A canonical label 0..6 from the text of an ``emotion`` field, or None."""
    text = text.strip()
    if text.isdigit() and int(text) < NUM_CLASSES:
        return int(text)
    return None


def read_rows(path):
    """(csv file, columns, rows) of a FER-2013 CSV; rows yields (index, line, fields, CsvPixels) per data row.

    Refuses a file without a ``pixels`` column; the caller decides what the other columns must be.
    """
    csv_file = CsvFile(path)
    records = csv_file.records()
    columns = header_columns(path, records)
    if "pixels" not in columns:
        raise InputError("%s line 1: no 'pixels' column (header: %s)" % (path, ",".join(columns)))
    pixel_column = columns.index("pixels")

    def rows():
        for index, (line, offset, length, fields) in enumerate(records):
            yield index, line, fields, CsvPixels(path, offset, length, pixel_column, line)
    return csv_file, columns, rows()


def read(source, split, bad):
    """The rows of ``source`` whose Usage is the split's (train: Training, val: PublicTest, test: PrivateTest)."""
    csv_file, columns, rows = read_rows(source)
    if "emotion" not in columns:
        raise InputError("%s line 1: no 'emotion' column (header: %s); Kaggle's test.csv has no labels, "
                         "use fer2013.csv or icml_face_data.csv" % (source, ",".join(columns)))
    emotion = columns.index("emotion")
    usage = columns.index("usage") if "usage" in columns else None
    if usage is None and split != "train":
        raise InputError("%s: no 'Usage' column, so every row is Training (Kaggle's train.csv); split %r "
                         "needs fer2013.csv or icml_face_data.csv" % (source, split))
    wanted = USAGE_OF_SPLIT[split]
    samples = []
    for index, line, fields, pixels in rows:
        where = "%s line %d" % (source, line)
        if len(fields) != len(columns):
            bad.report("%s: %d fields, expected %d (%s)" % (where, len(fields), len(columns), ",".join(columns)))
            continue
        row_usage = "Training" if usage is None else fields[usage].strip()
        if row_usage not in USAGE_OF_SPLIT.values():
            bad.report("%s: unknown Usage %r (expected Training, PublicTest or PrivateTest)" % (where, row_usage))
            continue
        if row_usage != wanted:
            continue
        label = parse_label(fields[emotion])
        if label is None:
            bad.report("%s: emotion %r is not an integer 0..%d" % (where, fields[emotion], NUM_CLASSES - 1))
            continue
        samples.append(make_sample(row_key(index), label, pixels))
    require_samples(samples, "%s (Usage %s)" % (source, wanted), split)
    return Dataset(samples, "fer2013", split, source, [source_file(source, csv_file.md5, OFFICIAL_MD5)],
                   bad.messages)
