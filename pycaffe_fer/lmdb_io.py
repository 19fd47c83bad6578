"""Caffe Datum LMDBs: image records (uint8 C x H x W, BGR, int label) and soft-label records
(float_data of length C, shape C x 1 x 1), written atomically and read back in key order.

Each LMDB built by pycaffe_fer carries ``manifest.json`` inside its directory (Caffe reads only
``data.mdb``): where the records came from, their count and the hash of their key order, which is
equal for two LMDBs exactly when their records align one to one.
"""
import hashlib
import importlib.util
import json
import os
import sys

import lmdb
import numpy as np

from .atomic import atomic_path
from .errors import InputError, check_room

# LMDB reserves address space, not disk: a map this large costs nothing and never fills.
MAP_SIZE = 1 << 40
# Bytes per write transaction: a transaction holds its dirty pages in memory until it commits;
# small transactions reuse the same few cache-warm pages (measured: faster than 8 or 64 MB).
COMMIT_BYTES = 2 << 20
MANIFEST_NAME = "manifest.json"


def _caffe_pb2():
    """Caffe's generated protobuf module. Loaded from its file when ``caffe`` is not imported yet:
    ``import caffe`` loads libcaffe and scikit-image, a second of start-up that tools which only
    read and write Datums do not need. It is loaded under its own name, caffe.proto.caffe_pb2, so
    that a later ``import caffe`` finds it in sys.modules instead of registering caffe.proto a
    second time (protobuf >= 5, Debian 13's venv, refuses a file registered twice)."""
    name = "caffe.proto.caffe_pb2"
    if name in sys.modules:
        return sys.modules[name]
    package = importlib.util.find_spec("caffe")
    if package is None:
        raise ImportError("no caffe package on the path: run make setup")
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(package.submodule_search_locations[0], "proto", "caffe_pb2.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


caffe_pb2 = _caffe_pb2()


def record_key(index, source_key):
    """The LMDB key of the index-th record: zero-padded so byte order is record order."""
    return ("%08d_%s" % (index, source_key)).encode("utf-8")


def parse_record_key(key):
    """(index, source key) of a key ``record_key`` wrote."""
    index, _, source_key = key.decode("utf-8").partition("_")
    return int(index), source_key


def image_datum(image, label):
    """Serialized Datum of an H x W x C (OpenCV's BGR layout) or H x W uint8 image."""
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    datum = caffe_pb2.Datum()
    datum.height, datum.width, datum.channels = image.shape
    datum.data = np.ascontiguousarray(image.transpose(2, 0, 1)).tobytes()
    datum.label = int(label)
    return datum.SerializeToString()


def vector_datum(vector, label=0):
    """Serialized Datum(channels=C, height=1, width=1, float_data) of a soft-label vector."""
    vector = np.asarray(vector, dtype=np.float32).ravel()
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = vector.size, 1, 1
    datum.float_data.extend(vector.tolist())
    datum.label = int(label)
    return datum.SerializeToString()


def datum_array(datum):
    """C x H x W array of a Datum: uint8 for image records, float32 for float_data records."""
    shape = (datum.channels, datum.height, datum.width)
    if datum.data:
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape)
    return np.asarray(datum.float_data, dtype=np.float32).reshape(shape)


def read_lmdb(path):
    """Yield (key bytes, Datum) in key order: the order Caffe's Data layer reads them."""
    if not os.path.isdir(path):
        raise FileNotFoundError("%s: no LMDB directory there" % path)
    env = lmdb.open(path, readonly=True, lock=False, readahead=False, subdir=True)
    try:
        with env.begin() as txn:
            for key, value in txn.cursor():
                datum = caffe_pb2.Datum()
                datum.ParseFromString(value)
                yield key, datum
    finally:
        env.close()


def image_batches(path, batch_size):
    """(N x C x H x W uint8 images, labels) of an image LMDB in key order, batch by batch."""
    images, labels = [], []
    for _, datum in read_lmdb(path):
        images.append(datum_array(datum))
        labels.append(datum.label)
        if len(images) == batch_size:
            yield np.stack(images), np.asarray(labels)
            images, labels = [], []
    if images:
        yield np.stack(images), np.asarray(labels)


def lmdb_count(path):
    env = lmdb.open(path, readonly=True, lock=False, subdir=True)
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def lmdb_keys(path):
    """Yield the keys of an LMDB in order, without reading the records."""
    env = lmdb.open(path, readonly=True, lock=False, readahead=False, subdir=True)
    try:
        with env.begin() as txn:
            for key in txn.cursor().iternext(keys=True, values=False):
                yield key
    finally:
        env.close()


def read_labels(path):
    """The int labels of an image LMDB's records, in key order (the order a Data layer reads them)."""
    return np.array([datum.label for _, datum in read_lmdb(path)], dtype=np.int64)


class KeyOrder:
    """SHA-256 of keys in order: two LMDBs with the same one read record by record in step."""

    def __init__(self):
        self._digest = hashlib.sha256()

    def add(self, key):
        self._digest.update(key + b"\n")

    def hexdigest(self):
        return self._digest.hexdigest()


def key_order_hash(path):
    """The key order hash of the LMDB at ``path``, recomputed from its keys."""
    order = KeyOrder()
    for key in lmdb_keys(path):
        order.add(key)
    return order.hexdigest()


def manifest_path(lmdb_path):
    return os.path.join(lmdb_path, MANIFEST_NAME)


def read_manifest(lmdb_path):
    """The manifest dict of an LMDB built by pycaffe_fer."""
    with open(manifest_path(lmdb_path)) as handle:
        return json.load(handle)


class LMDBWriter:
    """Write (key, serialized Datum) records into a temporary sibling of ``path``; rename on success.

    ``with LMDBWriter(path, force=False) as writer: writer.put(key, value)``, keys in increasing
    byte order (``record_key`` gives them): records are appended, the fast path for large values.
    Without ``force`` an existing ``path`` is refused before anything is written; a failure leaves
    nothing behind (a full disk: errors.DiskFull naming ``path``). A dict assigned to
    ``writer.manifest`` is written, with ``count`` and ``key_order_sha256`` added, as the LMDB's
    manifest.json. ``written``: whether the LMDB is complete at ``path``.
    """

    def __init__(self, path, force=False):
        self.path = path
        self.force = force
        self.count = 0
        self.manifest = None
        self.written = False
        self._key_order = KeyOrder()
        self._pending_bytes = 0
        self._env = self._txn = None

    def __enter__(self):
        if not self.force and os.path.lexists(self.path):
            raise FileExistsError("%s already exists (pass --force to replace it)" % self.path)
        self._atomic = atomic_path(self.path, is_dir=True, replace=self.force)
        self._tmp = self._atomic.__enter__()
        try:
            # No fsync per commit: an interrupted build is thrown away, so one sync at the end suffices.
            self._env = self._lmdb(lmdb.open, self._tmp, map_size=MAP_SIZE, subdir=True, meminit=False, sync=False)
            self._txn = self._env.begin(write=True)
        except BaseException as error:
            self._close()
            self._atomic.__exit__(type(error), error, error.__traceback__)
            raise
        return self

    def _lmdb(self, call, *args, **kwargs):
        """``call(*args, **kwargs)``; LMDB's errors name no errno (a short write on a full disk is
        EIO), so the room left tells a full disk (errors.check_room) from another failure."""
        try:
            return call(*args, **kwargs)
        except lmdb.Error as error:
            check_room(self._tmp)
            raise InputError("%s: cannot write the LMDB: %s" % (self.path, error))

    def put(self, key, value):
        if not self._lmdb(self._txn.put, key, value, append=True, overwrite=False):
            raise ValueError("%s: key %r does not come after the previous one" % (self.path, key))
        self._key_order.add(key)
        self.count += 1
        self._pending_bytes += len(value)
        if self._pending_bytes >= COMMIT_BYTES:
            self._lmdb(self._txn.commit)
            self._txn = self._env.begin(write=True)
            self._pending_bytes = 0

    def _close(self):
        if self._txn is not None:
            self._txn.abort()
        if self._env is not None:
            self._env.close()
        self._env = self._txn = None

    def _finish(self):
        try:
            self._lmdb(self._txn.commit)
            self._txn = None
            self._lmdb(self._env.sync, True)
        finally:
            self._close()
        if self.manifest is not None:
            manifest = dict(self.manifest, count=self.count, key_order_sha256=self._key_order.hexdigest())
            with open(os.path.join(self._tmp, MANIFEST_NAME), "w") as handle:
                json.dump(manifest, handle, indent=1, sort_keys=True)
                handle.write("\n")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self._finish()
            except BaseException as error:
                self._atomic.__exit__(type(error), error, error.__traceback__)  # removes the temporary copy
                raise
        else:
            self._close()
        suppressed = self._atomic.__exit__(exc_type, exc, tb)
        self.written = exc_type is None
        return suppressed
