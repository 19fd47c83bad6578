"""Whether the GPUs a command asks for exist, asked of the caffe binary before any work starts.

Without a GPU (or driver) Caffe's CUDA build aborts in Caffe::SetDevice with a glog stack trace,
once per training process. Our patched `caffe device_query -gpu IDS` instead ends with one line
(no GPU or driver, a CPU-only build, an id out of range), so one short subprocess tells the user
up front. A subprocess, not a CUDA call in this process: a process that initialised CUDA cannot
hand a usable CUDA context to the training processes it forks.
"""
import os
import shutil
import subprocess
import sys

from .errors import InputError


def caffe_binary():
    """The caffe binary that goes with this interpreter's pycaffe: $PYCAFFE_FER_CAFFE_BIN, the one
    beside the interpreter (make setup's .venv/bin/caffe, a conda env's), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "caffe")
    for candidate in (os.environ.get("PYCAFFE_FER_CAFFE_BIN"), beside, shutil.which("caffe")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise InputError("no caffe binary beside %s or on PATH (run make setup)" % sys.executable)


def require_gpus(gpus):
    """Raise InputError with caffe's one-line reason unless every id in ``gpus`` is a usable GPU."""
    if not gpus:
        return
    ids = ",".join(str(int(gpu)) for gpu in gpus)
    env = dict(os.environ, GLOG_minloglevel="2")
    result = subprocess.run([caffe_binary(), "device_query", "-gpu", ids], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        reason = lines[0] if lines else "caffe device_query exited with status %d" % result.returncode
        raise InputError("--gpu %s: %s" % (ids, reason.replace("caffe: -gpu %s: " % ids, "")))


def use_device(gpu=None):
    """Caffe computes on the CPU (gpu None) or on the GPU with this id (of those visible)."""
    import caffe

    if gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_mode_gpu()
        caffe.set_device(int(gpu))
