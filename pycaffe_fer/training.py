"""Training runs: one directory per run, resumable, trained by real Caffe in its own process.

A run directory holds

    run.json              what the run is (head, gamma, LMDBs, initial weights, seed, net and solver
                          settings) and its status: prepared | finished | failed
    train_val.prototxt    solver.prototxt    deploy.prototxt
    snapshots/            <name>_iter_<N>.caffemodel / .solverstate, and <N>.done once both are whole
    train.log             the progress lines (iteration, loss, lr, speed, ETA, validation accuracy)

Training goes in segments of ``solver.snapshot`` iterations, each with a fresh solver restored from
the previous segment's snapshot, its data layers moved to where the previous segment stopped and
Caffe's random generator seeded from (seed, first iteration). An interrupted run resumes at its last
whole snapshot and, on the CPU with a fixed seed, ends with exactly the weights of an uninterrupted run.
"""
import argparse
import concurrent.futures
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time

import numpy as np

from . import templates
from .atomic import atomic_path
from .errors import InputError, run_cli
from .lmdb_io import lmdb_count
from .weights import copy_weights, describe

RUN_FILE = "run.json"
SNAPSHOT_DIR = "snapshots"


class TrainingError(Exception):
    """A run that cannot go on (loss became NaN/inf, or its process failed)."""


def read_run(run_dir):
    with open(os.path.join(run_dir, RUN_FILE)) as handle:
        return json.load(handle)


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


def prepare_run(run_dir, config, spec):
    """Write a run directory's prototxts and run.json, unless it already holds this very run.

    spec: name, head ('hard' | 'soft'), gamma, train_lmdb, val_lmdb, train_soft_lmdb,
    val_soft_lmdb (soft head), weights (a caffemodel or None), seed.
    A directory that holds a different run (other spec or settings) is refused, not overwritten.
    """
    run_dir = os.path.abspath(run_dir)
    settings = {"net": config["net"], "solver": dict(config["solver"], random_seed=spec["seed"])}
    wanted = {"spec": spec, "settings": settings}
    if os.path.exists(os.path.join(run_dir, RUN_FILE)):
        existing = read_run(run_dir)
        if {"spec": existing["spec"], "settings": existing["settings"]} == wanted:
            return run_dir
        differs = sorted(k for k in set(spec) | set(existing["spec"]) if spec.get(k) != existing["spec"].get(k))
        differs += [k for k in ("net", "solver") if settings[k] != existing["settings"][k]]
        raise InputError("%s holds a run made with other settings (%s differ): remove it or use another "
                         "output directory" % (run_dir, ", ".join(differs)))
    os.makedirs(os.path.join(run_dir, SNAPSHOT_DIR), exist_ok=True)
    run_config = dict(config, solver=settings["solver"])
    net_path = os.path.join(run_dir, "train_val.prototxt")
    templates.write_prototxt(net_path, templates.render_train_val(
        run_config, spec["head"], spec["train_lmdb"], spec["val_lmdb"],
        spec.get("train_soft_lmdb"), spec.get("val_soft_lmdb")), "net")
    templates.write_prototxt(os.path.join(run_dir, "deploy.prototxt"), templates.render_deploy(run_config), "net")
    # The solver has no test net: train() validates at the end of each segment itself, with its
    # progress lines, instead of Caffe testing into its log.
    test_iter = templates.test_iter_for(run_config, spec["val_lmdb"], "val")
    templates.write_prototxt(os.path.join(run_dir, "solver.prototxt"), templates.render_solver(
        run_config, net_path, os.path.join(run_dir, SNAPSHOT_DIR, spec["name"]), 0), "solver")
    write_run(run_dir, dict(wanted, status="prepared", test_iter=test_iter))
    return run_dir


def _whole_snapshots(run_dir):
    """{iteration: (caffemodel, solverstate)} of the snapshots whose writing completed."""
    name = read_run(run_dir)["spec"]["name"]
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


def train(run_dir, gpu=None, log=None):
    """Train a prepared run to its max_iter, resuming from its last whole snapshot; return the model."""
    import caffe

    run_dir = os.path.abspath(run_dir)
    run = read_run(run_dir)
    if run["status"] == "finished":
        return final_model(run_dir)
    spec, solver_settings = run["spec"], run["settings"]["solver"]
    max_iter, segment = int(solver_settings["max_iter"]), int(solver_settings["snapshot"] or solver_settings["max_iter"])
    display = int(solver_settings.get("display") or 20)
    batch_size = int(run["settings"]["net"]["batch_size"])
    records = lmdb_count(spec["train_lmdb"])
    test_iter = run["test_iter"]
    log_file = open(os.path.join(run_dir, "train.log"), "a")

    def say(line):
        line = "[%s] %s" % (spec["name"], line)
        log_file.write(line + "\n")
        log_file.flush()
        (log or print)(line)

    if gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_mode_gpu()
        caffe.set_device(int(gpu))
    resuming = True
    try:
        while True:
            snapshots = _whole_snapshots(run_dir)
            start = max(snapshots) if snapshots else 0
            if start >= max_iter:
                break
            solver = caffe.SGDSolver(os.path.join(run_dir, "solver.prototxt"))
            if start:
                solver.restore(snapshots[start][1])
                if resuming:
                    say("resumed from iteration %d" % start)
            elif spec.get("weights"):
                say("initialised from %s: %s" % (spec["weights"], describe(copy_weights(solver.net, spec["weights"]))))
            caffe.set_random_seed(_segment_seed(spec["seed"], start))
            _skip_batches(solver.net, start, batch_size, records)
            end = min(start + segment, max_iter)
            began, losses = time.time(), []
            while solver.iter < end:
                solver.step(1)
                loss = float(solver.net.blobs["loss"].data)
                if not math.isfinite(loss):
                    raise TrainingError("loss became %s at iteration %d (lr %g): lower solver.base_lr or check "
                                        "the data" % (loss, solver.iter, solver.lr))
                losses.append(loss)
                if solver.iter % display == 0 or solver.iter == end:
                    speed = (solver.iter - start) / max(time.time() - began, 1e-9)
                    say("iter %d/%d  loss %.4f  lr %g  %.2f it/s  ETA %s" % (
                        solver.iter, max_iter, np.mean(losses[-display:]), solver.lr, speed,
                        _format_eta((max_iter - solver.iter) / speed)))
            if not os.path.exists(_snapshot_prefix(run_dir, spec["name"], solver.iter) + ".solverstate"):
                solver.snapshot()                # step() snapshots only at multiples of `snapshot`
            say("iter %d  validation accuracy %.4f" % (solver.iter, _validation_accuracy(run_dir, solver, test_iter)))
            open(os.path.join(run_dir, SNAPSHOT_DIR, "%d.done" % solver.iter), "w").close()
            del solver
            resuming = False
    except TrainingError as error:
        write_run(run_dir, dict(run, status="failed", error=str(error)))
        say("FAILED: %s" % error)
        raise
    finally:
        log_file.close()
    model = os.path.relpath(_whole_snapshots(run_dir)[max_iter][0], run_dir)
    write_run(run_dir, dict(run, status="finished", model=model))
    return os.path.join(run_dir, model)


def train_all(run_dirs, jobs=1, gpus=None, log=print):
    """Train runs, `jobs` at a time, each in its own process (runs are independent); finished runs
    are skipped. gpus: device ids handed out in turn, or None for the CPU."""
    pending = [d for d in run_dirs if not is_finished(d)]
    for done in run_dirs:
        if done not in pending:
            log("[%s] finished earlier: skipped" % read_run(done)["spec"]["name"])
    env = dict(os.environ, GLOG_minloglevel=os.environ.get("GLOG_minloglevel", "2"))
    if not gpus and jobs > 1 and "OPENBLAS_NUM_THREADS" not in env:
        env["OPENBLAS_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    lock = threading.Lock()
    free_gpus = queue.Queue()
    for gpu in gpus or []:
        free_gpus.put(gpu)

    def train_in_process(run_dir):
        command = [sys.executable, "-u", "-m", "pycaffe_fer.training", run_dir]
        gpu = free_gpus.get() if gpus else None       # a GPU no other run holds
        if gpu is not None:
            command += ["--gpu", str(gpu)]
        try:
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       universal_newlines=True)
            for line in process.stdout:
                with lock:
                    log(line.rstrip("\n"))
            return process.wait() == 0
        finally:
            if gpu is not None:
                free_gpus.put(gpu)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(train_in_process, pending))
    failed = [run_dir for run_dir, ok in zip(pending, results) if not ok]
    if failed:
        raise TrainingError("training failed in %s (see train.log there)" % ", ".join(failed))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train one prepared run directory (resumes if interrupted).")
    parser.add_argument("run_dir")
    parser.add_argument("--gpu", type=int, default=None, help="GPU id (default: CPU)")
    args = parser.parse_args(argv)
    try:
        train(args.run_dir, gpu=args.gpu)
    except TrainingError as error:
        print("error: %s: %s" % (args.run_dir, error), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
