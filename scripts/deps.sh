#!/usr/bin/env bash
# Installs the Debian packages stevedore's example and tests use (as root), if missing.
set -euo pipefail
packages=(nix-bin skopeo umoci busybox-static fakeroot proot tar gzip zstd xz-utils bzip2 xutils-dev python3 util-linux time jq jshon rsync containerd runc golang-go moreutils strace docker-registry apache2-utils openssl chromium)
tools=(nix-build skopeo umoci busybox fakeroot proot tar gzip zstd xz bzip2 lndir python3 setpriv /usr/bin/time jq jshon rsync containerd ctr runc go sponge strace docker-registry htpasswd openssl chromium)
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
  # docker-registry's package would start a registry on all interfaces (its default
  # config): no service may start while installing; tests start their own on 127.0.0.1.
  policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
  fi
  apt-get install -y -qq "${packages[@]}" >/dev/null
  [ -z "$policy" ] || rm -f "$policy"
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
fi

# moby's TarSum test data (upstream tarsum_test.go vectors), from Debian's package of
# moby's Go sources; only its files are used, nothing is installed.
# The same package's tarsum sources, built with Debian's Go into the reference TarSum
# tool the tests compare stevedore's with (a main of our own, as nixpkgs' tarsum.go is).
moby=target/moby-tarsum
if [ ! -x "$moby/tarsum" ]; then
  rm -rf "$moby" "$moby.tmp" && mkdir -p "$moby.tmp"
  (cd "$moby.tmp" && apt-get download -qq golang-github-docker-docker-dev >/dev/null)
  dpkg-deb -x "$moby.tmp"/*.deb "$moby.tmp/x"
  src=$moby.tmp/x/usr/share/gocode/src/github.com/docker/docker/pkg/tarsum
  mkdir -p "$moby" "$moby.tmp/go/src/github.com/docker/docker/pkg/tarsum" "$moby.tmp/go/src/tarsumtool"
  mv "$src/testdata" "$moby/testdata"
  cp "$src"/*.go "$moby.tmp/go/src/github.com/docker/docker/pkg/tarsum/"
  rm "$moby.tmp/go/src/github.com/docker/docker/pkg/tarsum/"*_test.go
  cp scripts/tarsum-main.go "$moby.tmp/go/src/tarsumtool/main.go"
  (cd "$moby.tmp/go/src/tarsumtool" && GOPATH=$PWD/../.. GO111MODULE=off GOCACHE=$PWD/../../cache go build -o "$OLDPWD/$moby/tarsum" .)
  rm -rf "$moby.tmp"
fi
