"""The modules a tool reads configs, soft labels, metrics and results with, or hands tasks to a
cluster with, load where Caffe, lmdb and OpenCV cannot: a login node, a plotting notebook."""
import subprocess
import sys

import pytest

from helpers import REPO

pytestmark = pytest.mark.fast   # no Caffe: make test-fast

# Run in a fresh interpreter: each heavy package is made unimportable (a None entry in sys.modules
# makes `import x` raise ImportError), then the module is imported and nothing heavy may be loaded.
CHECK = """
import sys
HEAVY = ("caffe", "lmdb", "cv2")
for name in HEAVY:
    sys.modules[name] = None
import importlib
importlib.import_module(sys.argv[1])
loaded = sorted(m for m in sys.modules if sys.modules[m] is not None and
                (m.split(".")[0] in HEAVY or m.endswith("caffe_pb2") or m == "pycaffe_fer.lmdb_io"))
assert not loaded, loaded
"""


# The package itself too: its face imports what it names on first use.
@pytest.mark.parametrize("module", ["pycaffe_fer"] + ["pycaffe_fer." + name for name in (
    "config", "classes", "softlabel", "metrics", "results", "executor", "slurm", "paths", "plan", "templates",
    "folder_lock")])
def test_imports_without_caffe_lmdb_or_opencv(module):
    result = subprocess.run([sys.executable, "-c", CHECK, module], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]


def test_the_check_fails_for_a_module_that_needs_caffe():
    result = subprocess.run([sys.executable, "-c", CHECK, "pycaffe_fer.lmdb_io"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert result.returncode != 0 and "import of lmdb halted" in result.stdout
