#!/usr/bin/env bash
# `make fresh-os-check OS=debian12|debian13`: the README's two commands on a truly fresh machine.
#
# A minimal Debian of that release (debootstrap --variant=minbase, then only git, make and
# ca-certificates) is made once and cached under $PYCAFFE_FER_FRESH_OS_CACHE (default
# ~/.cache/pycaffe_fer-fresh-os), so a second run starts in seconds. Each run copies it, mounts
# proc, sys (with the cgroup mounts under it), dev, dev/pts and a new dev/shm in a private mount
# namespace (so nothing stays mounted when it ends), carries over only the host's CA certificates
# and proxy settings, clones this checkout's HEAD into it and runs `make test` and `make demo`
# there as root, with a clean environment and an empty build cache. It prints each step's time and
# the pytest summary; the logs and the root stay in the cache until the next run of that release.
# Needs root (debootstrap, chroot, mount); installs debootstrap when it is missing.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
os="${1:-debian13}"
case "$os" in
  debian12) release=bookworm ;;
  debian13) release=trixie ;;
  *) echo "fresh_os_check.sh: OS must be debian12 or debian13, not '$os'" >&2; exit 2 ;;
esac
MIRROR="${PYCAFFE_FER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${PYCAFFE_FER_FRESH_OS_CACHE:-$HOME/.cache/pycaffe_fer-fresh-os}"
BASE="$CACHE/$release-minbase"     # the pristine root, never run in
ROOT="$CACHE/$release-run"         # this run's copy
LOGS="$CACHE/$release-logs"
say() { printf '[fresh-os-check %s] %s\n' "$os" "$*"; }
[ "$(id -u)" = 0 ] || { echo "fresh_os_check.sh: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
command -v debootstrap >/dev/null || "$REPO/tools/apt_install_missing.sh" debootstrap

total_start=$SECONDS
step_start=$SECONDS
step() { step_start=$SECONDS; say "$*"; }
done_step() { say "  done in $(minutes $((SECONDS - step_start)))"; }
minutes() { printf '%d min %02d s' $(($1 / 60)) $(($1 % 60)); }

# 1. The minimal system, made once. debootstrap's own log is kept beside it. One run per release
#    at a time: a second waits.
mkdir -p "$CACHE"
exec 9>"$CACHE/$release.lock"
flock 9
if [ ! -f "$BASE/.complete" ]; then
  step "debootstrap --variant=minbase $release from $MIRROR into $BASE (once; a few minutes)"
  rm -rf "$BASE" "$BASE.tmp"
  debootstrap --variant=minbase --include=git,make,ca-certificates "$release" "$BASE.tmp" "$MIRROR" \
    >"$CACHE/$release-debootstrap.log" 2>&1 ||
    { tail -n 30 "$CACHE/$release-debootstrap.log" >&2; say "FAILED: debootstrap (log: $CACHE/$release-debootstrap.log)"; exit 1; }
  rm -rf "$BASE.tmp"/var/cache/apt/archives/*.deb
  touch "$BASE.tmp/.complete"
  mv "$BASE.tmp" "$BASE"
  done_step
fi

# 2. A fresh copy; what a booted machine has that a chroot lacks (name resolution, /etc/hosts).
step "copying the cached $release root to $ROOT"
rm -rf "$ROOT" "$LOGS"
mkdir -p "$LOGS"
cp -a "$BASE" "$ROOT"
rm "$ROOT/.complete"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
done_step

# 3. Only the host's CA certificates and proxy settings come along: a TLS-inspecting proxy's CA,
#    http(s)_proxy, apt's Acquire::*::Proxy. Nothing else (no PIP_* or PYTHON* variable, no pip.conf).
host_cas="$(ls /usr/local/share/ca-certificates/ 2>/dev/null | grep -c '\.crt$' || true)"
if [ "$host_cas" -gt 0 ]; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
fi
apt-config dump 2>/dev/null | grep -i '^Acquire::[a-z]*::Proxy' >"$ROOT/etc/apt/apt.conf.d/90host-proxy" || rm "$ROOT/etc/apt/apt.conf.d/90host-proxy"
clean_env=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb)
for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  if [ -n "${!name:-}" ]; then clean_env+=("$name=${!name}"); fi
done
say "carried over: $host_cas CA certificate(s) of /usr/local/share/ca-certificates, $(( ${#clean_env[@]} - 4 )) proxy variable(s), $( [ -f "$ROOT/etc/apt/apt.conf.d/90host-proxy" ] && echo "apt's proxy" || echo "no apt proxy")"

# 4. The checkout's HEAD (what CI clones: commit first), as a new user's clone.
step "cloning $REPO (HEAD $(git -C "$REPO" rev-parse --short HEAD)) into /root/pycaffe_fer"
git clone -q --no-hardlinks "$REPO" "$ROOT/root/pycaffe_fer"
done_step

# Run a command in the chroot, in a private mount namespace, with the clean environment; its
# output to the terminal and to $LOGS/NAME.log.
in_root() {
  local name="$1"; shift
  unshare --mount --propagation private -- /bin/sh -ec '
    root="$1"; shift
    mount --bind "$root" "$root"          # / a mount point, as in a container (unshare --mount needs it)
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount --bind /dev "$root/dev"
    mount --bind /dev/pts "$root/dev/pts"
    mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
    exec chroot "$root" "$@"' sh "$ROOT" /usr/bin/env -i "${clean_env[@]}" /bin/sh -c "$*" 2>&1 | tee "$LOGS/$name.log"
  return "${PIPESTATUS[0]}"
}

if [ "$host_cas" -gt 0 ]; then
  step "update-ca-certificates in the root"
  in_root update-ca-certificates "update-ca-certificates >/dev/null"
  done_step
fi

status=0
summary=""
step "make test (in /root/pycaffe_fer, cache /root/.cache empty; log: $LOGS/make-test.log)"
in_root make-test "cd /root/pycaffe_fer && make test" || status=1
test_time=$((SECONDS - step_start))
done_step
summary="$(grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped|deselected)' "$LOGS/make-test.log" | tail -n 1 || true)"
say "pytest: ${summary:-no summary line (see the log)}"

step "make demo (log: $LOGS/make-demo.log)"
in_root make-demo "cd /root/pycaffe_fer && make demo" || status=1
demo_time=$((SECONDS - step_start))
done_step

say "$release: make test $(minutes "$test_time") (${summary:-no summary}), make demo $(minutes "$demo_time"), all $(minutes $((SECONDS - total_start)))"
[ "$status" = 0 ] && say "PASSED" || say "FAILED (logs: $LOGS)"
exit "$status"
