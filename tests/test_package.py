"""The package as a user installs it: pip install . (not editable) carries the templates and presets,
and pycaffe_fer names what a user calls."""
import os
import re
import shutil
import subprocess
import sys

import caffe
import pytest

import pycaffe_fer
from helpers import REPO

# In the installed copy, from a folder outside the checkout: render a preset's nets, load the demo
# config (its base, fer2013.yaml, found beside it in the package).
USE = """
import os, sys
import pycaffe_fer
from pycaffe_fer.templates import render_generated
assert pycaffe_fer.__file__.startswith(sys.argv[1]), pycaffe_fer.__file__
config = pycaffe_fer.load_config("fer2013")
for path in render_generated(config, [1.4], "generated", "train", "test"):
    print(path)
print(pycaffe_fer.load_config("demo")["net"]["input_size"])
"""


def test_a_non_editable_install_renders_a_preset_and_loads_the_demo(tmp_path):
    source, venv, work = tmp_path / "source", tmp_path / "venv", tmp_path / "work"
    # pip builds in the tree it is given: a copy, so the checkout gets no build/ folder.
    shutil.copytree(REPO, str(source), symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "runs", "data", "generated", "build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    str(source)], check=True, timeout=300)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True, timeout=60).stdout.strip()
    # pycaffe where make setup built it (rendering parses each prototxt with Caffe's protobuf messages).
    with open(os.path.join(site, "caffe.pth"), "w") as handle:
        handle.write(os.path.dirname(os.path.dirname(caffe.__file__)) + "\n")
    shutil.rmtree(str(source))               # nothing may come from the source tree
    work.mkdir()
    result = subprocess.run([python, "-c", USE, site], cwd=str(work), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=120)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.split()
    assert lines[-1] == "48" and "generated/solver_g1.4.prototxt" in lines and "generated/deploy.prototxt" in lines
    solver = (work / "generated" / "solver_g1.4.prototxt").read_text()
    assert 'net: "generated/train_val_g1.4.prototxt"' in solver and "momentum: 0.9" in solver
    assert "train_lmdb_soft_g1.4" in (work / "generated" / "train_val_g1.4.prototxt").read_text()


def test_the_package_names_what_a_user_calls_and_maps_its_modules():
    for name in pycaffe_fer.__all__:
        assert callable(getattr(pycaffe_fer, name)), name
    assert pycaffe_fer.predict_files.__module__ == "pycaffe_fer.predict"
    with pytest.raises(AttributeError):
        pycaffe_fer.no_such_thing
    modules = sorted(name[:-3] for name in os.listdir(os.path.dirname(pycaffe_fer.__file__))
                     if name.endswith(".py") and name != "__init__.py") + ["datasets"]
    # The map's lines: the module names (comma-separated) in the first column, then what they are for.
    mapped = pycaffe_fer.__doc__.split("The modules")[1].splitlines()
    named = {name.strip().rstrip("/") for line in mapped for name in re.split(r"\s{2,}", line.strip())[0].split(",")}
    unnamed = sorted(set(modules) - named)
    assert not unnamed, "pycaffe_fer's docstring does not name %s" % unnamed
