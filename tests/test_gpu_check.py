"""bench/gpu_check.sh's failure paths, without a GPU: the check meets a real GPU once, on a borrowed
machine, and must come back with a reason whatever breaks. Each test packs a small bundle the way
--pack does (the demo's small net rendered by bench/gpu_check_nets.py, the reference scores from the
real Caffe build, run through the system's loader as the check runs the bundle's), breaks one piece
the way it can break there, and runs the check's dry run on it: the broken step must end in its
one-line reason, the steps after it that can still say something must run, summary.json must be
written, and the status must be 1.

The crashing gtest binary and the binary whose library is missing are stand-ins compiled here:
Caffe's gtests are not built by make test, and no real Caffe build lacks a library here."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from helpers import REPO

CHECK = os.path.join(REPO, "bench", "gpu_check.sh")
C_COMPILER = shutil.which("cc") or shutil.which("gcc")
LOADER = (glob.glob("/lib64/ld-linux-x86-64.so.*") + glob.glob("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.*") + [None])[0]
pytestmark = pytest.mark.skipif(LOADER is None, reason="the check runs x86-64 Linux binaries through ld-linux-x86-64")


def real_caffe(caffe_bin):
    """The caffe binary itself: make setup's .venv/bin/caffe is a wrapper script that execs it."""
    with open(caffe_bin, "rb") as handle:
        head = handle.read(4)
    if head == b"\x7fELF":
        return caffe_bin
    with open(caffe_bin) as handle:
        found = re.search(r'^exec "([^"]+)" "\$@"$', handle.read(), re.M)
    assert found, "%s is neither a binary nor make setup's wrapper" % caffe_bin
    return found.group(1)


def compile_c(source, out, *flags):
    assert C_COMPILER, "no C compiler (make setup installs g++ with gcc)"
    subprocess.run([C_COMPILER, "-x", "c", "-", "-x", "none", "-o", out] + list(flags), input=source, universal_newlines=True,
                   check=True, timeout=60)


@pytest.fixture(scope="module")
def bundle_stage(tmp_path_factory, caffe_bin):
    """An unpacked bundle: the demo net's files, bin/caffe the real build's, the system's loader."""
    stage = str(tmp_path_factory.mktemp("gpu_check_stage"))
    caffe = real_caffe(caffe_bin)
    subprocess.run([sys.executable, os.path.join(REPO, "bench", "gpu_check_nets.py"), "--out", stage, "--caffe", caffe,
                    "--iterations", "3", "--config", "demo"], check=True, timeout=600)
    for folder in ("bin", "lib", "test"):
        os.makedirs(os.path.join(stage, folder), exist_ok=True)
    os.symlink(caffe, os.path.join(stage, "bin", "caffe"))
    os.symlink(os.path.realpath(LOADER), os.path.join(stage, "lib", "ld-linux-x86-64.so.2"))
    shutil.copy(os.path.join(REPO, "tools", "caffe_gtest_filter.sh"), stage)
    open(os.path.join(stage, "built_with.txt"), "w").close()
    return stage


def make_bundle(stage, folder):
    """A copy of ``stage`` in ``folder`` for one test to break before run_check packs it."""
    copy = os.path.join(folder, "stage")
    shutil.copytree(stage, copy, symlinks=True)
    return copy


def run_check(stage, folder, *args):
    bundle = os.path.join(folder, "bundle")
    os.makedirs(bundle)
    subprocess.run(["tar", "-C", stage, "-cJf", os.path.join(bundle, "bundle.tar.xz"), "."], check=True, timeout=120)
    out = os.path.join(folder, "out")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run(["bash", CHECK, "--dry-run", "--bundle", bundle, "--out", out] + list(args), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    with open(os.path.join(out, "summary.json")) as handle:
        summary = json.load(handle)
    return result, summary, out


def step(summary, name):
    found = [s for s in summary["steps"] if s["name"] == name]
    assert len(found) == 1, (name, summary["steps"])
    return found[0]


def status_line(stderr, name):
    """The one line the check prints when step ``name`` ends."""
    lines = [line for line in stderr.splitlines() if line.startswith("[gpu_check]   %s: " % name)]
    assert len(lines) == 1, (name, stderr)
    return lines[0]


@pytest.mark.skipif(not C_COMPILER, reason="needs a C compiler to build the stand-in gtest binary")
def test_a_crashing_gtest_binary_is_named_and_the_training_still_runs(bundle_stage, tmp_path):
    stage = make_bundle(bundle_stage, str(tmp_path))
    # what a gtest binary does when a test aborts: the case's RUN line, then no summary
    compile_c('#include <stdio.h>\n#include <stdlib.h>\nint main(void) {\n'
              '  puts("[ RUN      ] CuDNNConvolutionLayerTest/0.TestSimpleConvolutionCuDNN"); fflush(stdout);\n'
              '  abort();\n}\n', os.path.join(stage, "bin", "caffe_gtests"))
    result, summary, out = run_check(stage, str(tmp_path), "--skip", "peer")
    assert result.returncode == 1, result.stderr
    line = status_line(result.stderr, "gtests")
    assert "FAILED: killed by SIGABRT (exit 134)" in line and "no gtest summary" in line, line
    assert "CuDNNConvolutionLayerTest/0.TestSimpleConvolutionCuDNN" in line
    gtests = step(summary, "gtests")
    assert gtests["status"] == "failed" and gtests["log"] == "gtests.log"
    # the steps after it ran and passed, their logs beside the summary
    for name in ("device_query", "initial weights", "forward", "train caffe engine", "caffe time"):
        assert step(summary, name)["status"] == "passed", (name, result.stderr)
    assert summary["training"][0]["engine"] == "caffe" and summary["training"][0]["images_per_s"] > 0
    assert summary["status"] == "failed" and summary["mode"] == "dry-run"
    assert "ok" in summary["results"]["forward"]
    assert os.path.getsize(os.path.join(out, "train_caffe_tf32on_ws8.log")) > 0
    assert os.path.isfile(os.path.join(out, "layers.txt")) and os.path.isfile(os.path.join(out, "summary.txt"))


def test_a_failed_training_run_is_named_and_the_check_goes_on(bundle_stage, tmp_path):
    stage = make_bundle(bundle_stage, str(tmp_path))
    solver = os.path.join(stage, "nets", "solver_caffe.prototxt")
    with open(solver) as handle:
        text = handle.read()
    with open(solver, "w") as handle:
        handle.write(re.sub(r'^net: ".*"$', 'net: "nets/missing.prototxt"', text, flags=re.M))
    result, summary, out = run_check(stage, str(tmp_path), "--skip", "gtests,peer")
    assert result.returncode == 1, result.stderr
    line = status_line(result.stderr, "train caffe engine")
    # glog's fatal line, not a silent exit
    assert "FAILED: killed by SIGABRT (exit 134)" in line and "nets/missing.prototxt" in line, line
    assert step(summary, "train caffe engine")["status"] == "failed"
    assert step(summary, "gtests")["status"] == "skipped"
    assert step(summary, "caffe time")["status"] == "passed"
    assert summary["training"] == [] and "projection" not in summary["results"]
    assert "missing.prototxt" in open(os.path.join(out, "train_caffe_tf32on_ws8.log")).read()


@pytest.mark.skipif(not C_COMPILER, reason="needs a C compiler to build the stand-in binary")
def test_a_missing_library_is_named_before_any_step_runs(bundle_stage, tmp_path):
    stage = make_bundle(bundle_stage, str(tmp_path))
    # a caffe linked against a cuDNN this machine does not have, as the bundle names it
    stub = str(tmp_path / "libcudnn.so.9")
    compile_c("int cudnnGetVersion(void) { return 91000; }\n", stub, "-shared", "-fPIC", "-Wl,-soname,libcudnn.so.9")
    os.unlink(os.path.join(stage, "bin", "caffe"))
    compile_c("int cudnnGetVersion(void);\nint main(void) { return cudnnGetVersion() == 0; }\n",
              os.path.join(stage, "bin", "caffe"), stub)
    os.unlink(stub)
    with open(os.path.join(stage, "built_with.txt"), "w") as handle:
        handle.write("cuDNN libcudnn.so.9 9.10.0 %s\n" % tmp_path)
    result, summary, _ = run_check(stage, str(tmp_path))
    assert result.returncode == 1, result.stderr
    assert "[gpu_check]   cuDNN: libcudnn.so.9 NOT FOUND (built with 9.10.0" in result.stderr
    line = status_line(result.stderr, "preflight")
    assert "FAILED: cuDNN (libcudnn.so.9) not found; bin/caffe cannot start: libcudnn.so.9" in line, line
    # nothing ran that would have reported it as something else
    assert [s["name"] for s in summary["steps"]] == ["preflight"]
    assert summary["status"] == "failed"


def test_help_prints_the_usage_and_nothing_else():
    result = subprocess.run(["bash", CHECK, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=30)
    assert result.returncode == 0 and result.stderr == ""
    with open(CHECK) as handle:
        comment = []
        for line in handle.read().splitlines()[1:]:
            if not line.startswith("#"):
                break
            comment.append(re.sub(r"^# ?", "", line))
    assert result.stdout.splitlines() == comment
    assert comment[0].startswith("The GPU check") and any("--quick" in line for line in comment)


@pytest.mark.parametrize("option", ["--pack", "--bundle", "--out", "--skip"])
def test_an_option_without_its_value_is_one_line_and_status_2(option):
    result = subprocess.run(["bash", CHECK, option], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr == "gpu_check.sh: %s needs a value (see --help)\n" % option
    followed = subprocess.run(["bash", CHECK, option, "--quick"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=30)
    assert followed.returncode == 2 and "needs a value" in followed.stderr


def test_skip_names_only_the_steps_it_knows():
    result = subprocess.run(["bash", CHECK, "--skip", "gtests,warmup"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr == "gpu_check.sh: --skip warmup: not one of gtests, train, peer, time\n"
