# A stand-in for nix/nixery.nix with the same arguments and output, for the server's own
# tests (no nixpkgs, no layering): a fixed busybox layer shared by every image, a layer
# naming the packages, and Nixery's output `{ manifest, layerLocations }`, or
# `{ error = "not_found"; pkgs; }` for names outside `known`. The package `broken` makes
# a derivation fail; `slow` makes the build take 30 seconds and
# `lazy` 3 seconds. Builders are the host's python3 and sh (sandbox paths /usr /lib /bin).
{ pkgSource, packages, tag ? "latest", arch ? "amd64", stevedoreBin ? null
, popularity ? null, compressor ? "gzip" }:
let
  system = builtins.currentSystem;
  known = [ "bashInteractive" "cacert" "coreutils" "git" "hello" "iana-etc" "moreutils"
            "nano" "xorg.xev" "broken" "slow" "lazy" ];
  missing = builtins.filter (p: !(builtins.elem p known)) packages;
  has = p: builtins.elem p packages;
  broken = derivation {
    name = "broken-1.0";
    inherit system;
    builder = "/bin/sh";
    args = [ "-c" "echo 'this package does not build' >&2; exit 1" ];
  };
  layers = derivation ({
    name = "fake-layers";
    inherit system tag arch;
    builder = "/usr/bin/python3";
    args = [ ./layers.py ];
    packages = builtins.concatStringsSep " " packages;
    sleep = if has "slow" then "30" else if has "lazy" then "3" else "0";
  } // (if has "broken" then { inherit broken; } else { }));
  text = name: content: derivation {
    inherit name system content;
    builder = "/bin/sh";
    args = [ "-c" "printf '%s' \"$content\" > $out" ];
  };
in
if missing != [ ] then text "not-found.json" (builtins.toJSON { error = "not_found"; pkgs = missing; })
else derivation {
  name = "manifest.json";
  inherit system layers;
  builder = "/bin/sh";
  args = [ "-c" "read -r line < $layers/manifest.json; printf '%s' \"$line\" > $out" ];
}
