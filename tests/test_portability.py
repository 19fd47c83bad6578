"""Promises about where the code runs: Python 3.8 (conda-forge's Caffe), the Docker image, and a
Caffe build cache that follows the system it was built on."""
import ast
import os
import re
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


def test_dockerfile_builds_from_a_debian_base_unless_told_otherwise():
    instructions = list(dockerfile_instructions())
    # BASE before FROM, so `--build-arg BASE=nvidia/cuda:...` can replace it
    assert instructions[0] == ("ARG", "BASE=debian:trixie") and instructions[1] == ("FROM", "${BASE}"), instructions[:2]
    runs = [args for word, args in instructions if word == "RUN"]
    # CUDA from the base where it has nvcc, else Debian's non-free toolkit, before the installer runs
    assert runs[0] == "docker/cuda_toolkit.sh"
    with open(os.path.join(REPO, "docker", "cuda_toolkit.sh")) as handle:
        toolkit = handle.read()
    assert "nvidia-cuda-toolkit" in toolkit and "non-free" in toolkit and "have_nvcc" in toolkit
    assert instructions[-1] == ("CMD", '[".venv/bin/caffe", "--version"]')


def installer_reads():
    """The files of the checkout tools/install_caffe.sh reads beside itself ($HERE/...)."""
    with open(os.path.join(REPO, "tools", "install_caffe.sh")) as handle:
        return {"tools/" + name for name in re.findall(r'\$HERE/([\w.]+)', handle.read())}


def test_dockerfile_builds_caffe_from_the_installer_and_patches_alone():
    """Caffe's layer (an hour on two cores) must not be rebuilt by an ordinary source change: only what
    the installer reads is copied before it runs, and all of that is."""
    instructions = list(dockerfile_instructions())
    at = [i for i, (word, args) in enumerate(instructions) if word == "RUN" and "tools/install_caffe.sh" in args]
    assert len(at) == 1, instructions
    run = instructions[at[0]][1]
    assert "tools/install_caffe.sh --cuda" in run and "--no-cudnn" not in run and "--tests" not in run
    copied = set()
    for word, args in instructions[:at[0]]:
        if word in ("COPY", "ADD"):
            copied.update(p for p in shlex.split(args)[:-1] if not p.startswith("--"))
    reads = installer_reads() - {"tools/caffe_gtests"}    # the gtests' sources: --tests only
    assert reads == {"tools/apt_install_missing.sh", "tools/caffe_patches"}, reads
    assert copied == reads | {"tools/install_caffe.sh", "docker/cuda_toolkit.sh", "docker/nvidia-wheels.txt"}, copied
    # make setup after it, then the rest of the checkout last
    later = [args for word, args in instructions[at[0] + 1:] if word == "RUN"]
    assert [args for args in later if args.startswith("make setup")], later
    assert [args for word, args in instructions if word == "COPY"][-1] == ". ."


def test_dockerfile_pins_each_nvidia_wheel_the_installer_takes_for_cuda_12():
    with open(os.path.join(REPO, "tools", "install_caffe.sh")) as handle:
        installer = handle.read()
    # the CUDA 12 branch's names (cuDNN 9 and what its libraries look for beside them)
    names = set(re.findall(r'(nvidia-[a-z-]+)-cu\$cuda_major', installer))
    assert names == {"nvidia-cublas", "nvidia-curand", "nvidia-cudnn", "nvidia-cuda-nvrtc"}, names
    with open(os.path.join(REPO, "docker", "nvidia-wheels.txt")) as handle:
        pins = dict(line.split("==") for line in handle.read().splitlines() if line and not line.startswith("#"))
    # cuBLAS and cuRAND come from Debian's toolkit: the installer takes cuDNN, NVRTC and cuBLAS (which
    # cuDNN's libraries look for beside them) from wheels, each pinned to one release
    assert set(pins) == {name + "-cu12" for name in names - {"nvidia-curand"}}, pins
    assert pins["nvidia-cudnn-cu12"].startswith("9.") and all(re.match(r"^\d+(\.\d+){2,3}$", v) for v in pins.values())
    run = [args for word, args in dockerfile_instructions() if word == "RUN" and "install_caffe.sh" in args][0]
    assert "PIP_CONSTRAINT=/opt/pycaffe_fer/docker/nvidia-wheels.txt" in run


def cached_build_root(tmp_path, over=None, path=None):
    """The cache folder tools/install_caffe.sh would build or reuse, on this system or with a file
    bind-mounted over one of the system's (over: {system path: stand-in}) in a mount namespace
    of its own, and with `path` first on PATH."""
    mounts = "".join('mount --bind "%s" "%s"; ' % (stand_in, real) for real, stand_in in (over or {}).items())
    env = dict(os.environ, PYCAFFE_FER_CACHE=str(tmp_path / "cache"))
    if path:
        env["PATH"] = path + os.pathsep + env["PATH"]
    unshare = ["unshare", "--mount"] + (["--map-root-user"] if os.geteuid() else [])
    probe = subprocess.run(unshare + ["true"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=30)
    if probe.returncode != 0:
        # A container without CAP_SYS_ADMIN (docker run's default), or a host that restricts user
        # namespaces: the bind mounts this test needs cannot be made there.
        pytest.skip("needs a mount namespace, which this machine refuses (%s): in a container, run the "
                    "suite with --cap-add SYS_ADMIN" % (probe.stdout.strip().splitlines() or ["exit %d" % probe.returncode])[-1])
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
