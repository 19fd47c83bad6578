#!/usr/bin/env bash
# Build BVLC Caffe (with pycaffe, Python layers, LMDB and OpenCV) from Debian's own `caffe` source
# package, without conda and without touching the machine's apt sources.
#
# Usage: tools/install_caffe.sh [--cuda] [--cuda-arch "61 70 75 80 86 90"] [--jobs N]
#                               [--configure-only] [--no-apt] [--print-root]
#
# The result is cached under $PYCAFFE_FER_CACHE (default ~/.cache/pycaffe_fer) in a directory keyed
# by the source version, our patches and the build flags, so a second call returns in seconds.
# On success the last line printed is the install root (bin/caffe, lib/, python/caffe).
set -euo pipefail

CAFFE_DEB_VERSION="1.0.0+git20180821.99bd997-8"
DEBIAN_SUITE="bullseye"
# Bullseye left deb.debian.org for archive.debian.org at its end of life; try both.
DEBIAN_MIRRORS="${PYCAFFE_FER_DEBIAN_MIRROR:-http://deb.debian.org/debian http://archive.debian.org/debian}"
CACHE="${PYCAFFE_FER_CACHE:-$HOME/.cache/pycaffe_fer}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PATCH_DIR="$HERE/caffe_patches"

# Packages from the running release (bookworm) that the build and pycaffe need.
APT_BUILD_DEPS="cmake g++ make dpkg-dev libboost-dev libboost-filesystem-dev libboost-system-dev
  libboost-thread-dev libboost-python-dev libgflags-dev libgoogle-glog-dev libhdf5-dev liblmdb-dev
  libopenblas-dev libopencv-dev libprotobuf-dev libprotoc-dev protobuf-compiler python3-dev
  python3-numpy python3-protobuf python3-skimage debian-archive-keyring"

cuda=0
cuda_arch="61 70 75 80 86 90"
jobs="$(nproc)"
configure_only=0
use_apt=1
print_root=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) cuda=1 ;;
    --cuda-arch) cuda_arch="$2"; shift ;;
    --jobs) jobs="$2"; shift ;;
    --configure-only) configure_only=1 ;;
    --no-apt) use_apt=0 ;;
    --print-root) print_root=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "install_caffe.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

step_name=""
step_log=""
say() { printf '[install_caffe] %s\n' "$*" >&2; }
# Run one named step with its output in a log; on failure say which step and show the log's tail.
run_step() {
  step_name="$1"; shift
  step_log="$LOGS/$(echo "$step_name" | tr ' /' '__').log"
  say "$step_name (log: $step_log)"
  local start=$SECONDS
  if ! "$@" >"$step_log" 2>&1; then
    say "FAILED at step: $step_name"
    tail -n 40 "$step_log" >&2
    exit 1
  fi
  say "  done in $((SECONDS - start)) s"
}

# CUDA: keep only the architectures this nvcc can compile for (CUDA 13 dropped sm_61/sm_70).
find_nvcc() {
  command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; } || true
}
if [ "$cuda" = 1 ]; then
  NVCC="$(find_nvcc)"
  [ -n "$NVCC" ] || { echo "install_caffe.sh: --cuda given but nvcc is not on PATH or in /usr/local/cuda/bin" >&2; exit 1; }
  # The toolkit root: nvcc on PATH may be a wrapper script, so look for the headers.
  cuda_home=""
  for candidate in "${CUDA_HOME:-}" "${CUDA_PATH:-}" "$(dirname "$(dirname "$(readlink -f "$NVCC")")")" /usr/local/cuda; do
    if [ -n "$candidate" ] && [ -f "$candidate/include/cuda_runtime.h" ]; then cuda_home="$(readlink -f "$candidate")"; break; fi
  done
  [ -n "$cuda_home" ] || { echo "install_caffe.sh: found $NVCC but no CUDA toolkit headers; set CUDA_HOME" >&2; exit 1; }
  NVCC="$cuda_home/bin/nvcc"
  supported="$("$NVCC" --list-gpu-arch 2>/dev/null | sed -n 's/^compute_\([0-9]*\)$/\1/p' | tr '\n' ' ')"
  kept=""
  for a in $cuda_arch; do
    if [ -z "$supported" ] || [[ " $supported " == *" $a "* ]]; then kept="$kept $a"; else say "nvcc $("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') cannot build sm_$a: skipped"; fi
  done
  cuda_arch="$(echo $kept)"
  [ -n "$cuda_arch" ] || { echo "install_caffe.sh: none of the requested CUDA architectures is supported by $NVCC" >&2; exit 1; }
  ptx_arch="${cuda_arch##* }"
fi

cmake_flags=(-DBUILD_python=ON -DBUILD_python_layer=ON -DUSE_LMDB=ON -DUSE_LEVELDB=OFF -DUSE_OPENCV=ON
  -DBLAS=Open -Dpython_version=3 -DBUILD_docs=OFF -DCMAKE_BUILD_TYPE=Release
  # pycaffe is for the system interpreter (make setup's venv), whatever python3 is first on PATH.
  -DPYTHON_EXECUTABLE=/usr/bin/python3)
if [ "$cuda" = 1 ]; then
  cmake_flags+=(-DCPU_ONLY=OFF -DUSE_CUDNN=OFF -DUSE_NCCL=OFF -DCUDA_ARCH_NAME=Manual
    "-DCUDA_ARCH_BIN=$cuda_arch" "-DCUDA_ARCH_PTX=$ptx_arch")
else
  cmake_flags+=(-DCPU_ONLY=ON)
fi

# The cache key: anything that changes the binaries changes the directory.
key="$( { echo "$CAFFE_DEB_VERSION"; printf '%s\n' "${cmake_flags[@]}"; cat "$PATCH_DIR"/*.patch; } | sha256sum | cut -c1-12)"
variant=cpu; [ "$cuda" = 1 ] && variant="cuda"
ROOT="$CACHE/caffe-$variant-$key"
if [ "$print_root" = 1 ]; then echo "$ROOT"; exit 0; fi

# One build per key at a time: a second `make setup` (another checkout, CI) waits for the first.
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock-$variant-$key"
if ! flock -n 9; then
  say "another build of $ROOT is running; waiting for it"
  flock 9
fi
if [ -f "$ROOT/.complete" ] && [ "$configure_only" = 0 ]; then
  say "reusing Caffe in $ROOT"
  echo "$ROOT"
  exit 0
fi

WORK="$CACHE/work-$variant-$key"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
total_start=$SECONDS
say "building Caffe ($variant) into $ROOT; the first build takes 4 to 7 minutes on 2 cores"

# 1. Build dependencies from the machine's own release.
if [ "$use_apt" = 1 ]; then
  run_step "install missing build dependencies" "$HERE/apt_install_missing.sh" $APT_BUILD_DEPS
fi

# 2. Debian's caffe source package, fetched through a private apt configuration.
SRC="$WORK/caffe-src"
if [ ! -f "$SRC/.patched" ]; then
  rm -rf "$SRC" "$WORK/apt" "$WORK"/caffe_*
  mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial"
  fetch_source() {
    local mirror
    for mirror in $DEBIAN_MIRRORS; do
      echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $DEBIAN_SUITE main" >"$WORK/apt/sources.list"
      local opts=(-o "Dir::Etc::sourcelist=$WORK/apt/sources.list" -o Dir::Etc::sourceparts=/nonexistent
        -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt/cache" -o APT::Sandbox::User=root)
      if apt-get "${opts[@]}" update && (cd "$WORK" && apt-get "${opts[@]}" source --download-only "caffe=$CAFFE_DEB_VERSION"); then
        return 0
      fi
      echo "mirror $mirror failed, trying the next"
    done
    return 1
  }
  run_step "fetch Debian source package caffe $CAFFE_DEB_VERSION" fetch_source
  run_step "unpack source package" dpkg-source -x "$WORK"/caffe_*.dsc "$SRC"
  apply_patches() {
    local p
    for p in "$PATCH_DIR"/*.patch; do echo "applying $p"; patch -d "$SRC" -p1 --forward <"$p"; done
  }
  run_step "apply pycaffe_fer patches" apply_patches
  touch "$SRC/.patched"
fi

# 3. CUDA libraries: the CUDA devel images carry cuBLAS/cuRAND; a bare nvcc (e.g. a pip or
#    distribution nvcc) does not, so take them from NVIDIA's PyPI wheels into the cache.
if [ "$cuda" = 1 ]; then
  cublas="$(ls "$cuda_home"/lib64/libcublas.so "$cuda_home"/targets/*/lib/libcublas.so 2>/dev/null | head -n1 || true)"
  if [ -z "$cublas" ]; then
    cuda_major="$("$NVCC" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')"
    NVWHEELS="$CACHE/nvidia-cu$cuda_major"
    if [ ! -d "$NVWHEELS/nvidia" ]; then
      # NVIDIA renamed the wheels at CUDA 13: nvidia-cublas-cu12 before, nvidia-cublas (13.x) since.
      if [ "$cuda_major" -ge 13 ]; then wheels="nvidia-cublas==$cuda_major.* nvidia-curand"
      else wheels="nvidia-cublas-cu$cuda_major nvidia-curand-cu$cuda_major"; fi
      run_step "pip install cuBLAS/cuRAND for CUDA $cuda_major" python3 -m pip install --quiet --target "$NVWHEELS" $wheels
    fi
    libdir="$(dirname "$(find "$NVWHEELS/nvidia" -name 'libcublas.so.*' | head -n1)")"
    incdir="$(dirname "$(find "$NVWHEELS/nvidia" -name 'cublas_v2.h' | head -n1)")"
    currand_lib="$(dirname "$(find "$NVWHEELS/nvidia" -name 'libcurand.so.*' | head -n1)")"
    currand_inc="$(dirname "$(find "$NVWHEELS/nvidia" -name 'curand.h' | head -n1)")"
    for lib in "$libdir"/libcublas.so.* "$libdir"/libcublasLt.so.* "$currand_lib"/libcurand.so.*; do
      ln -sf "$(basename "$lib")" "${lib%%.so.*}.so"
    done
    cmake_flags+=("-DCUDA_cublas_LIBRARY=$libdir/libcublas.so" "-DCUDA_curand_LIBRARY=$currand_lib/libcurand.so"
      "-DCMAKE_CXX_FLAGS=-I$incdir -I$currand_inc" "-DCUDA_NVCC_FLAGS=-I$incdir -I$currand_inc")
  fi
  # FindCUDA forgets the library paths given above when it sees a "new" toolkit root, which on a
  # first configure is always: declaring the root as already seen keeps them.
  cmake_flags+=("-DCUDA_TOOLKIT_ROOT_DIR=$cuda_home" "-DCUDA_TOOLKIT_ROOT_DIR_INTERNAL=$cuda_home")
fi

# 4. Configure, build, install.
BUILD="$WORK/build"
mkdir -p "$BUILD"
run_step "cmake configure" cmake -S "$SRC" -B "$BUILD" "${cmake_flags[@]}" \
  "-DCMAKE_INSTALL_PREFIX=$ROOT" "-DCMAKE_INSTALL_RPATH=$ROOT/lib"
if [ "$configure_only" = 1 ]; then
  say "configured in $BUILD (--configure-only: not building)"
  exit 0
fi
say "compiling with $jobs jobs; follow it with: tail -f $LOGS/make.log"
run_step "make" make -C "$BUILD" -j"$jobs"
rm -rf "$ROOT"
run_step "make install" make -C "$BUILD" install
# convert_imageset and friends are installed too; pycaffe lands in $ROOT/python.
[ -x "$ROOT/bin/caffe" ] || { say "FAILED: $ROOT/bin/caffe missing after install"; exit 1; }
cp -r "$LOGS" "$ROOT/build-logs"
touch "$ROOT/.complete"
rm -rf "$WORK"
say "Caffe built in $(((SECONDS - total_start) / 60)) min $(((SECONDS - total_start) % 60)) s"
echo "$ROOT"
