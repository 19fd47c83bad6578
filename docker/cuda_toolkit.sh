#!/bin/sh
# The image's CUDA toolkit (docker/Dockerfile's first step): the base image's own where it has nvcc
# (NVIDIA's nvidia/cuda:*-devel images), else CUDA 12 from Debian's non-free nvidia-cuda-toolkit.
# Debian's packages also bring the NVIDIA driver's user-space libraries (libcuda.so.1 and friends,
# of one driver release); a container must use the host's, which `docker run --gpus all` mounts, so
# they are deleted (the link-time stub stays). So are the toolkit's static libraries, which Caffe
# does not link (2.5 GB). Plus what the installer needs before it runs: make, CA certificates.
set -eu
have_nvcc() { command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; }
apt-get update -qq
if have_nvcc; then
  echo "[cuda_toolkit] the base image has nvcc: $(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
  apt-get install -y -qq --no-install-recommends ca-certificates make
else
  . /etc/os-release
  if [ "$ID" != debian ]; then
    echo "docker/cuda_toolkit.sh: $PRETTY_NAME has no nvcc and no Debian non-free CUDA: use a Debian base or a CUDA devel one (BASE=nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04)" >&2
    exit 1
  fi
  # Debian's own mirror, with contrib and non-free (one-line sources.list of a debootstrap root, or
  # the deb822 file of Docker Hub's debian images).
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed -i 's/^Components: main$/Components: main contrib non-free/' /etc/apt/sources.list.d/debian.sources
  else
    mirror="$(sed -n 's/^deb \(http[^ ]*\) .*/\1/p' /etc/apt/sources.list | head -n 1)"
    echo "deb ${mirror:-http://deb.debian.org/debian} $VERSION_CODENAME contrib non-free" >/etc/apt/sources.list.d/cuda-non-free.list
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends ca-certificates make nvidia-cuda-toolkit
  lib=/usr/lib/x86_64-linux-gnu
  rm -f "$lib"/nvidia/current/libcuda.so* "$lib"/nvidia/current/libnvidia-ml.so* "$lib"/nvidia/current/libnvidia-ptxjitcompiler.so* \
    "$lib"/libcuda.so "$lib"/libcuda.so.1 "$lib"/libnvidia-ml.so "$lib"/libnvidia-ml.so.1 "$lib"/libnvidia-ptxjitcompiler.so.1
  find "$lib" -maxdepth 1 \( -name 'libcu*_static*.a' -o -name 'libnpp*_static.a' -o -name 'libnv*_static.a' \) ! -name libcudart_static.a -delete
  ldconfig
  echo "[cuda_toolkit] $(nvcc --version | tail -n 2 | head -n 1), from Debian's nvidia-cuda-toolkit"
fi
# The bundle of CA certificates with any the build mounted in /usr/local/share/ca-certificates
# (make docker-check mounts the host's: a TLS-inspecting proxy's), for pip's downloads after this.
update-ca-certificates >/dev/null
rm -rf /var/lib/apt/lists/*
