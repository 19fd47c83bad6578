#!/usr/bin/env bash
# `make fresh-os-check OS=debian12|debian13|ubuntu22.04|ubuntu24.04`: the README's two commands on a
# truly fresh machine.
#
# A minimal system of that release (debootstrap --variant=minbase, then only git, make and
# ca-certificates; Ubuntu with its main and universe components and its -updates and -security
# pockets, as an installed Ubuntu has) is made once and cached under $PYCAFFE_FER_FRESH_OS_CACHE
# (default ~/.cache/pycaffe_fer-fresh-os), so a second run starts in seconds. Each run copies it, mounts
# proc, sys (with the cgroup mounts under it), dev, dev/pts and a new dev/shm in a private mount
# namespace (so nothing stays mounted when it ends), carries over only the host's CA certificates
# and proxy settings, clones this checkout's HEAD into it and runs `make test` and `make demo`
# there as root, with a clean environment and an empty build cache. It prints each step's time and
# the pytest summary; the logs and the root stay in the cache until the next run of that release.
# Needs root (debootstrap, chroot, mount); installs debootstrap when it is missing. Ubuntu's archive
# key comes from Ubuntu's own ubuntu-keyring package, checked against its pinned SHA-256; when
# Ubuntu's archive does not answer, the check says so in one line and exits 1.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
os="${1:-debian13}"
case "$os" in
  debian12) release=bookworm ;;
  debian13) release=trixie ;;
  ubuntu22.04) release=jammy ;;
  ubuntu24.04) release=noble ;;
  *) echo "fresh_os_check.sh: OS must be debian12, debian13, ubuntu22.04 or ubuntu24.04, not '$os'" >&2; exit 2 ;;
esac
CACHE="${PYCAFFE_FER_FRESH_OS_CACHE:-$HOME/.cache/pycaffe_fer-fresh-os}"
BASE="$CACHE/$release-minbase"     # the pristine root, never run in
ROOT="$CACHE/$release-run"         # this run's copy
LOGS="$CACHE/$release-logs"
debootstrap_args=(--variant=minbase --include=git,make,ca-certificates)
case "$os" in
  debian*) MIRROR="${PYCAFFE_FER_DEBIAN_MIRROR:-http://deb.debian.org/debian}" ;;
  ubuntu*) MIRROR="${PYCAFFE_FER_UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}"
    # Ubuntu's archive keys (ubuntu-keyring, which Debian does not carry), from noble's release pocket.
    UBUNTU_KEYRING_DEB="pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb"
    UBUNTU_KEYRING_SHA256="36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8"
    debootstrap_args+=(--components=main,universe "--keyring=$CACHE/ubuntu-archive-keyring.gpg") ;;
esac
say() { printf '[fresh-os-check %s] %s\n' "$os" "$*"; }
[ "$(id -u)" = 0 ] || { echo "fresh_os_check.sh: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
command -v debootstrap >/dev/null || "$REPO/tools/apt_install_missing.sh" debootstrap
case "$os" in ubuntu*) command -v curl >/dev/null || "$REPO/tools/apt_install_missing.sh" curl ;; esac

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
  case "$os" in ubuntu*)
    # Whether Ubuntu's archive answers at all (a network that reaches Debian's only, say), in one line.
    if ! curl -fsS --max-time 30 -o /dev/null "$MIRROR/dists/$release/Release" 2>"$CACHE/$release-archive.err"; then
      say "Ubuntu's archive does not answer ($MIRROR/dists/$release/Release: $(head -n 1 "$CACHE/$release-archive.err")): no $release root can be made here"
      exit 1
    fi
    if [ ! -f "$CACHE/ubuntu-archive-keyring.gpg" ]; then
      curl -fsS --max-time 60 -o "$CACHE/ubuntu-keyring.deb" "$MIRROR/$UBUNTU_KEYRING_DEB"
      echo "$UBUNTU_KEYRING_SHA256  $CACHE/ubuntu-keyring.deb" | sha256sum --check --quiet ||
        { say "FAILED: $MIRROR/$UBUNTU_KEYRING_DEB is not the ubuntu-keyring package this check pins"; exit 1; }
      dpkg-deb --fsys-tarfile "$CACHE/ubuntu-keyring.deb" | tar -xO ./usr/share/keyrings/ubuntu-archive-keyring.gpg >"$CACHE/ubuntu-archive-keyring.gpg"
      rm "$CACHE/ubuntu-keyring.deb"
    fi ;;
  esac
  # Debian 12's debootstrap predates noble: Ubuntu's releases share one script (gutsy's).
  script=()
  [ -e "/usr/share/debootstrap/scripts/$release" ] || script=(/usr/share/debootstrap/scripts/gutsy)
  step "debootstrap --variant=minbase $release from $MIRROR into $BASE (once; a few minutes)"
  rm -rf "$BASE" "$BASE.tmp"
  debootstrap "${debootstrap_args[@]}" "$release" "$BASE.tmp" "$MIRROR" "${script[@]}" \
    >"$CACHE/$release-debootstrap.log" 2>&1 ||
    { tail -n 30 "$CACHE/$release-debootstrap.log" >&2; say "FAILED: debootstrap (log: $CACHE/$release-debootstrap.log)"; exit 1; }
  rm -rf "$BASE.tmp"/var/cache/apt/archives/*.deb
  case "$os" in ubuntu*)
    printf 'deb %s %s main universe\n' "$MIRROR" "$release" "$MIRROR" "$release-updates" "$MIRROR" "$release-security" \
      >"$BASE.tmp/etc/apt/sources.list" ;;
  esac
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
