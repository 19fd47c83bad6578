"""Shared fixtures: the repository root, the real `caffe` binary, a real single-node SLURM."""
import os
import shutil
import tempfile

import pytest

from helpers import REPO
from slurm_cluster import SlurmCluster, slurm_tools_present, why_slurmd_cannot_run

# The suite and every tool it starts see the environment CI and a new user have: this variable,
# which some development machines set, would hide a progress line that is not flushed.
os.environ.pop("PYTHONUNBUFFERED", None)


@pytest.fixture(scope="session")
def repo_root():
    return REPO


@pytest.fixture(scope="session")
def caffe_bin():
    """The `caffe` binary wrapper that make setup writes (Python layers can import pycaffe_fer)."""
    path = os.environ.get("PYCAFFE_FER_CAFFE_BIN", os.path.join(REPO, ".venv", "bin", "caffe"))
    assert os.access(path, os.X_OK), "%s missing: run make setup" % path
    return path


@pytest.fixture(scope="session")
def slurm_cluster():
    """munged, slurmctld and slurmd of a one-node cluster with two fake GPUs, stopped at the end.
    Its folder is not under pytest's: munged wants every folder above its socket open to all."""
    assert slurm_tools_present(), "SLURM or munge is not installed: run make setup (it installs slurm-wlm, munge)"
    reason = why_slurmd_cannot_run()
    if reason:
        pytest.skip("no SLURM on this machine: " + reason)
    root = tempfile.mkdtemp(prefix="pycaffe_fer_slurm-")
    os.chmod(root, 0o755)
    cluster = SlurmCluster(root).start()
    yield cluster
    cluster.stop()
    shutil.rmtree(root)
