# Builder of buildImage's layer with runAsRoot (nixpkgs' mkRootLayer, without a VM):
# the base image is unpacked and copyToRoot copied in, the script runs as "root" in
# the tree (fakeroot for owners, proot for the root directory, the store and the
# build directory visible), and what it changed (new and changed entries, whiteouts
# for deletions) becomes the layer, with the owners the script set.
set -eu
attrs=$NIX_BUILD_TOP/.attrs.sh
[ -e "$attrs" ] || attrs=$NIX_ATTRS_SH_FILE
source "$attrs"
out=${outputs[out]}
export out attrs
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}
cd "$NIX_BUILD_TOP"
state=$NIX_BUILD_TOP/fakeroot-state
touch "$state"
# Everything that sets or reads owners shares one fakeroot session; chown is only
# recorded (a sandbox maps no other ids, so a real chown would fail).
export FAKEROOTDONTTRYCHOWN=1
fr() { fakeroot -i "$state" -s "$state" "$@"; }

mkdir rootfs
if [ -n "${fromImage:-}" ]; then
  # As nixpkgs' runWithOverlay: the first image's layers, whatever fromImageName and
  # fromImageTag say (they only pick a parent id there, which nothing uses).
  fr stevedore unpack-image "$fromImage" rootfs
fi
fr stevedore snapshot rootfs -o before.json
dirlinks=()
[ -z "${keepContentsDirlinks:-}" ] || dirlinks=(--keep-dirlinks)
fr stevedore copy-to-root rootfs ${copyToRoot[@]+"${copyToRoot[@]}"} ${dirlinks[@]+"${dirlinks[@]}"}

# As nixpkgs' shellScript (coreutils, then the image's /bin), then shellTools.
printf '%s\n' "set -e" "export PATH=$coreutilsBin:/bin${shellPath:+:$shellPath}" "$runAsRoot" > run-as-root.sh
binds=()
for p in /dev /proc /sys "$storeDir" "$NIX_BUILD_TOP" ${hostPaths[@]+"${hostPaths[@]}"}; do
  if [ -e "$p" ]; then binds+=("--bind=$p:$p"); fi
done
fr proot -r "$PWD/rootfs" "${binds[@]}" -w / bash "$NIX_BUILD_TOP/run-as-root.sh"

fr stevedore changes rootfs --snapshot before.json -o layer
if [ -n "${includeNixDB:-}" ]; then
  attrsJson=$NIX_BUILD_TOP/.attrs.json
  [ -e "$attrsJson" ] || attrsJson=$NIX_ATTRS_JSON_FILE
  fr stevedore nix-db layer --graph "$attrsJson" --graph-key dbGraph --store-dir "$storeDir" \
    ${copyToRoot[@]+"${copyToRoot[@]/#/--gcroot=}"}
fi
fr bash -c 'set -e; source "$attrs"; cd layer; PATH=$PATH${shellPath:+:$shellPath}; eval "$extraCommands"'
fr stevedore image-layer layer -o "$out" --base-json "$baseJson" --keep-owners

# NixOS/nix#2176: let the builder exit before the log closes (see holdLog in default.nix).
(exec sleep 0.05) &
