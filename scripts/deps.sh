#!/usr/bin/env bash
# Installs the Debian packages stevedore's example and tests use (as root), if missing.
set -euo pipefail
packages=(nix-bin skopeo umoci busybox-static fakeroot proot tar gzip zstd xutils-dev python3 util-linux time)
tools=(nix-build skopeo umoci busybox fakeroot proot tar gzip zstd lndir python3 setpriv /usr/bin/time)
missing=0
for t in "${tools[@]}"; do command -v "$t" >/dev/null 2>&1 || missing=1; done
[ -x /bin/busybox ] || missing=1
if [ "$missing" = 1 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing tools; run as root or: apt-get install ${packages[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${packages[@]}" >/dev/null
fi
