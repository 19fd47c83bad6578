"""Build a Caffe image LMDB, and its soft-label LMDBs in the same key order, from a Dataset.

Records are shuffled once (Caffe's Data layer never shuffles) and keyed ``%08d_<source key>``.
Worker processes decode, mirror, resize and serialize; the parent writes in key order, holding at
most two windows of records in memory, so memory stays flat whatever the dataset size. Every LMDB
is built in a temporary sibling and renamed when complete, with its manifest.json inside; a build
that fails (a full disk: one line, errors.DiskFull) leaves none of its LMDBs. With
``detect``, each image is cut to its largest face by the detector and margin prediction uses
(pycaffe_fer.faces), so uncropped photographs train on what predict feeds the nets.
"""
import collections
import contextlib
import functools
import hashlib
import itertools
import multiprocessing
import os
import shutil
import signal
from multiprocessing import shared_memory

import cv2
import numpy as np
from tqdm import tqdm

from .classes import CLASSES, NUM_CLASSES
from . import faces, paths
from .datasets.base import file_digest
from .errors import InputError
from .lmdb_io import LMDBWriter, image_datum, read_lmdb, read_manifest, record_key, vector_datum
from .resize import fit
from .softlabel import load_matrix, perturb, validate_matrix

# Records per task sent to a worker; records per window of tasks in flight (two windows at most),
# and the shared memory one window of serialized records may fill (Docker's /dev/shm is 64 MB).
CHUNK = 8
WINDOW = 512
WINDOW_BYTES = 16 << 20
# How many skipped-record messages a manifest keeps (the count is always complete).
SKIPPED_EXAMPLES = 20


class RecordSlots:
    """Shared memory that worker processes serialize records into, so that only (slot, length)
    crosses the pipe to the writer: piping 150 kB records costs more CPU than decoding them."""

    def __init__(self, count, slot_bytes):
        self.count, self.slot_bytes = count, slot_bytes
        self.memory = shared_memory.SharedMemory(create=True, size=count * slot_bytes)

    def write(self, slot, record):
        start = slot * self.slot_bytes
        self.memory.buf[start:start + len(record)] = record

    def read(self, slot, length):
        start = slot * self.slot_bytes
        return self.memory.buf[start:start + length]

    def release(self):
        self.memory.close()
        self.memory.unlink()


_slots = None      # in a worker process: the RecordSlots it writes into
_detector = None   # and the face detector that crops each image (``detect``), or None


def single_threaded_opencv():
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would oversubscribe


def _start_worker(slots, detect=None):
    global _slots, _detector
    _slots = slots
    single_threaded_opencv()
    # The parent has checked the detector (and said so once if ssd fell back to haar).
    _detector = faces.open_detector(detect, log=lambda line: None) if detect else None
    # Ctrl-C is the parent's to handle: it stops the pool and removes the half-built LMDB.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def encode(task, size, gray):
    """Decode, mirror, resize and serialize one (slot, sample) into its slot: (length, MD5 of the
    source bytes), or (0, message) for a bad image."""
    slot, sample = task
    try:
        image, digest = sample.image.load(gray)
    except InputError as error:
        return 0, str(error)
    if _detector is not None:
        image = faces.largest_face_crop(image, _detector)
        if image is None:
            return 0, "%s: no face found (the %s detector)" % (getattr(sample.image, "path", sample.key), _detector.name)
    if sample.mirror:
        image = cv2.flip(image, 1)
    record = image_datum(fit(image, size), sample.label)
    _slots.write(slot, record)
    return len(record), digest


def ordered_map(pool, func, items, window=WINDOW, chunk=CHUNK):
    """``func`` over ``items`` in order on ``pool``, at most two windows of results in flight.

    A plain ``imap`` over everything would queue results without bound whenever the writer is the
    slower side; here window k+1 is computed while window k is written.
    """
    items = iter(items)
    pending = collections.deque()
    while True:
        block = list(itertools.islice(items, window))
        if block:
            pending.append(pool.imap(func, block, chunk))
        if not pending:
            return
        if len(pending) == 2 or not block:
            for result in pending.popleft():
                yield result


def default_workers():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def soft_records(rows):
    """Serialized soft-label Datum of each class: row y of ``rows`` (labelled y) for a record of label y."""
    return [vector_datum(rows[label], label) for label in range(NUM_CLASSES)]


def _record_of_label(records):
    return lambda sample: records[sample.label]


def refuse_existing(paths, force):
    existing = [path for path in paths if os.path.lexists(path)]
    if existing and not force:
        raise InputError("%s already exists (pass --force to replace it)" % existing[0])


def _soft_plan(out, soft_matrix, gammas, soft_vectors, dataset):
    """[(LMDB path, manifest fields, per-sample record function)] of the soft-label LMDBs to write."""
    gammas = [float(gamma) for gamma in gammas]
    for gamma in gammas:
        if not gamma > 0:   # also refuses nan
            raise InputError("--gamma %s: the perturbation factor must be > 0" % gamma)
    if gammas and soft_matrix is None:
        raise InputError("--gamma needs a soft-label matrix (--softlabels D.npy)")
    plan = []
    if soft_matrix is not None:
        if not gammas:
            raise InputError("--softlabels needs at least one --gamma")
        matrix_file = None
        if isinstance(soft_matrix, str):
            path, soft_matrix = soft_matrix, load_matrix(soft_matrix, NUM_CLASSES)
            matrix_file = {"path": os.path.abspath(path), "md5": file_digest(path)}
        matrix = validate_matrix(soft_matrix, "soft-label matrix", NUM_CLASSES)
        for gamma in gammas:
            rows = perturb(matrix, gamma)  # eq. 4
            fields = {"gamma": gamma, "matrix": matrix.tolist(), "matrix_file": matrix_file,
                      "soft_labels": rows.tolist()}
            plan.append((paths.soft_lmdb(out, gamma), fields, _record_of_label(soft_records(rows))))
    if soft_vectors is None:
        soft_vectors = dataset.has_soft()
    if soft_vectors:
        if not dataset.has_soft():
            raise InputError("%s: format %s has no per-image soft labels" % (dataset.source, dataset.format))
        plan.append((paths.vector_lmdb(out), {"per_image": "the source's distribution over the classes"},
                     lambda sample: vector_datum(sample.soft, sample.label)))
    return plan


def build_image_lmdb(dataset, out, size=224, gray=False, seed=0, force=False, skip_bad=False,
                     soft_matrix=None, gammas=(), soft_vectors=None, workers=None, progress=True, detect=None):
    """Write ``dataset`` (from ``pycaffe_fer.datasets.open_dataset``) to the image LMDB ``out``.

    Images become size x size, 3-channel BGR (gray ones replicated) or 1-channel with ``gray``,
    labels canonical; records are shuffled with ``seed``. With ``soft_matrix`` (a C x C array or a
    .npy/.csv path, see ``softlabel.load_matrix``) and ``gammas``, one soft-label LMDB per gamma at ``<out>_soft_g<gamma>`` holds
    row y of D perturbed by eq. 4 for each record of label y; per-image soft labels (FER+) go to
    ``<out>_soft`` (``soft_vectors``: None = when the dataset has them). ``skip_bad`` skips and
    counts unreadable or truncated images instead of stopping. ``detect`` ("ssd" or "haar") crops
    each image to its largest face (pycaffe_fer.faces.largest_face_crop); an image with no face is
    a bad record. Returns the image LMDB's manifest.
    """
    out = os.path.normpath(out)
    size = int(size)
    if size < 1:
        raise InputError("--size %d: must be at least 1" % size)
    soft = _soft_plan(out, soft_matrix, gammas, soft_vectors, dataset)
    refuse_existing([out] + [path for path, _, _ in soft], force)
    if not len(dataset):
        raise InputError("%s: split %s has no records" % (dataset.source, dataset.split))
    if detect:
        detect = faces.open_detector(detect).name     # haar, when the ssd model is absent
    samples = [dataset.samples[i] for i in np.random.RandomState(seed).permutation(len(dataset))]
    workers = workers or default_workers()
    slot_bytes = len(image_datum(np.zeros((size, size, 1 if gray else 3), np.uint8), NUM_CLASSES - 1))
    window = max(4 * CHUNK * workers, min(WINDOW, WINDOW_BYTES // slot_bytes))
    # Two windows in flight: a slot is reused only after the writer has copied its record out.
    slots = RecordSlots(2 * window, slot_bytes)
    pool = multiprocessing.Pool(workers, initializer=_start_worker, initargs=(slots, detect))
    soft_writers = []
    try:
        with contextlib.ExitStack() as stack:
            image_writer = stack.enter_context(LMDBWriter(out, force))
            soft_writers = [stack.enter_context(LMDBWriter(path, force)) for path, _, _ in soft]
            results = ordered_map(pool, functools.partial(encode, size=size, gray=gray),
                                  ((i % slots.count, sample) for i, sample in enumerate(samples)), window)
            bar = stack.enter_context(tqdm(total=len(samples), unit="img", desc=os.path.basename(out),
                                           disable=not progress, mininterval=0.5))
            written = _write_records(samples, results, slots, image_writer, soft_writers, soft, skip_bad, bar)
            if not image_writer.count:
                raise InputError("%s: every record of split %s was bad (%d skipped)"
                                 % (dataset.source, dataset.split, len(written["skipped"])))
            image_writer.manifest = _image_manifest(dataset, size, gray, seed, written, soft, detect)
            for writer, (_, fields, _) in zip(soft_writers, soft):
                writer.manifest = dict(fields, kind="soft", image_lmdb=os.path.abspath(out),
                                       split=dataset.split, seed=seed)
    except BaseException:
        # The soft-label LMDBs finish before the image LMDB: those already in place when a later
        # one failed (a full disk) go too, so a rerun finds none of the set and writes it all.
        for writer in soft_writers:
            if writer.written:
                shutil.rmtree(writer.path)
        raise
    finally:
        # close, not terminate: a worker killed while it holds the result queue's lock leaves that
        # lock taken, and the pool's task handler hangs on it. At most two windows of tasks remain.
        pool.close()
        pool.join()
        slots.release()
    return read_manifest(out)


def _write_records(samples, results, slots, image_writer, soft_writers, soft, skip_bad, bar):
    """Write each encoded sample (in order) and its soft-label records; {per_class, content, skipped}."""
    skipped = []
    per_class = np.zeros(NUM_CLASSES, dtype=np.int64)
    content = hashlib.md5()
    for index, (sample, (length, info)) in enumerate(zip(samples, results)):
        bar.update()
        if not length:
            if not skip_bad:
                raise InputError(info)
            skipped.append(info)
            continue
        key = record_key(image_writer.count, sample.key)
        # Released at once (LMDB has copied it): a view kept alive by an error's traceback would
        # keep the shared memory from closing.
        with slots.read(index % slots.count, length) as record:
            image_writer.put(key, record)
        for writer, (_, _, record) in zip(soft_writers, soft):
            writer.put(key, record(sample))
        per_class[sample.label] += 1
        content.update(key + b" " + info.encode("ascii") + b"\n")
    return {"per_class": per_class, "content": content, "skipped": skipped}


def _image_manifest(dataset, size, gray, seed, written, soft, detect):
    all_skipped = dataset.skipped + written["skipped"]
    return {
        "kind": "image",
        "source": dataset.source,
        "format": dataset.format,
        "split": dataset.split,
        "source_files": dataset.source_files,
        "notes": dataset.notes,
        "classes": list(CLASSES),
        "per_class": {name: int(n) for name, n in zip(CLASSES, written["per_class"])},
        "shape": [1 if gray else 3, size, size],
        "channel_order": "gray" if gray else "BGR",
        "seed": seed,
        "skipped_bad": len(all_skipped),
        "skipped_examples": all_skipped[:SKIPPED_EXAMPLES],
        "excluded": dataset.excluded,
        "content_md5": written["content"].hexdigest(),
        "soft_label_lmdbs": [os.path.abspath(path) for path, _, _ in soft],
        "face_detector": {"detector": detect, "margin": faces.FACE_MARGIN} if detect else None,
    }


def write_soft_lmdb(image_lmdb, soft_labels, out, force=False, **manifest):
    """The soft-label LMDB of an existing image LMDB, under the same keys in the same order.

    ``soft_labels``: C x C rows (e.g. ``softlabel.perturb(D, gamma)``); the record of an image of
    label y holds row y. ``manifest``: extra fields for its manifest (e.g. ``gamma=1.4``).
    Returns the manifest.
    """
    rows = validate_matrix(soft_labels, "soft labels for %s" % image_lmdb, NUM_CLASSES)
    refuse_existing([out], force)
    records = soft_records(rows)
    with LMDBWriter(out, force) as writer:
        for key, datum in read_lmdb(image_lmdb):
            if not 0 <= datum.label < NUM_CLASSES:
                raise InputError("%s: record %s has label %d, not 0..%d"
                                 % (image_lmdb, key.decode("utf-8", "replace"), datum.label, NUM_CLASSES - 1))
            writer.put(key, records[datum.label])
        writer.manifest = dict(manifest, kind="soft", image_lmdb=os.path.abspath(image_lmdb), soft_labels=rows.tolist())
    return read_manifest(out)
