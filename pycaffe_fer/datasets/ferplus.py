"""FER+ (Microsoft's ``fer2013new.csv``): ten crowd votes for each row of ``fer2013.csv``, which holds
the pixels. The votes over the seven shared classes become per-image soft labels; their majority
is the image's hard label.
"""
import itertools
import os

import numpy as np

from ..classes import CLASS_NAMES, NUM_CLASSES, label_from_name
from ..errors import InputError
from .base import Dataset, make_sample, require_samples, source_file
from .fer2013 import OFFICIAL_MD5, USAGE_OF_SPLIT, CsvFile, header_columns, read_rows, row_key

NO_VOTES = "no votes among the seven classes"


def vote_columns(path, columns):
    """Column index of each canonical class's votes (FER+ names them neutral, happiness, ...)."""
    by_label = {label_from_name(name): i for i, name in enumerate(columns) if label_from_name(name) is not None}
    missing = [name for label, name in enumerate(CLASS_NAMES) if label not in by_label]
    for name in ("usage", "image name"):
        if name not in columns:
            missing.insert(0, name)
    if missing:
        raise InputError("%s line 1: no %s column (header: %s)"
                         % (path, ", ".join(repr(m) for m in missing), ",".join(columns)))
    return [by_label[label] for label in range(NUM_CLASSES)]


def parse_votes(fields, columns):
    """The seven vote counts of a row as floats, or None when one is not a non-negative number."""
    try:
        votes = np.array([float(fields[i]) for i in columns])
    except ValueError:
        return None
    return votes if np.isfinite(votes).all() and (votes >= 0).all() else None


def read(source, split, bad, pixels=None):
    """Rows of ``source`` with the split's Usage, their pixels from ``pixels`` (default: fer2013.csv
    next to ``source``). Rows without a vote among the seven classes are left out and counted."""
    pixels = pixels or os.path.join(os.path.dirname(os.path.abspath(source)), "fer2013.csv")
    if not os.path.isfile(pixels):
        raise InputError("%s: FER+ holds votes, not pixels; they come from fer2013.csv, not found at %s "
                         "(pass --pixels PATH)" % (source, pixels))
    votes_file = CsvFile(source)
    records = votes_file.records()
    columns = header_columns(source, records)
    votes_at = vote_columns(source, columns)
    usage_at = columns.index("usage")
    fer_file, fer_columns, fer_rows = read_rows(pixels)
    if "usage" not in fer_columns:
        raise InputError("%s line 1: no 'Usage' column to match FER+'s rows against" % pixels)
    fer_usage_at = fer_columns.index("usage")
    wanted = USAGE_OF_SPLIT[split]
    samples, no_votes = [], 0
    for record, fer_row in itertools.zip_longest(records, fer_rows):
        if record is None or fer_row is None:
            raise InputError("%s and %s have different numbers of rows: not the matching fer2013.csv"
                             % (source, pixels))
        line, _, _, fields = record
        index, fer_line, fer_fields, image = fer_row
        where = "%s line %d" % (source, line)
        if len(fields) != len(columns):
            bad.report("%s: %d fields, expected %d" % (where, len(fields), len(columns)))
            continue
        usage = fields[usage_at].strip()
        if usage not in USAGE_OF_SPLIT.values():
            bad.report("%s: unknown Usage %r (expected Training, PublicTest or PrivateTest)" % (where, usage))
            continue
        if len(fer_fields) > fer_usage_at and fer_fields[fer_usage_at].strip() != usage:
            raise InputError("%s: Usage %s but %s line %d says %s: not the matching fer2013.csv"
                             % (where, usage, pixels, fer_line, fer_fields[fer_usage_at].strip()))
        if usage != wanted:
            continue
        votes = parse_votes(fields, votes_at)
        if votes is None:
            bad.report("%s: votes %s are not non-negative numbers" % (where, [fields[i] for i in votes_at]))
            continue
        if votes.sum() == 0:
            no_votes += 1
            continue
        # argmax breaks a tie towards the class that comes first in the canonical order.
        samples.append(make_sample(row_key(index), int(np.argmax(votes)), image,
                                   tuple(float(v) for v in votes / votes.sum())))
    require_samples(samples, "%s (Usage %s)" % (source, wanted), split)
    return Dataset(samples, "ferplus", split, source,
                   [source_file(source, votes_file.md5), source_file(pixels, fer_file.md5, OFFICIAL_MD5)],
                   bad.messages, {NO_VOTES: no_votes})
