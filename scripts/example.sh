#!/usr/bin/env bash
# Builds stevedore and the example image of examples/hello.nix the way a user does:
# `nix-build` of an expression calling dockerTools.buildLayeredImage. Then checks the
# image with skopeo, runs it (umoci unpack, chroot) and prints where it is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --quiet
work=${STEVEDORE_EXAMPLE_DIR:-$PWD/example-output}
rm -rf "$work" && mkdir -p "$work"

image=$(nix-build examples/hello.nix -A image --no-out-link \
  --arg stevedoreBin "\"$PWD/target/release/stevedore\"" \
  --option substituters "" --option sandbox true --option extra-sandbox-paths "/usr /lib /lib64 /bin")

# skopeo 1.9 reads uncompressed docker archives only.
gzip -dc "$image" > "$work/image.tar"
layers=$(skopeo inspect --format "{{len .Layers}}" "docker-archive:$work/image.tar")
skopeo --insecure-policy copy --quiet "docker-archive:$work/image.tar" "oci:$work/oci:latest"
umoci unpack --image "$work/oci:latest" "$work/bundle" >/dev/null
echo "--- running /bin/hello in the image:"
chroot "$work/bundle/rootfs" /bin/hello
echo "--- image: $image ($(du -h "$image" | cut -f1), $layers layers)"
echo "load it with:  docker load < $image"
echo "or push it:    skopeo copy docker-archive:$work/image.tar docker://REGISTRY/hello-stevedore:latest"
