#!/usr/bin/env bash
# Install those of the named Debian packages that are not installed yet (with sudo when not root).
# When all are there it does nothing, so setup stays fast and needs no network on a second run.
set -euo pipefail
missing=""
for package in "$@"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $package"
done
[ -n "$missing" ] || exit 0
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
echo "[apt] installing Debian packages:$missing" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
