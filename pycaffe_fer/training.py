"""Training runs: one directory per run, resumable, trained by real Caffe in its own process.

A run directory holds

    run.json              what the run is (head, gamma, LMDBs, initial weights, seed, net and solver
                          settings) and its status: prepared | finished | failed; once finished, its
                          model and the model's MD5 (model_digest)
    train_val.prototxt    solver.prototxt    deploy.prototxt
    snapshots/            <name>_iter_<N>.caffemodel / .solverstate, and <N>.done once both are whole,
                          holding their MD5s
    train.lock            held by the process training the run (folder_lock), and naming it
    train.log             the progress lines (iteration, loss, lr, speed, ETA, validation accuracy)
    metrics.csv           the same as numbers: iteration, loss, lr, images_per_s, val_accuracy (read_metrics)

Training goes in segments of ``solver.snapshot`` iterations, each with a fresh solver restored from
the previous segment's snapshot, its data layers moved to where the previous segment stopped and
Caffe's random generator seeded from (seed, first iteration). An interrupted run resumes at its last
whole snapshot and, on the CPU with a fixed seed, ends with exactly the weights of an uninterrupted run.
A snapshot whose files are no longer what the run wrote (their MD5s) is not resumed from: the run
goes back to the last one that is, and a finished run whose final model changed (model_damage) is
made to train again from there (reopen).
"""
import collections
import csv
import hashlib
import io
import json
import math
import os
import sys
import time

import numpy as np

from . import folder_lock, paths, templates
from .atomic import append_whole, atomic_path
from .config import BLAS_THREADS
from .errors import DiskFull, InputError, check_room, is_disk_full, run_cli
from .devices import use_device
from .lmdb_io import lmdb_count
from .tasks import TaskFailed, task_main
from .weights import copy_weights, describe, model_blob_shapes, model_digest

RUN_FILE = "run.json"
SNAPSHOT_DIR = "snapshots"
METRICS_FILE = "metrics.csv"
LOG_FILE = "train.log"
LOCK_FILE = "train.lock"
METRICS_COLUMNS = ("iteration", "loss", "lr", "images_per_s", "val_accuracy")
# What the BLAS libraries Caffe may be linked with read their thread count from, when they load.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class TrainingError(TaskFailed):
    """A run that cannot go on (loss became NaN/inf, or its process failed)."""


# run.json's "spec" (make_spec's fields) as read_spec gives it; source and softlabels are a
# soft-label run's only, identities an identity run's (pretraining).
RunSpec = collections.namedtuple("RunSpec", "name head gamma train_lmdb val_lmdb train_soft_lmdb val_soft_lmdb weights "
                                            "seed source softlabels identities", defaults=(None, None, None))


def read_run(run_dir):
    with open(os.path.join(run_dir, RUN_FILE)) as handle:
        return json.load(handle)


def read_spec(run_dir):
    """What the run is: its RunSpec."""
    return RunSpec(**read_run(run_dir)["spec"])


def read_settings(run_dir):
    """What the run trains with: {"net": ..., "solver": ... (its own random_seed), "blas_threads": N}."""
    return recorded_settings(read_run(run_dir))


def recorded_settings(run):
    """The settings of a run.json's contents. One written before the BLAS thread count was recorded
    reads as the default count: its nets, trained with a count nobody wrote down, are kept."""
    return dict({"blas_threads": BLAS_THREADS}, **run["settings"])


def iterations(run_dir):
    """How many iterations the run trains: its solver's max_iter."""
    return int(read_settings(run_dir)["solver"]["max_iter"])


def write_run(run_dir, run):
    with atomic_path(os.path.join(run_dir, RUN_FILE)) as tmp:
        with open(tmp, "w") as handle:
            json.dump(run, handle, indent=2, sort_keys=True)


def is_finished(run_dir):
    path = os.path.join(run_dir, RUN_FILE)
    return os.path.exists(path) and read_run(run_dir).get("status") == "finished"


def final_model(run_dir):
    """The finished run's last caffemodel."""
    run = read_run(run_dir)
    if run.get("status") != "finished":
        raise InputError("%s: the run has not finished (status %s)" % (run_dir, run.get("status")))
    return os.path.join(run_dir, run["model"])


def fingerprint(matrix):
    """A short hash of a soft-label matrix, to tell runs trained on different soft labels apart."""
    return hashlib.sha1(np.round(np.asarray(matrix, dtype=np.float64), 10).tobytes()).hexdigest()[:16]


def make_spec(name, train, val, seed, rows=None, gamma=None, weights=None, source="constructed", identities=None):
    """The spec of a hard-label run, or with soft labels ``rows`` (C x C, for ``gamma``, from
    ``source``: softlabel.SOURCES) a soft-label one, whose spec names the soft labels' fingerprint,
    so a run trained on other soft labels is never taken for this one; with ``identities``, a run
    that classifies that many identities (the LMDBs' labels) on the identity head (pretraining)."""
    head = "identity" if identities is not None else "hard" if rows is None else "soft"
    spec = {"name": name, "head": head, "gamma": gamma, "train_lmdb": train,
            "val_lmdb": val, "train_soft_lmdb": None, "val_soft_lmdb": None, "weights": weights, "seed": int(seed)}
    if identities is not None:
        spec["identities"] = int(identities)
    if rows is not None:
        spec["source"] = source
        spec["train_soft_lmdb"] = paths.soft_lmdb(train, gamma, source)
        spec["val_soft_lmdb"] = paths.soft_lmdb(val, gamma, source)
        spec["softlabels"] = fingerprint(rows)
    return spec


def run_identity(config, spec):
    """What makes two runs the same run: the spec but its name, and the settings (net, solver, BLAS threads)."""
    return {"spec": {k: v for k, v in spec.items() if k != "name"}, "settings": _settings(config, spec)}


def _settings(config, spec):
    return {"net": config["net"], "solver": dict(config["solver"], random_seed=spec["seed"]),
            "blas_threads": int(config.get("blas_threads", BLAS_THREADS))}


def task_environment(run_dir):
    """The environment a run's process must start with (executor.py, slurm.py): its BLAS thread
    count, which the BLAS library reads once, when Caffe loads."""
    threads = str(read_settings(run_dir)["blas_threads"])
    return {name: threads for name in BLAS_THREAD_VARIABLES}


def prepare_run(run_dir, config, spec):
    """Write a run directory's prototxts and run.json, unless it already holds this very run.

    spec: from make_spec (name, head ('hard' | 'soft' | 'identity'), gamma, train_lmdb, val_lmdb,
    train_soft_lmdb, val_soft_lmdb (soft head), weights (a caffemodel or None), seed, identities
    (identity head)).
    A directory that holds a different run (other spec or settings) is refused, not overwritten.
    """
    run_dir = os.path.abspath(run_dir)
    settings = _settings(config, spec)
    wanted = {"spec": spec, "settings": settings}
    if os.path.exists(os.path.join(run_dir, RUN_FILE)):
        existing = read_run(run_dir)
        recorded = recorded_settings(existing)
        if {"spec": existing["spec"], "settings": recorded} == wanted:
            return run_dir
        differs = sorted(k for k in set(spec) | set(existing["spec"]) if spec.get(k) != existing["spec"].get(k))
        differs += [k for k in sorted(settings) if settings[k] != recorded[k]]
        raise InputError("%s holds a run made with other settings (%s differ): remove it or use another "
                         "output directory" % (run_dir, ", ".join(differs)))
    os.makedirs(os.path.join(run_dir, SNAPSHOT_DIR), exist_ok=True)
    run_config = dict(config, solver=settings["solver"])
    net_path = os.path.join(run_dir, "train_val.prototxt")
    templates.write_prototxt(net_path, templates.render_train_val(
        run_config, spec["head"], spec["train_lmdb"], spec["val_lmdb"],
        spec.get("train_soft_lmdb"), spec.get("val_soft_lmdb"), spec.get("identities")), "net")
    templates.write_prototxt(os.path.join(run_dir, "deploy.prototxt"),
                             templates.render_deploy(run_config, spec.get("identities")), "net")
    # The solver has no test net: train() validates at the end of each segment itself, with its
    # progress lines, instead of Caffe testing into its log.
    test_iter = templates.test_iter_for(run_config, spec["val_lmdb"], "val")
    templates.write_prototxt(os.path.join(run_dir, "solver.prototxt"), templates.render_solver(
        run_config, net_path, os.path.join(run_dir, SNAPSHOT_DIR, spec["name"]), 0), "solver")
    write_run(run_dir, dict(wanted, status="prepared", test_iter=test_iter))
    return run_dir


def _whole_snapshots(run_dir):
    """{iteration: (caffemodel, solverstate)} of the snapshots whose writing completed."""
    name = read_spec(run_dir).name
    found = {}
    for entry in os.listdir(os.path.join(run_dir, SNAPSHOT_DIR)):
        if entry.endswith(".done"):
            iteration = int(entry[:-5])
            prefix = _snapshot_prefix(run_dir, name, iteration)
            found[iteration] = (prefix + ".caffemodel", prefix + ".solverstate")
    return found


def _snapshot_prefix(run_dir, name, iteration):
    """Where Caffe's snapshot at `iteration` goes (SGDSolver appends .caffemodel / .solverstate)."""
    return os.path.join(run_dir, SNAPSHOT_DIR, "%s_iter_%d" % (name, iteration))


def _marker(run_dir, iteration):
    """The file that says the snapshot at `iteration` is whole, holding its files' MD5s."""
    return os.path.join(run_dir, SNAPSHOT_DIR, "%d.done" % iteration)


def _mark_whole(run_dir, iteration, files):
    with atomic_path(_marker(run_dir, iteration)) as tmp:
        with open(tmp, "w") as handle:
            json.dump({"caffemodel": model_digest(files[0]), "solverstate": model_digest(files[1])}, handle)


def _recorded_digests(run_dir, iteration):
    """{caffemodel, solverstate: MD5} of a whole snapshot; {} for a marker written before they were
    recorded (empty)."""
    with open(_marker(run_dir, iteration)) as handle:
        text = handle.read()
    return json.loads(text) if text else {}


def _damage(path, digest, record):
    """Why `path` is not the file that `record` (a snapshot's marker, run.json) says the run wrote
    with MD5 `digest`, in one line; None if it is. Where the record holds no digest (written before
    they were recorded), a caffemodel passes if it parses (a model cut short inside a layer does not)."""
    try:
        if digest is None:
            if path.endswith(".caffemodel"):
                model_blob_shapes(path)
            return None
        if model_digest(path) == digest:
            return None
    except InputError as error:
        return str(error)
    return "%s: not the file the run wrote (its MD5 differs from the one in %s)" % (path, record)


def _drop_damaged_snapshots(run_dir, say):
    """Take the marker away from each snapshot, latest first, whose files are no longer what the run
    wrote, down to the first that still is: training resumes from there and writes the others again."""
    snapshots = _whole_snapshots(run_dir)
    for iteration in sorted(snapshots, reverse=True):
        digests = _recorded_digests(run_dir, iteration)
        damage = next(filter(None, (_damage(path, digests.get(kind), _marker(run_dir, iteration))
                                    for kind, path in zip(("caffemodel", "solverstate"), snapshots[iteration]))), None)
        if damage is None:
            return
        say("%s: not resuming from iteration %d" % (damage, iteration))
        os.remove(_marker(run_dir, iteration))


def model_damage(run_dir):
    """Why a finished run's final model is not the one the run finished with, in one line; None if it
    is, or if the run has not finished. A run finished before model digests were recorded (no
    model_digest in its run.json) passes if its model parses."""
    run = read_run(run_dir)
    if run.get("status") != "finished":
        return None
    return _damage(os.path.join(run_dir, run["model"]), run.get("model_digest"), os.path.join(run_dir, RUN_FILE))


def reopen(run_dir):
    """A finished run whose final model is damaged (model_damage) back to one that trains: its final
    snapshot is no longer taken as whole, and train() resumes from the last snapshot that is intact."""
    run = read_run(run_dir)
    write_run(run_dir, dict({k: v for k, v in run.items() if k not in ("model", "model_digest")}, status="prepared"))
    final = _marker(run_dir, iterations(run_dir))
    if os.path.exists(final):
        os.remove(final)


def _data_layer_span(net):
    """Names of the first and last Data layers, which must open the net (they feed everything)."""
    types = [layer.type for layer in net.layers]
    count = 0
    while count < len(types) and types[count] == "Data":
        count += 1
    if count == 0 or "Data" in types[count:]:
        raise TrainingError("the train net must begin with its Data layers")
    names = list(net._layer_names)
    return names[0], names[count - 1]


def _skip_batches(net, iteration, batch_size, records):
    """Move the net's Data layers to where `iteration` iterations of training left them.

    The layers cycle through `records` records, `batch_size` at a time, from the first; after k
    iterations they stand at record k*B mod n, which j whole batches reach when j = k mod n/gcd(n, B).
    The pipeline pads its training LMDBs to a multiple of B, so j < n/B.
    """
    period = records // math.gcd(records, batch_size)
    first, last = _data_layer_span(net)
    for _ in range(iteration % period):
        net.forward(start=first, end=last)


def _segment_seed(seed, iteration):
    return (int(seed) * 1000003 + int(iteration)) % (2 ** 31)


def _format_eta(seconds):
    seconds = int(round(seconds))
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def _validation_accuracy(run_dir, solver, test_iter):
    """Mean `accuracy` of the TEST phase of train_val over test_iter batches, with the solver's weights."""
    import caffe

    net = caffe.Net(os.path.join(run_dir, "train_val.prototxt"), caffe.TEST)
    net.share_with(solver.net)
    return float(np.mean([float(net.forward()["accuracy"]) for _ in range(test_iter)]))


class RunLog:
    """A run's progress lines, to its train.log and to `log` (default: print), prefixed with its name."""

    def __init__(self, run_dir, name, log=None):
        self.name, self.log = name, log or print
        self.path = os.path.join(run_dir, LOG_FILE)

    def __call__(self, line):
        line = "[%s] %s" % (self.name, line)
        append_whole(self.path, line + "\n")
        self.log(line)


class RunMetrics:
    """A run's metrics.csv: a row (iteration, loss, lr, images/s) each time progress is displayed and
    one (iteration, validation accuracy) where a segment ends, written as they come."""

    def __init__(self, run_dir):
        self.path = os.path.join(run_dir, METRICS_FILE)

    def keep_to(self, iteration):
        """Drop the rows past `iteration`: a resumed run redoes them from its snapshot there."""
        rows = read_metrics_rows(self.path) if os.path.exists(self.path) else None
        if rows is not None and all(int(row["iteration"]) <= iteration for row in rows):
            return
        with atomic_path(self.path) as tmp:
            with open(tmp, "w") as handle:
                writer = csv.writer(handle)
                writer.writerow(METRICS_COLUMNS)
                writer.writerows([row[c] for c in METRICS_COLUMNS] for row in rows or [] if int(row["iteration"]) <= iteration)

    def add(self, iteration, **values):
        """A row, appended whole or not at all (a full disk)."""
        line = io.StringIO()
        csv.writer(line).writerow([iteration] + ["%.6g" % values[c] if c in values else "" for c in METRICS_COLUMNS[1:]])
        append_whole(self.path, line.getvalue())


def read_metrics_rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def read_metrics(run_dir):
    """A run's metrics.csv as {column: [values]} per kind of row: "progress" (iteration, loss, lr,
    images_per_s) and "validation" (iteration, val_accuracy); empty lists where it has none."""
    rows = read_metrics_rows(os.path.join(run_dir, METRICS_FILE)) if os.path.exists(
        os.path.join(run_dir, METRICS_FILE)) else []
    progress = [row for row in rows if row["loss"]]
    validation = [row for row in rows if row["val_accuracy"]]
    return {"progress": {c: [float(row[c]) for row in progress] for c in METRICS_COLUMNS[:4]},
            "validation": {c: [float(row[c]) for row in validation] for c in ("iteration", "val_accuracy")}}


def _start_segment(run_dir, spec, start, snapshots, say, resuming):
    """A fresh solver at iteration `start`: restored from its snapshot, or initialised from the spec's
    weights at 0; seeded, and its data layers where an uninterrupted run would have them."""
    import caffe

    solver = caffe.SGDSolver(os.path.join(run_dir, "solver.prototxt"))
    if start:
        solver.restore(snapshots[start][1])
        if resuming:
            say("resumed from iteration %d" % start)
    elif spec.get("weights"):
        say("initialised from %s: %s" % (spec["weights"], describe(copy_weights(solver.net, spec["weights"]))))
    caffe.set_random_seed(_segment_seed(spec["seed"], start))
    return solver


def _snapshot_room(solver, prefix):
    """DiskFull naming the snapshot unless its room is free: Caffe aborts the process on a snapshot
    it cannot write. It takes the net's weights (the caffemodel) and as much again (the solverstate's
    momentum history); files an earlier attempt left there (killed before its marker, or damaged)
    go first, or _finish_segment would take them for this segment's."""
    for path in (prefix + ".caffemodel", prefix + ".solverstate"):
        if os.path.exists(path):
            os.remove(path)
    size = 2 * sum(blob.data.nbytes for blobs in solver.net.params.values() for blob in blobs)
    try:
        check_room(prefix + ".caffemodel", size)
    except OSError as error:
        if not is_disk_full(error):
            raise
        raise DiskFull(prefix + ".caffemodel") from error


def _step_to(solver, end, max_iter, display, say, metrics, batch_size, prefix):
    """Step the solver to iteration `end`, printing progress every `display` iterations (and into
    metrics.csv); the last step, where the snapshot `prefix` is written, only with room for it (and
    the first too: a disk already full fails the segment before its hours of training, not after)."""
    start, began, losses = solver.iter, time.time(), []
    while solver.iter < end:
        if solver.iter in (start, end - 1):
            _snapshot_room(solver, prefix)
        solver.step(1)
        loss = solver.net.blobs["loss"].data.item()      # a 1-element blob; float() of it is deprecated in numpy 2
        if not math.isfinite(loss):
            raise TrainingError("loss became %s at iteration %d (lr %g): lower solver.base_lr or check "
                                "the data" % (loss, solver.iter, solver.lr))
        losses.append(loss)
        if solver.iter % display == 0 or solver.iter == end:
            speed = (solver.iter - start) / max(time.time() - began, 1e-9)
            say("iter %d/%d  loss %.4f  lr %g  %.2f it/s  ETA %s" % (
                solver.iter, max_iter, np.mean(losses[-display:]), solver.lr, speed,
                _format_eta((max_iter - solver.iter) / speed)))
            metrics.add(solver.iter, loss=float(np.mean(losses[-display:])), lr=solver.lr, images_per_s=speed * batch_size)


def _finish_segment(run_dir, name, solver, test_iter, say, metrics):
    """Snapshot (step() snapshots only at multiples of `snapshot`), validate, and mark the snapshot whole."""
    prefix = _snapshot_prefix(run_dir, name, solver.iter)
    if not os.path.exists(prefix + ".solverstate"):
        solver.snapshot()
    accuracy = _validation_accuracy(run_dir, solver, test_iter)
    say("iter %d  validation accuracy %.4f" % (solver.iter, accuracy))
    metrics.add(solver.iter, val_accuracy=accuracy)
    _mark_whole(run_dir, solver.iter, (prefix + ".caffemodel", prefix + ".solverstate"))


def train(run_dir, gpu=None, log=None):
    """Train a prepared run to its max_iter, resuming from its last intact snapshot; return the model.
    One process trains a run at a time (its train.lock): a second is refused (folder_lock.FolderInUse)."""
    run_dir = os.path.abspath(run_dir)
    say = RunLog(run_dir, read_spec(run_dir).name, log)
    with folder_lock.hold(os.path.join(run_dir, LOCK_FILE), " ".join(sys.argv), say):
        return _train_held(run_dir, gpu, say)


def _train_held(run_dir, gpu, say):
    run = read_run(run_dir)
    if run["status"] == "finished":
        return final_model(run_dir)
    spec, solver_settings = run["spec"], run["settings"]["solver"]
    max_iter, segment = int(solver_settings["max_iter"]), int(solver_settings["snapshot"] or solver_settings["max_iter"])
    display = int(solver_settings.get("display") or 20)
    batch_size = int(run["settings"]["net"]["batch_size"])
    records = lmdb_count(spec["train_lmdb"])
    metrics = RunMetrics(run_dir)
    threads = task_environment(run_dir)["OPENBLAS_NUM_THREADS"]
    if os.environ.get("OPENBLAS_NUM_THREADS") != threads:
        say("warning: OPENBLAS_NUM_THREADS is %s in this process, the run's blas_threads %s: start it with "
            "OPENBLAS_NUM_THREADS=%s (the executors do) for the run's own numbers"
            % (os.environ.get("OPENBLAS_NUM_THREADS", "unset"), threads, threads))
    use_device(gpu)
    _drop_damaged_snapshots(run_dir, say)
    resuming = True
    try:
        while True:
            snapshots = _whole_snapshots(run_dir)
            start = max(snapshots) if snapshots else 0
            if start >= max_iter:
                break
            solver = _start_segment(run_dir, spec, start, snapshots, say, resuming)
            metrics.keep_to(start)
            _skip_batches(solver.net, start, batch_size, records)
            end = min(start + segment, max_iter)
            _step_to(solver, end, max_iter, display, say, metrics, batch_size, _snapshot_prefix(run_dir, spec["name"], end))
            _finish_segment(run_dir, spec["name"], solver, run["test_iter"], say, metrics)
            del solver
            resuming = False
    except TrainingError as error:
        write_run(run_dir, dict(run, status="failed", error=str(error)))
        say("FAILED: %s" % error)
        raise
    model = os.path.relpath(_whole_snapshots(run_dir)[max_iter][0], run_dir)
    digest = _recorded_digests(run_dir, max_iter).get("caffemodel") or model_digest(os.path.join(run_dir, model))
    write_run(run_dir, dict(run, status="finished", model=model, model_digest=digest))
    return os.path.join(run_dir, model)


run_task = train
task_done = is_finished


if __name__ == "__main__":
    sys.exit(run_cli(lambda argv: task_main(train, "Train one prepared run directory (resumes if interrupted).", argv)))
