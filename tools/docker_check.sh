#!/usr/bin/env bash
# `make docker-check`: build docker/Dockerfile as a user with Docker would, and test the image.
#
# With podman (installed with buildah and runc when missing; Docker's engine is not needed), as
# root: the base image (BASE, default debian:trixie) is pulled where a registry answers, else made
# with debootstrap and imported (cached under $PYCAFFE_FER_DOCKER_CACHE, default
# ~/.cache/pycaffe_fer-docker); the image is built with its layers cached (a second run rebuilds
# only what changed: Caffe's layer only when the installer or the patches change); then, in
# containers of the image without a GPU:
#   - `docker run IMAGE` prints Caffe's version;
#   - `caffe device_query -gpu 0` ends with the one line that says there is no usable GPU;
#   - `make test`, the whole suite on the CUDA + cuDNN build in CPU mode;
#   - `tools/run_experiment.py --gpu 0` ends with its one-line error, status 2, before writing anything.
# It prints each part's time and the image's size, and removes its containers (the build's too),
# whatever happened, and the images of earlier builds that the new one untagged. From nothing:
# `podman rmi -a -f` and an empty $PYCAFFE_FER_DOCKER_CACHE.
# The runtime is runc, and the containers get explicit rlimits: crun fails where cgroups are in
# hybrid mode, and podman's default rlimits fail without CAP_SYS_RESOURCE (as in this sandbox).
# The suite's container gets CAP_SYS_ADMIN, for the tests that make mount namespaces.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${PYCAFFE_FER_IMAGE:-localhost/pycaffe_fer:cuda}"
BASE="${BASE:-debian:trixie}"
CACHE="${PYCAFFE_FER_DOCKER_CACHE:-$HOME/.cache/pycaffe_fer-docker}"
MIRROR="${PYCAFFE_FER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
say() { printf '[docker-check] %s\n' "$*"; }
minutes() { printf '%d min %02d s' $(($1 / 60)) $(($1 % 60)); }
[ "$(id -u)" = 0 ] || { echo "docker_check.sh: needs root (podman's storage, debootstrap)" >&2; exit 1; }
for tool in podman buildah runc debootstrap; do
  command -v "$tool" >/dev/null || { "$REPO/tools/apt_install_missing.sh" podman buildah runc debootstrap; break; }
done

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9    # one check at a time: the containers' names and the base's root are this run's
# runc, and rlimits no higher than this process's own hard limits (which cannot be raised here).
nofile="$(ulimit -Hn)"; nproc="$(ulimit -Hu)"
[ "$nofile" != unlimited ] || nofile=1048576
[ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
cat >"$CACHE/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$CACHE/containers.conf"

containers=()
cleanup() {
  local name
  for name in "${containers[@]}"; do podman rm -f "$name" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
# Run one container of the image, named so it can be removed whatever happens; output to the terminal.
in_image() {   # name podman-run-options... -- command...
  local name="pycaffe_fer-check-$1-$$"; shift
  local options=()
  while [ "$1" != -- ]; do options+=("$1"); shift; done
  shift
  containers+=("$name")
  podman run --rm --name "$name" "${options[@]}" "$IMAGE" "$@"
}

total_start=$SECONDS
times=()
part_start=$SECONDS
part() { part_start=$SECONDS; say "$*"; }
part_done() { times+=("$1 $(minutes $((SECONDS - part_start)))"); say "  $1: $(minutes $((SECONDS - part_start)))"; }

# 1. The base image: from a registry where one answers, else debootstrap (Debian bases only).
part "base image $BASE"
if podman image exists "$BASE"; then
  say "  $BASE is in podman's storage"
elif timeout 120 podman pull -q "$BASE" >"$CACHE/pull.log" 2>&1; then
  say "  pulled $BASE"
else
  say "  no registry answers for $BASE ($(tail -n 1 "$CACHE/pull.log" | cut -c1-160)): making it with debootstrap"
  case "$BASE" in
    debian:*) release="${BASE#debian:}" ;;
    *) say "FAILED: $BASE cannot be pulled, and only a debian:RELEASE base can be made here"; exit 1 ;;
  esac
  root="$CACHE/$release-root"
  rm -rf "$root"
  debootstrap --variant=minbase "$release" "$root" "$MIRROR" >"$CACHE/$release-debootstrap.log" 2>&1 ||
    { tail -n 20 "$CACHE/$release-debootstrap.log"; say "FAILED: debootstrap $release (log: $CACHE/$release-debootstrap.log)"; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "localhost/debian:$release" >/dev/null
  # The name a FROM line looks up, so the Dockerfile builds unchanged.
  podman tag "localhost/debian:$release" "docker.io/library/debian:$release"
  rm -rf "$root"
fi
part_done "base image"

# 2. The image, with its layers cached.
part "podman build -f docker/Dockerfile -t $IMAGE (BASE=$BASE; log: $CACHE/build.log)"
# The host's own CA certificates (a TLS-inspecting proxy's, as fresh-os-check carries them over),
# seen by the build's steps: the image's certificate bundle then trusts them too. Proxy variables
# pass through to the build by podman's default.
ca_volume=()
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  ca_volume=(--volume /usr/local/share/ca-certificates:/usr/local/share/ca-certificates:ro)
  say "  with the host's CA certificates of /usr/local/share/ca-certificates"
fi
if ! podman build --layers --force-rm "${ca_volume[@]}" --build-arg "BASE=$BASE" -f "$REPO/docker/Dockerfile" -t "$IMAGE" "$REPO" 2>&1 |
    tee "$CACHE/build.log" | grep --line-buffered -E '^STEP |^\[install_caffe\]|^\[setup\]|^\[cuda_toolkit\]|^--> Using cache'; then
  tail -n 30 "$CACHE/build.log"
  say "FAILED: podman build (log: $CACHE/build.log)"; exit 1
fi
part_done "image build"
# The previous build's image and its own layers, now untagged: stale (the cached layers stay).
podman image prune -f >/dev/null 2>&1 || true
size_mb=$(( $(podman image inspect --format '{{.Size}}' "$IMAGE") / 1000000 ))
say "  image $IMAGE: $size_mb MB"

status=0
# 3. What `docker run IMAGE` prints, and a GPU asked for where there is none.
part "docker run IMAGE (Caffe's version), caffe device_query -gpu 0 without a GPU"
version="$(in_image version -- 2>&1)" || { say "FAILED: the image's default command: $version"; status=1; }
say "  $version"
[[ "$version" == "caffe version 1.0.0"* ]] || { say "FAILED: the image's default command did not print 'caffe version 1.0.0'"; status=1; }
rc=0; query="$(in_image device-query -- .venv/bin/caffe device_query -gpu 0 2>&1)" || rc=$?
if [ "$rc" = 1 ] && [ "$(printf '%s\n' "$query" | tail -n 1)" = "$(printf '%s\n' "$query" | grep '^caffe: -gpu 0: no usable NVIDIA GPU')" ]; then
  say "  device_query: $(printf '%s\n' "$query" | tail -n 1) (exit 1)"
else
  say "FAILED: caffe device_query -gpu 0 without a GPU should end with one 'caffe: -gpu 0: no usable NVIDIA GPU' line and exit 1 (exit $rc):"
  printf '%s\n' "$query" | tail -n 5; status=1
fi
part_done "version and device_query"

# 4. The test suite in the image (CPU mode: no GPU here).
part "make test in the image (log: $CACHE/make-test.log)"
in_image test --cap-add SYS_ADMIN -- make test 2>&1 | tee "$CACHE/make-test.log" || status=1
summary="$(grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped)' "$CACHE/make-test.log" | tail -n 1 || true)"
part_done "make test"
say "  pytest: ${summary:-no summary line (see the log)}"

# 5. An experiment asked to run on a GPU that is not there: one line, status 2, nothing written.
part "tools/run_experiment.py --gpu 0 without a GPU"
rc=0
run="$(in_image gpu-run -- sh -c '.venv/bin/python tools/run_experiment.py --config configs/demo.yaml --out /tmp/run --gpu 0; rc=$?; ls /tmp/run 2>/dev/null | head -n 3; exit $rc' 2>&1)" || rc=$?
if [ "$rc" = 2 ] && [ "$(printf '%s\n' "$run" | wc -l)" = 1 ] && [[ "$run" == "error: --gpu 0: "* ]]; then
  say "  $run (exit 2)"
else
  say "FAILED: run_experiment.py --gpu 0 should print one 'error: --gpu 0: ...' line, write nothing and exit 2 (exit $rc):"
  printf '%s\n' "$run" | tail -n 5; status=1
fi
part_done "run_experiment --gpu 0"

say "image $IMAGE: $size_mb MB; $(IFS=';'; echo "${times[*]}" | sed 's/;/; /g'); all $(minutes $((SECONDS - total_start)))"
[ "$status" = 0 ] && say "PASSED" || say "FAILED (logs: $CACHE)"
exit "$status"
