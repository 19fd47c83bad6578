"""Promises about where the code runs: Python 3.8 (conda-forge's Caffe), the Docker image, and a
Caffe build cache that follows the system it was built on."""
import ast
import os
import shlex
import subprocess

import pytest

from helpers import REPO

pytestmark = pytest.mark.fast   # no Caffe: make test-fast

SOURCE_DIRS = ("pycaffe_fer", "tools", "tests", "bench")


def python_files():
    for top in SOURCE_DIRS:
        for dirpath, _, names in os.walk(os.path.join(REPO, top)):
            for name in sorted(names):
                if name.endswith(".py"):
                    yield os.path.join(dirpath, name)


@pytest.mark.parametrize("path", sorted(python_files()), ids=lambda p: os.path.relpath(p, REPO))
def test_parses_as_python_3_8(path):
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    tree = ast.parse(source, filename=path, feature_version=(3, 8))
    # What the 3.8 grammar accepts but the 3.8 runtime lacks.
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            assert node.attr not in ("removeprefix", "removesuffix"), \
                "%s:%d: str.%s is Python 3.9+" % (path, node.lineno, node.attr)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "zip":
            assert all(k.arg != "strict" for k in node.keywords), "%s:%d: zip(strict=) is 3.10+" % (path, node.lineno)
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) in ("list", "dict", "tuple", "set"):
            assert False, "%s:%d: %s[...] generics are Python 3.9+" % (path, node.lineno, node.value.id)


def dockerfile_instructions():
    """(instruction, arguments) of docker/Dockerfile, continuation lines joined."""
    with open(os.path.join(REPO, "docker", "Dockerfile")) as handle:
        text = handle.read().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            yield word.upper(), rest.strip()


def test_dockerfile_copies_only_existing_paths():
    copies = [args for word, args in dockerfile_instructions() if word in ("COPY", "ADD")]
    assert copies, "the Dockerfile copies nothing"
    for args in copies:
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for source in parts[:-1]:
            assert os.path.exists(os.path.join(REPO, source)), "Dockerfile copies missing %s" % source


def test_dockerfile_uses_the_tested_installer_with_cuda():
    instructions = list(dockerfile_instructions())
    assert instructions[0][0] == "FROM" and "cuda" in instructions[0][1] and "devel" in instructions[0][1]
    # CUDA 12 (sm_61 stays buildable) with cuDNN in the image, and the installer's default: cuDNN on
    assert ":12." in instructions[0][1] and "cudnn" in instructions[0][1]
    runs = " ".join(args for word, args in instructions if word == "RUN")
    assert "tools/install_caffe.sh --cuda" in runs and "--no-cudnn" not in runs
    assert "make setup" in runs


def cached_build_root(tmp_path, over=None, path=None):
    """The cache folder tools/install_caffe.sh would build or reuse, on this system or with a file
    bind-mounted over one of the system's (over: {system path: stand-in}) in a mount namespace
    of its own, and with `path` first on PATH."""
    mounts = "".join('mount --bind "%s" "%s"; ' % (stand_in, real) for real, stand_in in (over or {}).items())
    env = dict(os.environ, PYCAFFE_FER_CACHE=str(tmp_path / "cache"))
    if path:
        env["PATH"] = path + os.pathsep + env["PATH"]
    unshare = ["unshare", "--mount"] + (["--map-root-user"] if os.geteuid() else [])
    result = subprocess.run(unshare + ["sh", "-ec", mounts + 'exec "$0" --print-root',
                                       os.path.join(REPO, "tools", "install_caffe.sh")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def stand_in(tmp_path, name, text, mode=0o644):
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_a_caffe_build_is_cached_per_release_compiler_python_and_numpy(tmp_path):
    here = cached_build_root(tmp_path)
    assert here == cached_build_root(tmp_path), "the same system reuses its build"
    release = open("/etc/os-release").read().replace("VERSION_ID=", "VERSION_ID=99").replace(
        "VERSION_CODENAME=", "VERSION_CODENAME=future")
    python = "#!/bin/sh\necho 3.99.0 9.9.9\n"      # what the key asks: Python's and numpy's versions
    compiler = stand_in(tmp_path, "c++", "#!/bin/sh\necho 'c++ (Debian 99.1.0-1) 99.1.0'\n", 0o755)
    others = {
        "release": cached_build_root(tmp_path, {"/etc/os-release": stand_in(tmp_path, "os-release", release)}),
        "python": cached_build_root(tmp_path, {"/usr/bin/python3": stand_in(tmp_path, "python3", python, 0o755)}),
        "compiler": cached_build_root(tmp_path, path=os.path.dirname(compiler)),
    }
    assert all(os.path.dirname(root) == str(tmp_path / "cache") for root in others.values())
    assert len({here} | set(others.values())) == 4, others
