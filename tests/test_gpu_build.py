"""The GPU path without a GPU: what the installed build links, the one-line answer when no GPU can
serve a request, the gtest device split, and the GPU check's nets and protocol counts."""
import glob
import json
import os
import subprocess
import sys

import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from helpers import REPO

sys.path.insert(0, os.path.join(REPO, "bench"))
import gpu_check_nets  # noqa: E402  (bench/ is not a package)

from pycaffe_fer.config import load_config  # noqa: E402

# A machine with an NVIDIA driver has these; the suite's device tests then expect success.
HAS_GPU = bool(glob.glob("/dev/nvidia[0-9]*"))


def libcaffe():
    """The libcaffe.so this interpreter's pycaffe loaded (from /proc/self/maps)."""
    import caffe  # noqa: F401  (loads libcaffe.so)

    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "libcaffe.so" in line}
    assert len(paths) == 1, paths
    return paths.pop()


def readelf(flag, path):
    return subprocess.run(["readelf", flag, "-W", path], stdout=subprocess.PIPE, universal_newlines=True,
                          check=True).stdout


def test_the_installed_build_links_what_its_flags_asked_for():
    # make setup builds what PYCAFFE_FER_CAFFE_FLAGS says; --cuda means cuDNN unless --no-cudnn.
    flags = os.environ.get("PYCAFFE_FER_CAFFE_FLAGS", "").split()
    needed = readelf("-d", libcaffe())
    symbols = readelf("--dyn-syms", libcaffe())
    if "--cuda" not in flags:
        assert "libcudart" not in needed
        return
    assert "libcudart.so" in needed and "libcublas.so" in needed
    if "--no-cudnn" in flags:
        assert "libcudnn" not in needed
    else:
        assert "libcudnn.so.9" in needed
        assert "cudnnConvolutionForward" in symbols
        assert "cudnnGetConvolutionForwardAlgorithm_v7" in symbols


def caffe_device_query(caffe_bin, gpu):
    return subprocess.run([caffe_bin, "device_query", "-gpu", gpu], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)


@pytest.mark.skipif(HAS_GPU, reason="checks the answer on a machine without a GPU; this one has one")
def test_device_query_without_a_gpu_is_one_line_and_status_1(caffe_bin):
    result = caffe_device_query(caffe_bin, "0")
    assert result.returncode == 1, result.stderr
    # Caffe's usual INFO log ("Querying GPUs 0"), then the one line that says why
    *info, last = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("I") and "] " in line for line in info), result.stderr
    lines = [last]
    assert lines[0].startswith("caffe: -gpu 0: ")
    # a CPU-only build says so; a CUDA build relays CUDA's reason
    assert "built without CUDA" in lines[0] or "GPU" in lines[0]
    assert "Check failure" not in result.stderr and "stack trace" not in result.stderr


def test_device_query_names_a_gpu_id_that_does_not_exist(caffe_bin):
    result = caffe_device_query(caffe_bin, "97")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("caffe: -gpu 97: ")
    assert "Check failure" not in result.stderr


@pytest.mark.skipif(HAS_GPU, reason="checks the answer on a machine without a GPU; this one has one")
def test_run_experiment_with_gpu_stops_in_one_line_before_writing(tmp_path):
    out = tmp_path / "exp"
    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "run_experiment.py"), "--config", "demo",
                             "--out", str(out), "--gpu", "0"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: --gpu 0: ") and result.stderr.count("\n") == 1, result.stderr
    assert not out.exists()


LISTING = """\
PoolingLayerTest/0.  # TypeParam = caffe::CPUDevice<float>
  TestSetup
PoolingLayerTest/2.  # TypeParam = caffe::GPUDevice<float>
  TestSetup
CuDNNPoolingLayerTest/0.  # TypeParam = float
  TestSetupCuDNN
NetTest/1.  # TypeParam = caffe::CPUDevice<double>
  TestHasBlob
"""


# Caffe's bundled gtest lists no TypeParams: TestDtypesAndDevices' four cases are CPU float,
# CPU double, GPU float, GPU double.
UNTYPED_LISTING = "".join("%s\n  TestSetup\n" % case for case in (
    "InnerProductLayerTest/0.", "InnerProductLayerTest/1.", "InnerProductLayerTest/2.", "InnerProductLayerTest/3.",
    "CuDNNConvolutionLayerTest/0.", "CuDNNConvolutionLayerTest/1.", "SoftmaxLayerTest/0.", "SoftmaxLayerTest/1.",
    "FilterNetTest."))


@pytest.mark.parametrize("listing, device, expected", [
    (LISTING, "cpu", "PoolingLayerTest/0.*:NetTest/1.*"),
    (LISTING, "gpu", "PoolingLayerTest/2.*:CuDNNPoolingLayerTest/0.*"),
    (UNTYPED_LISTING, "cpu", "InnerProductLayerTest/0.*:InnerProductLayerTest/1.*:SoftmaxLayerTest/0.*:"
                             "SoftmaxLayerTest/1.*:FilterNetTest.*"),
    (UNTYPED_LISTING, "gpu", "InnerProductLayerTest/2.*:InnerProductLayerTest/3.*:CuDNNConvolutionLayerTest/0.*:"
                             "CuDNNConvolutionLayerTest/1.*"),
])
def test_gtest_filter_splits_the_listing_by_device(listing, device, expected):
    result = subprocess.run([os.path.join(REPO, "tools", "caffe_gtest_filter.sh"), device], input=listing,
                            stdout=subprocess.PIPE, universal_newlines=True, check=True)
    assert result.stdout.strip() == expected


def test_gtest_filter_of_a_cpu_only_listing_runs_no_gpu_case():
    cpu_only = "".join(line + "\n" for line in LISTING.splitlines()[:2])
    result = subprocess.run([os.path.join(REPO, "tools", "caffe_gtest_filter.sh"), "gpu"], input=cpu_only,
                            stdout=subprocess.PIPE, universal_newlines=True, check=True)
    assert result.stdout.strip() == "-*"


@pytest.fixture(scope="module")
def fer2013():
    return load_config("fer2013")


@pytest.mark.parametrize("engine", ["CUDNN", "CAFFE"])
def test_gpu_check_nets_pin_every_engine_layer(fer2013, engine):
    net = gpu_check_nets.pin_engine(gpu_check_nets.train_net(fer2013), engine)
    pinned = [layer for layer in net.layer if layer.type in gpu_check_nets.ENGINE_PARAMS]
    # VGG16: 13 convolutions, 5 poolings, 15 ReLUs, the loss
    assert [sum(layer.type == t for layer in pinned) for t in ("Convolution", "Pooling", "ReLU", "SoftmaxWithLoss")] \
        == [13, 5, 15, 1]
    for layer in pinned:
        params = getattr(layer, gpu_check_nets.ENGINE_PARAMS[layer.type])
        assert params.engine == getattr(type(params), engine)
    # what the check writes is what Caffe parses back
    again = text_format.Parse(text_format.MessageToString(net), caffe_pb2.NetParameter())
    assert again == net
    assert net.layer[0].data_param.batch_size == 48


def test_gpu_check_forward_net_outputs_the_scores_of_four_faces(fer2013):
    net = gpu_check_nets.forward_net(fer2013)
    assert [layer.type for layer in net.layer[:2]] == ["Data", "Silence"]
    assert net.layer[0].data_param.batch_size == 4
    assert list(net.layer[0].transform_param.mean_value) == pytest.approx(fer2013["net"]["mean_value"])
    assert net.layer[-1].top == ["fc8_expression"]
    consumed = {bottom for layer in net.layer for bottom in layer.bottom}
    outputs = [top for layer in net.layer for top in layer.top if top not in consumed]
    assert outputs == ["fc8_expression"]


def test_gpu_check_protocol_counts_the_papers_fer2013_runs(fer2013):
    protocol = gpu_check_nets.protocol(fer2013)
    # every row of Table 2 (plan.planned_runs): constructor 1 + grid 13 + ensemble 8 + fixed-gamma
    # 12 + hard-label 7 (identical runs counted once)
    assert protocol["runs"] == 41
    assert protocol["iterations_per_run"] == 8000 and protocol["batch_size"] == 48
    # 41 runs x 8 validations x 3589 + 14 val scorings (constructor, grid) + 28 test scorings (all but the grid)
    assert protocol["forward_images"] == 41 * 8 * 3589 + 14 * 3589 + 28 * 3589
    json.dumps(protocol)


STAND_IN_NVCC = """#!/bin/sh
case "$1" in
  --list-gpu-arch) printf 'compute_%s\\n' 75 80 86 87 88 89 90 100 110 103 120 121 ;;
  --version) echo 'Cuda compilation tools, release 13.0, V13.0.88' ;;
  *) echo "stand-in nvcc: $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def cuda_toolkit(tmp_path):
    """A stand-in CUDA 13 toolkit (nvcc answering --list-gpu-arch and --version, the runtime header):
    the key and the architecture filter are the installer's own logic, and a fresh machine has no
    toolkit; the real compile is the CUDA build CI makes."""
    os.makedirs(str(tmp_path / "bin"))
    os.makedirs(str(tmp_path / "include"))
    (tmp_path / "include" / "cuda_runtime.h").write_text("")
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.write_text(STAND_IN_NVCC)
    nvcc.chmod(0o755)
    return str(tmp_path)


def install_caffe(toolkit, *flags):
    env = dict(os.environ, CUDA_HOME=toolkit, PATH=os.path.join(toolkit, "bin") + os.pathsep + os.environ["PATH"])
    return subprocess.run([os.path.join(REPO, "tools", "install_caffe.sh")] + list(flags), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60, env=env)


def test_installer_keys_each_build_variant_apart(cuda_toolkit):
    roots = {flags: install_caffe(cuda_toolkit, "--print-root", *flags.split()).stdout.strip()
             for flags in ("", "--cuda", "--cuda --no-cudnn", "--cuda --lean", "--cuda --cuda-arch 90")}
    names = {flags: os.path.basename(root).rsplit("-", 1)[0] for flags, root in roots.items()}
    assert names == {"": "caffe-cpu", "--cuda": "caffe-cuda-cudnn", "--cuda --no-cudnn": "caffe-cuda",
                     "--cuda --lean": "caffe-cuda-cudnn-lean", "--cuda --cuda-arch 90": "caffe-cuda-cudnn"}
    assert len(set(roots.values())) == 5
    assert install_caffe(cuda_toolkit, "--print-root", "--cuda").stdout.strip() == roots["--cuda"]


def test_installer_refuses_architectures_nvcc_cannot_build(cuda_toolkit):
    result = install_caffe(cuda_toolkit, "--print-root", "--cuda", "--cuda-arch", "20 30")
    assert result.returncode == 1
    assert "none of the requested CUDA architectures" in result.stderr
