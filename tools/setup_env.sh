#!/usr/bin/env bash
# `make setup`: give this checkout a working Caffe and a virtualenv .venv/ with pycaffe_fer.
#
# - If a Python that can `import caffe` is already there (e.g. an activated conda env made from
#   environment.yml, or PYCAFFE_FER_PYTHON=/path/to/python), use it and build nothing.
# - Otherwise install the Debian packages, build Caffe with tools/install_caffe.sh (cached under
#   ~/.cache/pycaffe_fer) and use the system /usr/bin/python3 that pycaffe is built for.
# Then: .venv/ (with --system-site-packages, so the system numpy/cv2 that pycaffe needs are seen),
# pycaffe_fer installed editable, and .venv/bin/caffe, a wrapper that lets Caffe's Python layers
# import pycaffe_fer. Every step checks first and does nothing when already done.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
say() { printf '[setup] %s\n' "$*" >&2; }

# Python packages the project uses, as Debian packages built for the system numpy that pycaffe
# links against (PyPI's wheels would pull numpy 2).
# python3-setuptools: the editable install below builds without isolation, and a venv of Python
# >= 3.12 has no setuptools of its own.
APT_PY_DEPS="python3-venv python3-pip python3-setuptools python3-numpy python3-protobuf python3-opencv
  python3-lmdb python3-jinja2 python3-yaml python3-tqdm python3-matplotlib python3-pytest
  python3-pytest-timeout python3-skimage python3-scipy
  opencv-data"   # opencv-data: the Haar face cascade tools/predict.py crops faces with

make_venv() {
  if [ ! -x "$VENV/bin/python" ] || [ "$(readlink -f "$VENV/bin/python")" != "$(readlink -f "$base_python")" ]; then
    say "creating $VENV from $base_python"
    rm -rf "$VENV"
    "$base_python" -m venv --system-site-packages "$VENV"
  fi
}

install_project() {
  # (from /, so the checkout in the current directory does not count as installed)
  if ! (cd / && "$VENV/bin/python" -c 'import pycaffe_fer, sys; sys.exit(not pycaffe_fer.__file__.startswith(sys.argv[1]))' "$REPO" 2>/dev/null); then
    # An editable install from pyproject.toml alone needs setuptools >= 64 (PEP 660); an older one
    # (Ubuntu 22.04's 59.6) installs the project as "UNKNOWN-0.0.0". The venv then gets its own, 70.x:
    # from 70.1 it builds the editable wheel without the separate `wheel` package, and before 71 it
    # uses its own copy of `packaging` (71 and later take the system's, and Ubuntu 22.04's 21.3 fails:
    # "canonicalize_version() got an unexpected keyword argument 'strip_trailing_zero'").
    if ! "$VENV/bin/python" -c 'import setuptools, sys; sys.exit(tuple(map(int, setuptools.__version__.split(".")[:2])) < (64, 0))' 2>/dev/null; then
      say "the system's setuptools is too old for pyproject.toml: installing setuptools 70.x into $VENV"
      "$VENV/bin/python" -m pip install --quiet "setuptools>=70.1,<71"
    fi
    say "installing pycaffe_fer (editable) into $VENV"
    # No build isolation: setuptools comes from the venv, so no download is needed.
    "$VENV/bin/python" -m pip install --quiet --no-build-isolation -e "$REPO"
  fi
}

# --no-caffe (make test-fast): the Python packages and a venv of their own, .venv-fast, with no
# Caffe built and none on its path, so a test marked fast that needs Caffe fails there.
if [ "${1:-}" = "--no-caffe" ]; then
  VENV="$REPO/.venv-fast"
  base_python=/usr/bin/python3
  command -v apt-get >/dev/null || { say "no apt-get here: make test-fast needs $APT_PY_DEPS"; exit 1; }
  "$REPO/tools/apt_install_missing.sh" $APT_PY_DEPS
  make_venv
  install_project
  say "ready: $VENV/bin/python (no Caffe)"
  exit 0
fi

# A throwaway single-node SLURM that the tests start (tests/slurm_cluster.py); no service is started.
if command -v apt-get >/dev/null; then
  "$REPO/tools/apt_install_missing.sh" slurm-wlm munge
fi

caffe_python=""   # directory holding the caffe package, when we built it
caffe_bin=""
base_python="${PYCAFFE_FER_PYTHON:-}"
if [ -z "$base_python" ] && [ -n "${CONDA_PREFIX:-}" ] && "$CONDA_PREFIX/bin/python" -c 'import caffe' 2>/dev/null; then
  base_python="$CONDA_PREFIX/bin/python"
fi
if [ -n "$base_python" ]; then
  "$base_python" -c 'import caffe' || { say "PYCAFFE_FER_PYTHON=$base_python cannot import caffe"; exit 1; }
  # The KL loss is a Python layer: a Caffe built without WITH_PYTHON_LAYER cannot train the method.
  "$base_python" -c 'import caffe, sys; sys.exit("Python" not in caffe.layer_type_list())' ||
    { say "the Caffe of $base_python has no Python layer (built without BUILD_python_layer); unset PYCAFFE_FER_PYTHON / deactivate it to let make setup build one"; exit 1; }
  say "using the existing Caffe of $base_python"
  # The caffe binary beside that Python, else on PATH; never this venv's own wrapper.
  caffe_bin=""
  for candidate in "$(dirname "$base_python")/caffe" "$(command -v caffe || true)"; do
    if [ -x "$candidate" ] && [ "$(readlink -f "$candidate")" != "$(readlink -f "$VENV/bin/caffe")" ]; then
      caffe_bin="$candidate"; break
    fi
  done
  [ -n "$caffe_bin" ] || { say "found pycaffe but no caffe binary next to $base_python or on PATH"; exit 1; }
else
  base_python=/usr/bin/python3
  command -v apt-get >/dev/null || { say "no apt-get here: use conda (environment.yml) or Docker, see README"; exit 1; }
  "$REPO/tools/apt_install_missing.sh" $APT_PY_DEPS
  # PYCAFFE_FER_CAFFE_FLAGS passes installer flags through, e.g. --cuda (the Docker image does).
  caffe_root="$("$REPO/tools/install_caffe.sh" ${PYCAFFE_FER_CAFFE_FLAGS:-} | tail -n 1)"
  # Debian's packaging installs pycaffe under lib/python3/dist-packages.
  caffe_python="$(dirname "$(dirname "$(find "$caffe_root" -path '*/caffe/_caffe.so' | head -n 1)")")"
  caffe_bin="$caffe_root/bin/caffe"
fi

make_venv
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ -n "$caffe_python" ]; then
  echo "$caffe_python" >"$site/caffe.pth"
fi

install_project

# onnx (tools/export_onnx.py) and onnxruntime (predict's onnx backend) come from PyPI as wheels
# (onnx built from source fails to link against Debian's static protobuf), held to the numpy
# pycaffe is built against: unconstrained, onnx pulls another numpy (through ml_dtypes) and breaks
# `import caffe`. The versions depend on Python: up to 3.12 (Debian 12, Ubuntu 24.04) onnx < 1.18,
# which runs on the system's protobuf, held too; onnx has wheels for 3.13 (Debian 13) only from 1.18
# on, which needs protobuf >= 4.25.1, newer than the system's: the venv gets its own, below 6
# (caffe_pb2, generated by the system's protoc, still loads). Python 3.10 (Ubuntu 22.04) has numpy
# 1.21.5 and protobuf 3.12.4: onnx 1.12 is the last for a protobuf < 3.20.2 (and the first with opset
# 17, which the export writes), onnxruntime 1.13 and later need numpy >= 1.21.6 (a venv protobuf
# >= 4 would not load caffe_pb2 from Ubuntu 22.04's protoc 3.12): chosen by the system protobuf.
# The bounds skip releases that need a newer numpy (pip would download each to find out).
# tests/test_deploy.py checks that caffe imports beside them.
if ! (cd / && "$VENV/bin/python" -c 'import onnx, onnxruntime' 2>/dev/null); then
  if "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 13))'; then
    held="numpy"; wanted=("onnx>=1.18,<1.20" "onnxruntime>=1.20,<1.24" "protobuf>=4.25.1,<6")
  elif "$VENV/bin/python" -c 'import sys, google.protobuf as p
sys.exit(tuple(int(n) for n in p.__version__.split(".")[:3]) >= (3, 20, 2))'; then
    held="numpy protobuf"; wanted=("onnx>=1.12,<1.13" "onnxruntime>=1.12,<1.13")
  else
    held="numpy protobuf"; wanted=("onnx>=1.14,<1.18" "onnxruntime>=1.16,<1.27")
  fi
  say "installing onnx and onnxruntime into $VENV (held: $held)"
  "$VENV/bin/python" -c 'import sys, numpy, google.protobuf as p
versions = {"numpy": numpy.__version__, "protobuf": p.__version__}
print("\n".join("%s==%s" % (name, versions[name]) for name in sys.argv[1:]))' $held >"$VENV/constraints.txt"
  "$VENV/bin/python" -m pip install --quiet --only-binary=:all: -c "$VENV/constraints.txt" "${wanted[@]}"
fi

# The caffe binary embeds the interpreter it was built with; Python layers must find pycaffe_fer,
# pycaffe and the venv's packages through PYTHONPATH (.pth files are not read from PYTHONPATH).
# convert_imageset (the baseline of bench/lmdb_build.py) gets the same wrapper.
for tool in caffe convert_imageset; do
  wrapper="$VENV/bin/$tool"
  cat >"$wrapper.tmp" <<EOF
#!/bin/sh
# Written by tools/setup_env.sh: Caffe's $tool, with pycaffe_fer's Python layers importable.
PYTHONPATH="$REPO${caffe_python:+:$caffe_python}:$site\${PYTHONPATH:+:\$PYTHONPATH}"
export PYTHONPATH
exec "$(dirname "$caffe_bin")/$tool" "\$@"
EOF
  chmod +x "$wrapper.tmp"
  mv "$wrapper.tmp" "$wrapper"
done
wrapper="$VENV/bin/caffe"

# The res10 SSD face detector and the real photographs and clips of the tests, pinned (pycaffe_fer/assets.py).
"$VENV/bin/python" "$REPO/tools/fetch_assets.py" >/dev/null

(cd / && "$VENV/bin/python" -c 'import caffe, pycaffe_fer') || { say "import caffe, pycaffe_fer failed in $VENV"; exit 1; }
say "ready: $VENV/bin/python, $wrapper ($("$wrapper" --version 2>&1 | head -n1))"
