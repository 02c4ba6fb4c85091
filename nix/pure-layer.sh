# Builder of buildImage's layer (nixpkgs' mkPureLayer): copyToRoot copied as rsync -a
# would, the root made writable, the Nix database (includeNixDB) and extraCommands, then
# the layer archived with its TarSum into $out/{layer.tar,json,VERSION}.
set -eu
attrs=$NIX_BUILD_TOP/.attrs.sh
[ -e "$attrs" ] || attrs=$NIX_ATTRS_SH_FILE
source "$attrs"
out=${outputs[out]}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}
cd "$NIX_BUILD_TOP"
mkdir layer
dirlinks=()
[ -z "${keepContentsDirlinks:-}" ] || dirlinks=(--keep-dirlinks)
stevedore copy-to-root layer ${copyToRoot[@]+"${copyToRoot[@]}"} ${dirlinks[@]+"${dirlinks[@]}"}
chmod ug+w layer
if [ -n "${includeNixDB:-}" ]; then
  attrsJson=$NIX_BUILD_TOP/.attrs.json
  [ -e "$attrsJson" ] || attrsJson=$NIX_ATTRS_JSON_FILE
  stevedore nix-db layer --graph "$attrsJson" --graph-key dbGraph --store-dir "$storeDir" \
    ${copyToRoot[@]+"${copyToRoot[@]/#/--gcroot=}"}
fi
# The user's snippet sees the builder's tools, then shellTools' (stdenv's in nixpkgs).
(cd layer && PATH=$PATH${shellPath:+:$shellPath} && eval "$extraCommands")
stevedore image-layer layer -o "$out" --base-json "$baseJson" --uid "$uid" --gid "$gid"

# NixOS/nix#2176: let the builder exit before the log closes (see holdLog in default.nix).
(exec sleep 0.05) &
