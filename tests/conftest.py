"""Shared fixtures: the repository root and the real `caffe` binary."""
import os

import pytest

from helpers import REPO


@pytest.fixture(scope="session")
def repo_root():
    return REPO


@pytest.fixture(scope="session")
def caffe_bin():
    """The `caffe` binary wrapper that make setup writes (Python layers can import pycaffe_fer)."""
    path = os.environ.get("PYCAFFE_FER_CAFFE_BIN", os.path.join(REPO, ".venv", "bin", "caffe"))
    assert os.access(path, os.X_OK), "%s missing: run make setup" % path
    return path
