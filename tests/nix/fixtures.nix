# Fixture store paths for stevedore's tests, built from raw derivations (no nixpkgs):
# every builder is the host's /bin/sh with /usr/bin:/bin on PATH, and every output is
# a pure function of this file, so store paths and layer digests are the same on every
# machine. Build one with: nix-build tests/nix/fixtures.nix -A app
let
  system = builtins.currentSystem;
  mk = name: script: extra: derivation ({
    inherit name system;
    builder = "/bin/sh";
    args = [ "-c" ("set -eu\n" + script) ];
    PATH = "/usr/bin:/bin";
  } // extra);

  # A library other paths depend on.
  base = mk "fixture-base-1.0" ''
    mkdir -p $out/lib/empty-dir $out/share/doc
    printf 'base library\n' > $out/lib/libbase.so
    printf 'docs\n' > $out/share/doc/README
    printf 'hidden\n' > $out/.hidden
  '' { };

  # Names and links the tar writers must get right.
  lib = mk "fixture-lib-2.0" ''
    mkdir -p $out/lib $out/bin $out/sub/deeper
    echo ${base} > $out/lib/base-path
    printf 'executable\n' > $out/bin/tool
    chmod +x $out/bin/tool
    printf 'shared inode\n' > $out/lib/first
    ln $out/lib/first $out/lib/second
    ln -s sub $out/sublink
    ln -s ../lib/first $out/sub/relative-link
    long=$(printf 'n%.0s' $(seq 1 150))
    printf 'long name\n' > "$out/sub/deeper/$long"
    mkdir -p "$out/sub/$long/$long"
    printf 'long path\n' > "$out/sub/$long/$long/$long"
    ln -s "$out/sub/$long/$long/$long" $out/long-target-link
    printf 'utf8\n' > "$out/sub/h\303\251llo-w\303\266rld.txt"
    printf 'cjk\n' > "$out/sub/\346\227\245\346\234\254\350\252\236"
    printf 'latin1 byte\n' > "$out/sub/bad-\377-name"
    touch "$out/sub/a" "$out/sub/a-b" "$out/sub/a.b" "$out/sub/B"
    mkdir "$out/sub/a.d" && touch "$out/sub/a.d/x"
  '' { };

  # A 50 MB file (not all zeros).
  big = mk "fixture-big" ''
    mkdir -p $out/data
    yes 'stevedore big fixture line' | head -c 52428800 > $out/data/blob
  '' { };

  # The top-level package.
  app = mk "fixture-app-3.0" ''
    mkdir -p $out/bin
    printf '#!/bin/sh\necho hello from app\n' > $out/bin/app
    chmod +x $out/bin/app
    echo ${lib} ${big} > $out/refs
  '' { };

  # A store path that is itself a symlink.
  storeSymlink = mk "fixture-store-symlink" ''
    ln -s ${app}/bin $out
  '' { };

  # nixpkgs' customisation layer, made the way nixpkgs makes it (GNU tar, then sha256sum).
  custom = mk "fixture-customisation-layer" ''
    mkdir -p root/etc root/bin $out
    printf 'welcome\n' > root/etc/motd
    ln -s ${app}/bin/app root/bin/app
    ln -s ${storeSymlink} root/apps
    (cd root && tar --sort=name --numeric-owner --owner=0 --group=0 \
      --mtime=@315532800 --hard-dereference -cf $out/layer.tar .)
    sha256sum $out/layer.tar | cut -d' ' -f1 > $out/checksum
  '' { };

  # The closure graph of the image roots, as nixpkgs' layering derivations receive it.
  # With structured attrs the output path is in .attrs.sh's `outputs` array.
  graphOf = name: roots: derivation {
    inherit name system;
    builder = "/bin/bash";
    args = [ "-c" ". \"$NIX_BUILD_TOP/.attrs.sh\"; cp \"$NIX_BUILD_TOP/.attrs.json\" \"\${outputs[out]}\"" ];
    PATH = "/usr/bin:/bin";
    __structuredAttrs = true;
    exportReferencesGraph.graph = roots;
  };
in
{
  inherit base lib big app storeSymlink custom;
  graph = graphOf "fixture-graph" [ app custom ];
}
