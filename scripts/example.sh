#!/usr/bin/env bash
# Builds stevedore and an example layered image end to end: Nix builds the contents and
# their closure graph, stevedore plans the layers, writes the customisation layer and
# the docker archive, then the image is checked with skopeo and run from an umoci
# unpack with chroot.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --quiet
bin=$PWD/target/release/stevedore
work=${STEVEDORE_EXAMPLE_DIR:-$PWD/example-output}
rm -rf "$work" && mkdir -p "$work/root/bin"

hello=$(nix-build examples/hello.nix -A hello --no-out-link --option substituters "" --option sandbox true --option extra-sandbox-paths "/usr /lib /lib64 /bin")
graph=$(nix-build examples/hello.nix -A graph --no-out-link --option substituters "" --option sandbox true --option extra-sandbox-paths "/usr /lib /lib64 /bin")
ln -s "$hello/bin/hello" "$work/root/bin/hello"
"$bin" customisation-layer "$work/root" -o "$work/customisation"
"$bin" plan "$graph" --limit 99 > "$work/layers.json"

cat > "$work/conf.json" <<JSON
{"architecture": "amd64", "os": "linux", "store_dir": "/nix/store", "from_image": null,
 "config": {"Cmd": ["/bin/hello"]},
 "store_layers": $(cat "$work/layers.json"),
 "customisation_layer": "$work/customisation", "repo_tag": "hello-stevedore:latest",
 "created": "1970-01-01T00:00:01Z", "mtime": "1970-01-01T00:00:01Z",
 "uid": 0, "gid": 0, "uname": "root", "gname": "root"}
JSON
"$bin" build-layered "$work/conf.json" -o "$work/image.tar"
skopeo inspect "docker-archive:$work/image.tar" > "$work/inspect.json"

skopeo --insecure-policy copy --quiet "docker-archive:$work/image.tar" "oci:$work/oci:latest"
umoci unpack --image "$work/oci:latest" "$work/bundle" >/dev/null
echo "--- running /bin/hello in the unpacked image:"
chroot "$work/bundle/rootfs" /bin/hello
echo "--- image: $work/image.tar ($(du -h "$work/image.tar" | cut -f1), $(skopeo inspect --format "{{len .Layers}}" "docker-archive:$work/image.tar") layers)"
echo "load it with:  docker load < $work/image.tar"
echo "or:            skopeo copy docker-archive:$work/image.tar docker://REGISTRY/hello-stevedore:latest"
