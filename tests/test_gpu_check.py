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


def run_check(stage, folder, *args, **env_vars):
    bundle = os.path.join(folder, "bundle")
    os.makedirs(bundle)
    subprocess.run(["tar", "-C", stage, "-cJf", os.path.join(bundle, "bundle.tar.xz"), "."], check=True, timeout=120)
    out = os.path.join(folder, "out")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env.update(env_vars)
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


# ---- the PyTorch peer (bench/gpu_check_peer.py), against real torch ----------------------------------

PEER = os.path.join(REPO, "bench", "gpu_check_peer.py")


def torch_with_torchvision():
    """A Python that imports torch and torchvision: GPU_CHECK_PYTHON (the check's own variable), else
    the virtualenv `make torch-peer` makes (CI makes it before make test)."""
    cache = os.environ.get("PYCAFFE_FER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pycaffe_fer")
    for python in (os.environ.get("GPU_CHECK_PYTHON"), os.path.join(cache, "torch-peer", "bin", "python")):
        if python and os.access(python, os.X_OK) and subprocess.run(
                [python, "-c", "import torch, torchvision"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                timeout=300).returncode == 0:
            return python
    return None


@pytest.fixture(scope="module")
def torch_python():
    python = torch_with_torchvision()
    if python is None:
        pytest.skip("needs PyTorch with torchvision (about 5.5 GB): `make torch-peer` makes it, as CI does, "
                    "or GPU_CHECK_PYTHON names a Python that has them")
    return python


@pytest.fixture(scope="module")
def torch_without_torchvision(torch_python, tmp_path_factory):
    """A virtualenv that has everything torch_python's has but torchvision: what a GPU machine whose
    torchvision is missing offers the check."""
    paths = json.loads(subprocess.run(
        [torch_python, "-c", "import json, sys, sysconfig; print(json.dumps([sys._base_executable, sysconfig.get_paths()['purelib']]))"],
        stdout=subprocess.PIPE, universal_newlines=True, check=True, timeout=60).stdout)
    base, site = paths
    venv = str(tmp_path_factory.mktemp("torch_only") / "venv")
    subprocess.run([base, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = os.path.join(venv, "bin", "python")
    own_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              stdout=subprocess.PIPE, universal_newlines=True, check=True, timeout=60).stdout.strip()
    for name in os.listdir(site):
        if not name.startswith("torchvision"):
            os.symlink(os.path.join(site, name), os.path.join(own_site, name))
    probe = subprocess.run([python, "-c", "import torch, torchvision"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    assert probe.returncode != 0 and "No module named 'torchvision'" in probe.stdout, probe.stdout
    return python


def test_inline_vgg16_is_torchvisions_net(torch_python):
    """The peer's VGG16 built from torch alone: the same parameters from the same seed, and from the same
    weights the same scores and the same gradients (dropout drawn from the same seed)."""
    script = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import torch, torchvision
import gpu_check_peer as peer
torch.manual_seed(0); reference = torchvision.models.vgg16(num_classes=7)
torch.manual_seed(0); inline = peer.VGG16(num_classes=7)
ref_state, inl_state = reference.state_dict(), inline.state_dict()
report = {"names": list(ref_state) == list(inl_state),
          "same_init": all(torch.equal(ref_state[k], inl_state[k]) for k in ref_state),
          "modules": [str(getattr(reference, m)) == str(getattr(inline, m)) for m in ("features", "avgpool", "classifier")]}
# other weights than the initial ones (the last layer's bias is 0 at first), then loaded into the inline net
torch.manual_seed(1)
with torch.no_grad():
    for parameter in reference.parameters():
        parameter.add_(torch.randn_like(parameter) * 0.01)
inline.load_state_dict(reference.state_dict())
images = torch.randn(3, 3, 64, 64)
reference.eval(); inline.eval()
with torch.no_grad():
    scores_ref, scores_inl = reference(images), inline(images)
report["scores_max_abs"] = float(scores_ref.abs().max())
report["scores_diff"] = float((scores_ref - scores_inl).abs().max())
reference.train(); inline.train()
labels = torch.tensor([0, 3, 6])
for net in (reference, inline):
    torch.manual_seed(2)
    torch.nn.functional.cross_entropy(net(images), labels).backward()
report["grad_diff"] = max(float((a.grad - b.grad).abs().max()) for a, b in zip(reference.parameters(), inline.parameters()))
report["grad_max_abs"] = max(float(a.grad.abs().max()) for a in reference.parameters())
print(json.dumps(report))
"""
    result = subprocess.run([torch_python, "-c", script, os.path.join(REPO, "bench")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["names"] and report["same_init"] and report["modules"] == [True, True, True], report
    assert report["scores_max_abs"] > 1e-3 and report["scores_diff"] <= 1e-6 * report["scores_max_abs"], report
    assert report["grad_max_abs"] > 0 and report["grad_diff"] <= 1e-6 * report["grad_max_abs"], report


def peer_lines(python, *args):
    result = subprocess.run([python, PEER, "--device", "cpu", "--batch", "2", "--size", "32", "--warmup", "1",
                             "--timed", "1"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=600)
    return result


def test_the_peer_uses_torchvision_where_it_imports(torch_python):
    result = peer_lines(torch_python, "--tf32", "on")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.match(r"torch \S+, VGG16 torchvision \S+, batch 2 at 32 x 32, CPU$", lines[0]), lines
    # one setting per process; no peak on the CPU (the check reads GPU memory with nvidia-smi)
    assert len(lines) == 2 and re.match(r"tf32 on [0-9.]+ -$", lines[1]) and float(lines[1].split()[2]) > 0, lines


def test_the_check_runs_the_peer_on_torch_alone_when_torchvision_is_missing(bundle_stage, torch_without_torchvision, tmp_path):
    stage = make_bundle(bundle_stage, str(tmp_path))
    result, summary, out = run_check(stage, str(tmp_path), "--skip", "gtests", GPU_CHECK_PYTHON=torch_without_torchvision)
    assert result.returncode == 0, result.stderr
    peer = step(summary, "pytorch peer")
    assert peer["status"] == "passed", peer
    assert "VGG16 inline (torchvision: No module named 'torchvision')" in peer["detail"], peer
    assert re.search(r"TF32 off [0-9.]+ images/s; TF32 on [0-9.]+ images/s$", peer["detail"]), peer
    # the dry run has no cuDNN runs to compare with: no ratio, and nothing left dangling
    assert "Caffe cuDNN / PyTorch" not in peer["detail"] and not peer["detail"].endswith(";")
    rows = [(row["engine"], row["tf32"]) for row in summary["training"]]
    assert rows == [("caffe", "on"), ("pytorch", "off"), ("pytorch", "on")], summary["training"]
    # no GPU: no peak memory for any engine, the same null for both
    assert all(row["peak_gpu_mib"] is None and row["images_per_s"] > 0 for row in summary["training"])
    # the peer's dry run is small, each TF32 setting a process and a log of its own
    assert "batch 2 at 32 x 32" in peer["detail"], peer
    for tf32 in ("off", "on"):
        with open(os.path.join(out, "peer_tf32%s.log" % tf32)) as handle:
            assert handle.read().splitlines()[-1].startswith("tf32 %s " % tf32)


def test_a_failing_peer_names_its_own_error_in_the_summary(bundle_stage, torch_python, tmp_path):
    """A peer that runs out of memory (a real one: an address-space limit just above what importing
    torch needs, far below VGG16's 138 M parameters): its own last line reaches summary.json."""
    peak = subprocess.run([torch_python, "-c", "import torch, torchvision\n"
                           "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmPeak')][0])"],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True, timeout=300).stdout.strip()
    limited = tmp_path / "python"
    limited.write_text('#!/bin/sh\nulimit -v %d\nexec "%s" "$@"\n' % (int(peak) + 300 * 1024, torch_python))
    limited.chmod(0o755)
    stage = make_bundle(bundle_stage, str(tmp_path))
    result, summary, out = run_check(stage, str(tmp_path), "--skip", "gtests", GPU_CHECK_PYTHON=str(limited))
    assert result.returncode == 1, result.stderr
    peer = step(summary, "pytorch peer")
    with open(os.path.join(out, peer["log"])) as handle:
        last = [line for line in handle.read().splitlines() if line.strip()][-1]
    assert peer["status"] == "failed" and peer["log"] == "peer_tf32off.log", peer
    assert re.match(r"TF32 off: (exit \d+|killed by SIG\w+ \(exit \d+\))", peer["detail"]), peer
    assert peer["detail"].endswith(": " + last[:240]) and re.search(r"alloc|[Mm]emory", last), (peer, last)
    assert summary["status"] == "failed" and step(summary, "caffe time")["status"] == "passed"
