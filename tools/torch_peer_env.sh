#!/usr/bin/env bash
# `make torch-peer`: a virtualenv with PyTorch and torchvision for the GPU check's PyTorch peer
# (bench/gpu_check_peer.py), so its tests run against the real thing: torchvision's VGG16 against
# the peer's inline one, and the check's dry run with a torch that has no torchvision.
#
# In $PYCAFFE_FER_CACHE/torch-peer (default ~/.cache/pycaffe_fer/torch-peer), apart from .venv:
# torch does not share pycaffe's numpy. torch 2.14.1 with torchvision 0.29.1, a pair whose
# torchvision imports beside its torch (PyPI's torchvision fails beside some torch builds); PyPI's
# are CUDA builds, about 5.5 GB installed. Made once; prints the venv's python as its last line.
set -euo pipefail
CACHE="${PYCAFFE_FER_CACHE:-$HOME/.cache/pycaffe_fer}"
VENV="$CACHE/torch-peer"
PACKAGES=(torch==2.14.1 torchvision==0.29.1)
say() { printf '[torch-peer] %s\n' "$*" >&2; }
if [ -f "$VENV/.complete" ] && (cd / && "$VENV/bin/python" -c 'import torch, torchvision') 2>/dev/null; then
  echo "$VENV/bin/python"; exit 0
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock-torch-peer"
flock 9
rm -rf "$VENV"
start=$SECONDS
say "making $VENV with ${PACKAGES[*]} (about 5.5 GB)"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}"
(cd / && "$VENV/bin/python" -c 'import torch, torchvision') || { say "FAILED: torch and torchvision do not import in $VENV"; exit 1; }
touch "$VENV/.complete"
say "ready in $((SECONDS - start)) s: $("$VENV/bin/python" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)')"
echo "$VENV/bin/python"
