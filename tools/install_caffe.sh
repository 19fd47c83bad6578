#!/usr/bin/env bash
# Build BVLC Caffe (with pycaffe, Python layers, LMDB and OpenCV) from Debian's own `caffe` source
# package, without conda and without touching the machine's apt sources.
#
# Usage: tools/install_caffe.sh [--cuda [--no-cudnn] [--cuda-arch "61 70 75 80 86 89 90"]] [--lean]
#                               [--tests] [--jobs N] [--configure-only] [--no-apt] [--print-root]
#
#   --cuda        build for NVIDIA GPUs (cuDNN on; architectures: those of the list nvcc supports)
#   --no-cudnn    with --cuda: Caffe's own CUDA kernels only
#   --lean        no pycaffe and no OpenCV: the caffe binary alone (bench/gpu_check.sh's bundle)
#   --tests       also build Caffe's own gtest binary (test/caffe_gtests; make caffe-check)
#
# The result is cached under $PYCAFFE_FER_CACHE (default ~/.cache/pycaffe_fer) in a directory keyed
# by the source version, our patches, the build flags and the system (release, compiler, Python,
# numpy), so a second call returns in seconds; a cached build whose libraries no longer resolve is
# built again.
# cuDNN comes from the system (CUDNN_ROOT, the CUDA toolkit, /usr) or else NVIDIA's PyPI wheels.
# On success the last line printed is the install root (bin/caffe, lib/, python/caffe).
set -euo pipefail

CAFFE_DEB_VERSION="1.0.0+git20180821.99bd997-8"
DEBIAN_SUITE="bullseye"
# Bullseye left deb.debian.org for archive.debian.org at its end of life; try both.
DEBIAN_MIRRORS="${PYCAFFE_FER_DEBIAN_MIRROR:-http://deb.debian.org/debian http://archive.debian.org/debian}"
CACHE="${PYCAFFE_FER_CACHE:-$HOME/.cache/pycaffe_fer}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PATCH_DIR="$HERE/caffe_patches"

# Packages from the running release (Debian 12 or 13) that the build and pycaffe need (pycaffe
# imports six; Debian 12 happens to pull it in through another package, 13 does not).
APT_BUILD_DEPS="cmake g++ make dpkg-dev libboost-dev libboost-filesystem-dev libboost-system-dev
  libboost-thread-dev libboost-python-dev libgflags-dev libgoogle-glog-dev libhdf5-dev liblmdb-dev
  libopenblas-dev libopencv-dev libprotobuf-dev libprotoc-dev protobuf-compiler python3-dev
  python3-numpy python3-protobuf python3-six python3-skimage debian-archive-keyring"

cuda=0
cudnn=1
lean=0
tests=0
cuda_arch="61 70 75 80 86 89 90"
jobs="$(nproc)"
configure_only=0
use_apt=1
print_root=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) cuda=1 ;;
    --no-cudnn) cudnn=0 ;;
    --cuda-arch) cuda_arch="$2"; shift ;;
    --lean) lean=1 ;;
    --tests) tests=1 ;;
    --jobs) jobs="$2"; shift ;;
    --configure-only) configure_only=1 ;;
    --no-apt) use_apt=0 ;;
    --print-root) print_root=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "install_caffe.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '[install_caffe] %s\n' "$*" >&2; }

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

cmake_flags=(-DUSE_LMDB=ON -DUSE_LEVELDB=OFF -DBLAS=Open -DBUILD_docs=OFF -DCMAKE_BUILD_TYPE=Release)
if [ "$lean" = 1 ]; then
  cmake_flags+=(-DBUILD_python=OFF -DBUILD_python_layer=OFF -DUSE_OPENCV=OFF)
else
  cmake_flags+=(-DBUILD_python=ON -DBUILD_python_layer=ON -DUSE_OPENCV=ON -Dpython_version=3
    # pycaffe is for the system interpreter (make setup's venv), whatever python3 is first on PATH.
    -DPYTHON_EXECUTABLE=/usr/bin/python3)
fi
if [ "$cuda" = 1 ]; then
  cmake_flags+=(-DCPU_ONLY=OFF "-DUSE_CUDNN=$([ "$cudnn" = 1 ] && echo ON || echo OFF)" -DUSE_NCCL=OFF
    -DCUDA_ARCH_NAME=Manual "-DCUDA_ARCH_BIN=$cuda_arch" "-DCUDA_ARCH_PTX=$ptx_arch")
else
  cmake_flags+=(-DCPU_ONLY=ON)
fi

step_name=""
step_log=""
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

# 1. Build dependencies from the machine's own release, first: the cache key names their versions.
mkdir -p "$CACHE"
if [ "$use_apt" = 1 ] && [ "$print_root" = 0 ]; then
  LOGS="$CACHE"
  run_step "install missing build dependencies" "$HERE/apt_install_missing.sh" $APT_BUILD_DEPS
fi

# The cache key: anything that changes the binaries changes the directory. Besides our inputs,
# the system the build links against: a cache shared between releases, or kept across an upgrade,
# is not reused (and a cached build whose libraries no longer resolve is rebuilt, below).
build_system() {
  (. /etc/os-release && echo "system: $ID ${VERSION_ID:-} ${VERSION_CODENAME:-}")
  echo "compiler: $(c++ --version 2>/dev/null | head -n 1)"
  if [ "$lean" = 0 ]; then
    echo "python, numpy: $(/usr/bin/python3 -c 'import platform, numpy; print(platform.python_version(), numpy.__version__)' 2>/dev/null)"
  fi
}
key="$( { echo "$CAFFE_DEB_VERSION"; printf '%s\n' "${cmake_flags[@]}"; cat "$PATCH_DIR"/*.patch; build_system; } |
  sha256sum | cut -c1-12)"
variant=cpu
[ "$cuda" = 1 ] && variant="cuda"
[ "$cuda" = 1 ] && [ "$cudnn" = 1 ] && variant="cuda-cudnn"
[ "$lean" = 1 ] && variant="$variant-lean"
ROOT="$CACHE/caffe-$variant-$key"
if [ "$print_root" = 1 ]; then echo "$ROOT"; exit 0; fi

# make's output into the step's log, and a count of the objects it has built onto the terminal
# (fd 3) every 10 objects, out of about 120 for the CPU build and 190 with CUDA (CMake's own
# percentage stands still through the CUDA kernels). Counted by bash's read, line by line: mawk
# (Debian 13's awk) reads a pipe in blocks and printed the count only when make had ended.
exec 3>&2
count_objects() {
  local built=0 line
  while IFS= read -r line; do
    case "$line" in
      *"Building CXX"*|*"Building NVCC"*)
        built=$((built + 1))
        if [ $((built % 10)) = 0 ]; then say "  make: $built objects built"; fi ;;
    esac
  done
}
make_with_progress() {
  make -C "$1" -j"$jobs" 2>&1 | tee >(count_objects >&3)
  return "${PIPESTATUS[0]}"
}

# Caffe's own gtests (the subset tools/caffe_gtests/CMakeLists.txt names), built with --tests
# against the installed libcaffe.so from the test sources kept in $ROOT/test/src.
build_tests() {
  [ "$tests" = 1 ] && [ ! -x "$ROOT/test/caffe_gtests" ] || return 0
  LOGS="$ROOT/build-logs"
  local build
  build="$(mktemp -d "$CACHE/test-build.XXXXXX")"
  run_step "cmake configure Caffe's gtests" cmake -S "$HERE/caffe_gtests" -B "$build" \
    -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS=$(cat "$ROOT/test/cxx_flags")" \
    "-DCaffe_DIR=$ROOT/share/Caffe" "-DCAFFE_TEST_SOURCES=$ROOT/test/src"
  say "compiling Caffe's gtests (under a minute on 2 cores)"
  run_step "make gtests" make_with_progress "$build"
  install -m 755 "$build/caffe_gtests" "$ROOT/test/caffe_gtests.tmp"
  mv "$ROOT/test/caffe_gtests.tmp" "$ROOT/test/caffe_gtests"
  rm -rf "$build"
}

# Libraries that a build's binaries need and this system no longer has (an upgrade removed them).
# libcuda.so.1 is the GPU driver's, which a machine without a GPU lacks: it is not the build's.
unresolved_libraries() {
  find "$1/bin" "$1/lib" "$1/python" -type f \( -name '*.so*' -o -perm -u+x \) -exec ldd {} + 2>/dev/null |
    awk '/=> not found/ && $1 !~ /^libcuda\.so/ { print $1 }' | sort -u | paste -sd ' ' - || true
}

# One build per key at a time: a second `make setup` (another checkout, CI) waits for the first.
exec 9>"$CACHE/.lock-$variant-$key"
if ! flock -n 9; then
  say "another build of $ROOT is running; waiting for it"
  flock 9
fi
if [ -f "$ROOT/.complete" ] && [ "$configure_only" = 0 ]; then
  unresolved="$(unresolved_libraries "$ROOT")"
  if [ -z "$unresolved" ]; then
    say "reusing Caffe in $ROOT"
    build_tests
    echo "$ROOT"
    exit 0
  fi
  say "the cached build in $ROOT needs libraries this system does not have ($unresolved): building it again"
  rm "$ROOT/.complete"
fi

WORK="$CACHE/work-$variant-$key"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
total_start=$SECONDS
say "building Caffe ($variant) into $ROOT"

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

# 3. CUDA libraries: the CUDA devel images carry cuBLAS/cuRAND (and cuDNN, in the -cudnn images); a
#    bare nvcc (e.g. a pip or distribution nvcc) does not, so take what is missing from NVIDIA's PyPI
#    wheels, installed together into one tree in the cache: cuDNN's libraries find cuBLAS and NVRTC
#    through a RUNPATH relative to themselves. libcaffe.so's RUNPATH names the libraries' folders.
rpath="$ROOT/lib"
cxx_flags=""   # include folders the installed headers need besides their own (kept for --tests)
if [ "$cuda" = 1 ]; then
  cuda_major="$("$NVCC" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')"
  # NVIDIA's layout (lib64, targets/), or a distribution's toolkit (Debian's nvidia-cuda-toolkit,
  # CUDA_HOME /usr), which puts the libraries in the multiarch folder.
  multiarch="$(gcc -print-multiarch 2>/dev/null || true)"
  cublas="$(ls "$cuda_home"/lib64/libcublas.so "$cuda_home"/targets/*/lib/libcublas.so \
    ${multiarch:+"$cuda_home/lib/$multiarch/libcublas.so"} 2>/dev/null | head -n1 || true)"
  if [ -n "$multiarch" ] && [ "$cublas" = "$cuda_home/lib/$multiarch/libcublas.so" ]; then
    cmake_flags+=("-DCUDA_cublas_LIBRARY=$cublas" "-DCUDA_curand_LIBRARY=$cuda_home/lib/$multiarch/libcurand.so")
  fi
  cudnn_header=""
  if [ "$cudnn" = 1 ]; then
    for dir in "${CUDNN_ROOT:-}/include" "$cuda_home/include" /usr/include /usr/include/x86_64-linux-gnu; do
      if [ -f "$dir/cudnn.h" ]; then cudnn_header="$dir/cudnn.h"; break; fi
    done
  fi
  wheels=""
  # NVIDIA renamed the wheels at CUDA 13: nvidia-cublas-cu12 before, nvidia-cublas (13.x) since.
  if [ -z "$cublas" ]; then
    if [ "$cuda_major" -ge 13 ]; then wheels="nvidia-cublas==$cuda_major.* nvidia-curand"
    else wheels="nvidia-cublas-cu$cuda_major nvidia-curand-cu$cuda_major"; fi
  fi
  if [ "$cudnn" = 1 ] && [ -z "$cudnn_header" ]; then
    # cuDNN 9 for this CUDA; its libraries need cuBLAS and NVRTC beside them in the same tree.
    if [ "$cuda_major" -ge 13 ]; then wheels="$wheels nvidia-cudnn-cu$cuda_major nvidia-cuda-nvrtc==$cuda_major.*"
      [ -n "$cublas" ] && wheels="$wheels nvidia-cublas==$cuda_major.*"
    else wheels="$wheels nvidia-cudnn-cu$cuda_major==9.* nvidia-cuda-nvrtc-cu$cuda_major"
      [ -n "$cublas" ] && wheels="$wheels nvidia-cublas-cu$cuda_major"
    fi
  fi
  if [ -n "$wheels" ]; then
    NVWHEELS="$CACHE/nvidia-cu$cuda_major-$(echo $wheels | sha256sum | cut -c1-8)"
    if [ ! -f "$NVWHEELS/.complete" ]; then
      rm -rf "$NVWHEELS" "$NVWHEELS.tmp"
      # pip itself: a minimal system (a container's base image) may not have it yet.
      if ! python3 -m pip --version >/dev/null 2>&1; then
        [ "$use_apt" = 1 ] || { say "FAILED: the NVIDIA wheels need pip: python3 -m pip is missing (install python3-pip)"; exit 1; }
        run_step "install pip for the NVIDIA wheels" "$HERE/apt_install_missing.sh" python3-pip
      fi
      # About 1 GB of wheels with cuDNN: pip's own progress goes to the step's log.
      run_step "pip install NVIDIA wheels: $wheels" python3 -m pip install --target "$NVWHEELS.tmp" $wheels
      touch "$NVWHEELS.tmp/.complete"
      mv "$NVWHEELS.tmp" "$NVWHEELS"
    fi
    # The wheels ship only versioned libraries: CMake and the linker look for the plain names.
    wheel_lib() { find "$NVWHEELS/nvidia" -name "$1.so.*" | sort | head -n1; }
    for name in libcublas libcublasLt libcurand libcudnn; do
      lib="$(wheel_lib "$name")"
      if [ -n "$lib" ]; then ln -sf "$(basename "$lib")" "$(dirname "$lib")/$name.so"; fi
    done
    if [ -z "$cublas" ]; then
      libdir="$(dirname "$(wheel_lib libcublas)")"
      incdir="$(dirname "$(find "$NVWHEELS/nvidia" -name 'cublas_v2.h' | head -n1)")"
      currand_lib="$(dirname "$(wheel_lib libcurand)")"
      currand_inc="$(dirname "$(find "$NVWHEELS/nvidia" -name 'curand.h' | head -n1)")"
      cxx_flags="-I$incdir -I$currand_inc"
      cmake_flags+=("-DCUDA_cublas_LIBRARY=$libdir/libcublas.so" "-DCUDA_curand_LIBRARY=$currand_lib/libcurand.so"
        "-DCMAKE_CXX_FLAGS=$cxx_flags" "-DCUDA_NVCC_FLAGS=$cxx_flags")
      rpath="$rpath;$libdir;$currand_lib"
    fi
    if [ "$cudnn" = 1 ] && [ -z "$cudnn_header" ]; then
      cudnn_header="$(find "$NVWHEELS/nvidia" -name cudnn.h | head -n1)"
    fi
  fi
  if [ "$cudnn" = 1 ]; then
    [ -n "$cudnn_header" ] || { say "FAILED: cuDNN asked for but no cudnn.h found (set CUDNN_ROOT, or pass --no-cudnn)"; exit 1; }
    cudnn_inc="$(dirname "$cudnn_header")"
    cudnn_lib="$(ls "${CUDNN_ROOT:-/nonexistent}"/lib*/libcudnn.so "$cudnn_inc"/../lib*/libcudnn.so \
      "$cuda_home"/lib64/libcudnn.so /usr/lib/x86_64-linux-gnu/libcudnn.so 2>/dev/null | head -n1 || true)"
    [ -n "$cudnn_lib" ] || { say "FAILED: found $cudnn_header but no libcudnn.so beside it (set CUDNN_ROOT)"; exit 1; }
    cmake_flags+=("-DCUDNN_INCLUDE=$cudnn_inc" "-DCUDNN_LIBRARY=$(readlink -f "$(dirname "$cudnn_lib")")/libcudnn.so")
    rpath="$rpath;$(readlink -f "$(dirname "$cudnn_lib")")"
  fi
  # FindCUDA forgets the library paths given above when it sees a "new" toolkit root, which on a
  # first configure is always: declaring the root as already seen keeps them.
  cmake_flags+=("-DCUDA_TOOLKIT_ROOT_DIR=$cuda_home" "-DCUDA_TOOLKIT_ROOT_DIR_INTERNAL=$cuda_home")
fi

# nvcc compiles the .cu files' host code with CMake's C compiler unless told otherwise, and each
# CUDA release accepts GCC only up to a version (CUDA 12.4: 13; Debian 13's default is 14): then the
# newest g++-N this nvcc accepts. Probed only when building (the cache key already names the
# system's compiler).
accepts_host_compiler() {
  local probe rc=0
  probe="$(mktemp -d)"
  echo '__global__ void probe() {}' >"$probe/probe.cu"
  "$NVCC" -ccbin "$1" -c "$probe/probe.cu" -o "$probe/probe.o" >"$probe/log" 2>&1 || rc=$?
  rm -rf "$probe"
  return $rc
}
if [ "$cuda" = 1 ] && ! accepts_host_compiler "$(command -v cc || echo cc)"; then
  host_compiler=""
  for candidate in g++-13 g++-12 g++-11 g++-10 g++-9; do
    if command -v "$candidate" >/dev/null && accepts_host_compiler "$(command -v "$candidate")"; then
      host_compiler="$(command -v "$candidate")"; break
    fi
  done
  [ -n "$host_compiler" ] || { say "FAILED: $NVCC accepts neither cc ($(cc --version 2>/dev/null | head -n 1)) nor any of g++-9 .. g++-13 as its host compiler"; exit 1; }
  say "nvcc $cuda_major does not accept $(cc --version | head -n 1): the CUDA files' host code is compiled with $host_compiler"
  cmake_flags+=("-DCUDA_HOST_COMPILER=$host_compiler")
fi

# 4. Configure, build, install.
BUILD="$WORK/build"
mkdir -p "$BUILD"
run_step "cmake configure" cmake -S "$SRC" -B "$BUILD" "${cmake_flags[@]}" \
  "-DCMAKE_INSTALL_PREFIX=$ROOT" "-DCMAKE_INSTALL_RPATH=$rpath"
# Caffe's CMake builds without cuDNN when it does not find it; our patch makes that an error, and
# the summary line is the proof of what was configured.
if [ "$cuda" = 1 ] && [ "$cudnn" = 1 ] && ! grep -q 'cuDNN *: *Yes (ver. [0-9]' "$step_log"; then
  say "FAILED: cuDNN was asked for but CMake did not configure it (see $step_log)"; exit 1
fi
if [ "$configure_only" = 1 ]; then
  say "configured in $BUILD (--configure-only: not building)"
  exit 0
fi
say "compiling with $jobs jobs (2-7 min for the CPU build, about 1.5 min more per CUDA architecture)"
run_step "make" make_with_progress "$BUILD"
rm -rf "$ROOT"
run_step "make install" make -C "$BUILD" install
# convert_imageset and friends are installed too; pycaffe lands in $ROOT/python.
[ -x "$ROOT/bin/caffe" ] || { say "FAILED: $ROOT/bin/caffe missing after install"; exit 1; }
# Caffe's own gtest sources (and their data), for `--tests` now or later (make caffe-check).
mkdir -p "$ROOT/test/src/src/caffe"
cp -r "$SRC/src/gtest" "$ROOT/test/src/src/"
cp -r "$SRC/src/caffe/test" "$ROOT/test/src/src/caffe/"
echo "$cxx_flags" >"$ROOT/test/cxx_flags"
cp -r "$LOGS" "$ROOT/build-logs"
build_system >"$ROOT/build-system.txt"     # what the key says it was built on, for people
touch "$ROOT/.complete"
rm -rf "$WORK"
say "Caffe built in $(((SECONDS - total_start) / 60)) min $(((SECONDS - total_start) % 60)) s"
build_tests
echo "$ROOT"

