# Images named by the packages they hold, Nixery's way, with builtins only: the
# packages are looked up in a package set (see nixery-source.nix), laid out by Nixery's
# dominator-tree algorithm (`stevedore plan --algorithm nixery`), and every layer is
# built by its own derivation, so Nix caches layers, substitutes them from binary
# caches and builds them on remote builders; an image sharing packages with one built
# before only builds its new layers.
#
# The result is the manifest output of Nixery's build-image.nix, a JSON file:
#   { manifest = Docker schema 2 manifest;
#     layerLocations."<sha256>" = { sha256; md5 (base64); size; path }; }
# (layerLocations also holds the config), or, when some names do not resolve to a
# package, { error = "not_found"; pkgs = [ every such name ]; }.
# The derivations behind it are attributes of the result: `plan` (read back with
# import-from-derivation), `layers` (store layers, then the customisation layer),
# `configFile`.
#
# `stevedore serve` builds images through this file; it can also be used directly:
#   nix-build nix/nixery.nix --argstr pkgSource path!/abs/dir \
#     --arg packages '[ "hello" "xorg.xev" ]' --arg stevedoreBin ./target/release/stevedore
{
  # Attribute paths, "xorg.xev" style. A top-level name also matches case-insensitively
  # (registry names are lower case: "haskellpackages.x" finds haskellPackages.x).
  packages,
  # nixpkgs!CHANNEL, git!URL[!REV] or path!DIR (nixery-source.nix); or `pkgs`.
  pkgSource ? null,
  pkgs ? null,
  # Layers in the image, the customisation layer included: Nixery's budget of 94
  # store-path layers plus its symlink layer.
  maxLayers ? 95,
  # Popularity data (Nixery's popcount format: name without hash → count), or null.
  popularity ? null,
  # The image tag: picks the revision of a git!URL source given without one.
  tag ? "latest",
  # amd64 or arm64 (the package set is imported for x86_64-linux or aarch64-linux).
  arch ? "amd64",
  # Layer blobs: gzip (as Nixery), zstd or none; with an optional :LEVEL.
  compressor ? "gzip",
  # The helper: a package with bin/stevedore, or the path of a stevedore binary; by
  # default the package set's `stevedore`, else built from nix/package.nix.
  stevedore ? null,
  stevedoreBin ? null,
  # Where the helper's steps run.
  system ? builtins.currentSystem,
  storeDir ? builtins.storeDir,
}:
let
  inherit (builtins)
    appendContext
    attrNames
    elem
    filter
    fromJSON
    head
    isAttrs
    isPath
    isString
    length
    listToAttrs
    match
    readFile
    replaceStrings
    split
    substring
    tail
    toJSON
    tryEval
    unsafeDiscardStringContext
    ;

  targetSystem =
    {
      amd64 = "x86_64-linux";
      arm64 = "aarch64-linux";
    }
    .${arch} or (throw "stevedore: arch ${arch}: expected amd64 or arm64");

  packageSet =
    if pkgs != null then
      pkgs
    else if pkgSource != null then
      import ./nixery-source.nix {
        inherit pkgSource tag;
        args.system = targetSystem;
      }
    else
      throw "stevedore: nixery.nix needs pkgSource or pkgs";

  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  toLower = replaceStrings upper lower;

  # Nixery's deepFetch: follow the dotted path; failing that, with the first name's
  # case amended through the top-level names that have upper-case letters.
  lowered = listToAttrs (
    map (k: {
      name = toLower k;
      value = k;
    }) (filter (k: match ".*[A-Z].*" k != null) (attrNames packageSet))
  );
  walk =
    set: path:
    if path == [ ] then
      set
    else if isAttrs set && set ? ${head path} then
      walk set.${head path} (tail path)
    else
      null;
  isPackage = v: isPath v || isAttrs v && (v.type or null) == "derivation";
  # The package a name resolves to, or null (missing, not a package, or failing to
  # evaluate, as removed nixpkgs aliases do).
  fetch =
    name:
    let
      path = filter isString (split "\\." name);
      direct = walk packageSet path;
      amended = walk packageSet ([ (lowered.${head path} or (head path)) ] ++ tail path);
      found = if direct != null then direct else amended;
      checked = tryEval (if isPackage found then found else null);
    in
    if checked.success then checked.value else null;
  resolved = map (name: {
    inherit name;
    value = fetch name;
  }) packages;
  missing = map (r: r.name) (filter (r: r.value == null) resolved);
  contents = map (r: r.value) resolved;

  helperPackage =
    if stevedore != null then
      stevedore
    else if stevedoreBin != null then
      derivation {
        name = "stevedore";
        inherit system;
        builder = builtins.path {
          path = stevedoreBin;
          name = "stevedore-bin";
        };
        args = [ "nix-nixery" ];
        __structuredAttrs = true;
        step = "install";
        preferLocalBuild = true;
      }
    else
      packageSet.stevedore or (packageSet.callPackage ./package.nix { });
  helper = "${helperPackage}/bin/stevedore";

  # A derivation whose builder is the helper, running `step` with `attrs`.
  step =
    name: step: attrs:
    derivation (
      {
        inherit name system step;
        builder = helper;
        args = [ "nix-nixery" ];
        __structuredAttrs = true;
      }
      // attrs
    );

  # A layer derivation (src/derivation/layer.rs): store paths or the customisation layer.
  layerStep =
    name: attrs:
    derivation (
      {
        inherit name system;
        builder = helper;
        args = [ "nix-layer" ];
        __structuredAttrs = true;
      }
      // attrs
    );

  plan = step "nixery-plan.json" "plan" {
    exportReferencesGraph.graph = contents;
    inherit maxLayers storeDir;
    popularity = if popularity == null then null else "${popularity}";
    preferLocalBuild = true;
  };
  # The groups, read back (import-from-derivation), highest merge rating first. Each
  # path gets back exactly its own context, so a layer's derivation depends on its own
  # paths only and is shared by every image with the same group.
  groups = fromJSON (unsafeDiscardStringContext (readFile plan));
  withContext = p: appendContext p { ${p}.path = true; };
  # Named after the group's root package (the plan says which), at most 40 characters.
  storeLayer =
    group:
    layerStep "nixery-layer-${substring 0 40 group.name}" {
      paths = map withContext group.contents;
      inherit compressor;
    };
  customisationLayer = layerStep "nixery-customisation-layer" {
    inherit contents compressor;
  };
  layers = map storeLayer groups ++ [ customisationLayer ];

  imageConfig =
    {
      Env = [ "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt" ];
    }
    // (if elem "bashInteractive" packages then { Cmd = [ "bash" ]; } else { });
  configFile = step "nixery-config.json" "config" {
    inherit layers arch;
    config = imageConfig;
    preferLocalBuild = true;
  };
  manifestOutput = step "manifest-output.json" "manifest" {
    inherit layers configFile;
    preferLocalBuild = true;
  };
  errorOutput = step "manifest-output.json" "write" {
    text = toJSON {
      error = "not_found";
      pkgs = missing;
    };
    preferLocalBuild = true;
  };
in
assert length packages > 0 || throw "stevedore: nixery.nix needs at least one package";
# Evaluated here, outside the lookups' tryEval, so a bad source is reported as itself.
assert isAttrs packageSet || throw "stevedore: the package set of ${toString pkgSource} is not an attribute set";
(if missing == [ ] then manifestOutput else errorOutput)
// {
  inherit plan layers configFile customisationLayer;
}
