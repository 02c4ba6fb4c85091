# Builder of a layered image's customisation layer, as nixpkgs' symlinkJoin + postBuild:
# join the contents, run extraCommands as the build user, then fakeRootCommands under
# fakeroot (inside proot when enableFakechroot), and archive the tree the way nixpkgs'
# GNU tar call does, into $out/layer.tar and $out/checksum.
set -eu
# Nix 2.8 sets NIX_ATTRS_SH_FILE to the host-side path even inside the sandbox, so the
# file in the build directory comes first.
attrs=$NIX_BUILD_TOP/.attrs.sh
[ -e "$attrs" ] || attrs=$NIX_ATTRS_SH_FILE
export attrs
source "$attrs"
export out=${outputs[out]}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}
# fakeroot records chown without trying the real one (a sandbox maps no other ids).
export FAKEROOTDONTTRYCHOWN=1
cd "$NIX_BUILD_TOP"
stevedore symlink-join old_out ${contents[@]+"${contents[@]}"}
if [ -n "${includeNixDB:-}" ]; then
  attrsJson=$NIX_BUILD_TOP/.attrs.json
  [ -e "$attrsJson" ] || attrsJson=$NIX_ATTRS_JSON_FILE
  stevedore nix-db old_out --graph "$attrsJson" --graph-key dbGraph --store-dir "$storeDir" \
    ${contents[@]+"${contents[@]/#/--gcroot=}"}
fi
# The user's snippets see the builder's tools, then shellTools' (stdenv's in nixpkgs).
(cd old_out && PATH=$PATH${shellPath:+:$shellPath} && eval "$extraCommands")
mkdir -p "$out"

# The part run as fake root: source the attributes again, then run the commands.
inner='set -e
source "$attrs"
export out=${outputs[out]}
cd "$layerRoot"
snippet() { local PATH=$PATH${shellPath:+:$shellPath}; eval "$1"; }
snippet "$fakeRootCommands"'

if [ -n "${enableFakechroot:-}" ]; then
  # Absolute paths in fakeRootCommands resolve inside the image root. fakeroot saves the
  # owners it faked, and stevedore archives the tree outside proot with them.
  binds=()
  for p in /dev /proc /sys "$storeDir" "$NIX_BUILD_TOP" "$out" ${hostPaths[@]+"${hostPaths[@]}"}; do
    if [ -e "$p" ]; then binds+=("--bind=$p:$p"); fi
  done
  export layerRoot=/
  proot -r "$PWD/old_out" "${binds[@]}" -w / fakeroot -s "$NIX_BUILD_TOP/fakeroot-state" bash -c "$inner"
  touch "$NIX_BUILD_TOP/fakeroot-state"
  stevedore customisation-layer old_out -o "$out" --fakeroot-state "$NIX_BUILD_TOP/fakeroot-state"
elif [ -n "${useFakeroot:-}" ] && [ -n "$fakeRootCommands" ]; then
  export layerRoot=$PWD/old_out
  fakeroot bash -c "$inner
stevedore customisation-layer . -o \"\$out\""
else
  # Without commands, fakeroot would only report every file as root's.
  export layerRoot=$PWD/old_out
  bash -c "$inner"
  stevedore customisation-layer old_out -o "$out" --owner 0 --group 0
fi

# NixOS/nix#2176: let the builder exit before the log closes (see holdLog in default.nix).
(exec sleep 0.05) &
