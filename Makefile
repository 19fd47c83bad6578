# The two commands of the README. Both run `setup` first, which installs only what is missing.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test test-fast demo demo-small caffe-check fresh-os-check docker-check torch-peer clean-venv

setup:
	tools/setup_env.sh

test: setup
	$(PY) -m pytest -q tests

# The Caffe-free test files (pytestmark = pytest.mark.fast), in seconds, in a venv of their own with
# no Caffe build; named here, since the other files cannot even be collected without Caffe.
FAST_TESTS = $(shell grep -l '^pytestmark = pytest.mark.fast' tests/test_*.py)
test-fast:
	tools/setup_env.sh --no-caffe
	.venv-fast/bin/python -m pytest -q -m fast $(FAST_TESTS)

demo: setup
	$(PY) tools/run_experiment.py --config configs/demo.yaml --jobs 2

# The demo where training data are scarce (300 faces), as the paper's claim is about.
demo-small: setup
	$(PY) tools/run_experiment.py --config configs/demo_small.yaml --jobs 2

# BVLC Caffe's own gtests against the build setup uses (PYCAFFE_FER_CAFFE_FLAGS=--cuda for the CUDA one).
caffe-check:
	tools/caffe_check.sh

# make test and make demo in a minimal system made with debootstrap (root; OS=debian12, debian13,
# ubuntu22.04 or ubuntu24.04).
OS ?= debian13
fresh-os-check:
	tools/fresh_os_check.sh $(OS)

# docker/Dockerfile built with podman (from a debootstrap base where no registry answers) and the
# suite run in the image, in CPU mode (root; see docs/docker.md).
docker-check:
	tools/docker_check.sh

# PyTorch and torchvision in a virtualenv of their own (~/.cache/pycaffe_fer/torch-peer, about
# 5.5 GB): the GPU check's PyTorch peer's tests run where it is (CI makes it first).
torch-peer:
	tools/torch_peer_env.sh

clean-venv:
	rm -rf $(VENV) .venv-fast
