"""The tasks a stage hands to an executor (executor.LocalExecutor, slurm.SlurmExecutor).

A task is a directory and the module that knows it: the module has ``run_task(directory, gpu,
log)``, ``task_done(directory)``, a command line ``python -m MODULE DIRECTORY [--gpu ID|assigned]``
(see task_main) and, if its process needs one, ``task_environment(directory)`` (see environment).
Everything a task needs is in its directory, what it produces goes to files, so
the pipeline's stages build tasks, hand them to an executor and read the files, without knowing
where the work ran:

    pycaffe_fer.training   a run directory: train it (resumes from its last whole snapshot)
    pycaffe_fer.splits     an LMDB build: one dataset split as an image LMDB
    pycaffe_fer.scoring    a scoring pass: every listed net's scores on one LMDB, to scores.npz
"""
import argparse
import collections
import ctypes
import importlib
import os
import signal
import sys

# in_process: the local executor runs it in this process (LMDB builds and scoring passes, which
# were always run so); otherwise in a process of its own, `jobs` at a time (training runs).
# gpu: the task computes on a GPU when the experiment does.
Task = collections.namedtuple("Task", "name directory module gpu in_process")
PR_SET_PDEATHSIG = 1      # linux/prctl.h


class TaskFailed(Exception):
    """A task, or some tasks of a stage, failed; the message names each, with where to look."""


def module_of(task):
    return importlib.import_module(task.module)


def task_done(task):
    return module_of(task).task_done(task.directory)


def environment(task):
    """What the task's process must find in its environment, set by every executor alike: its
    module's ``task_environment(directory)`` (a training run's BLAS thread count), else nothing."""
    module = module_of(task)
    return module.task_environment(task.directory) if hasattr(module, "task_environment") else {}


def assigned_gpu():
    """The GPU a scheduler gave this process: it is device 0 of the CUDA_VISIBLE_DEVICES it set."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not visible or visible in ("-1", "NoDevFiles"):
        raise TaskFailed("--gpu assigned: this task was given no GPU (CUDA_VISIBLE_DEVICES is %r); "
                         "submit it with --slurm-gpus-per-task 1" % visible)
    return 0


def end_with(parent):
    """End this process when process ``parent``, which started it, ends (Linux's PR_SET_PDEATHSIG): a
    driver killed with SIGKILL leaves no training run going on behind it, writing a run folder that
    the next driver trains too. Elsewhere the run folder's own lock (training.train) still keeps a
    second trainer out."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:          # it ended before the line above
        os.kill(os.getpid(), signal.SIGKILL)


def task_main(run_task, description, argv=None):
    """The command line of a task module: ``DIRECTORY [--gpu ID|assigned] [--parent PID]``; exit
    status 1 on failure."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("directory")
    parser.add_argument("--gpu", default=None, help="GPU id, or `assigned`: the one SLURM gave the task (default: CPU)")
    parser.add_argument("--parent", type=int, help="end when this process (the one that started the task) ends")
    args = parser.parse_args(argv)
    if args.parent:
        end_with(args.parent)
    try:
        gpu = assigned_gpu() if args.gpu == "assigned" else None if args.gpu is None else int(args.gpu)
        run_task(args.directory, gpu=gpu)
    except TaskFailed as error:
        print("error: %s: %s" % (args.directory, error), file=sys.stderr)
        return 1
    return 0
