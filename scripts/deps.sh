#!/usr/bin/env bash
# Installs the Debian packages stevedore's example and tests use (as root), if missing.
set -euo pipefail
packages=(nix-bin skopeo umoci busybox-static fakeroot proot tar gzip zstd xutils-dev python3 util-linux time jq jshon rsync containerd runc)
tools=(nix-build skopeo umoci busybox fakeroot proot tar gzip zstd lndir python3 setpriv /usr/bin/time jq jshon rsync containerd ctr runc)
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

# moby's TarSum test data (upstream tarsum_test.go vectors), from Debian's package of
# moby's Go sources; only its files are used, nothing is installed.
moby=target/moby-tarsum
if [ ! -d "$moby/testdata" ]; then
  rm -rf "$moby.tmp" && mkdir -p "$moby.tmp"
  (cd "$moby.tmp" && apt-get download -qq golang-github-docker-docker-dev >/dev/null)
  dpkg-deb -x "$moby.tmp"/*.deb "$moby.tmp/x"
  mkdir -p "$moby"
  mv "$moby.tmp/x/usr/share/gocode/src/github.com/docker/docker/pkg/tarsum/testdata" "$moby/testdata"
  rm -rf "$moby.tmp"
fi
