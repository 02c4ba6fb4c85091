# A small package set for Nixery-style images (`path!…/tests/nixery-pkgs`): raw
# derivations built from the host's static busybox, with the names Nixery's meta-package
# `shell` and its always-added packages ask for, a nested set (xorg.xev), a camel-cased
# one (haskellPackages, found as "haskellpackages"), a shared library several packages
# reference, a package whose build fails, and two that take their time: `slow` (30 s)
# and `lazy` (3 s). The set ignores `system` (the tests build on the host only), so an
# arm64 image holds these same x86_64 paths.
#
# Two impurities, for the tests of `stevedore serve`, which need builds that really run:
# - `slow` and `lazy` carry `builtins.currentTime`: every evaluation (in a second of its
#   own) makes them anew, so every request for an image holding them builds them;
# - with NIXERY_PKGS_SALT set in the environment of the evaluation (nix-build's, or that
#   of the `stevedore serve` running it), every derivation carries it as `salt`: a test
#   gets packages, and so layers, that no other test shares, and can tell its builders
#   by it. Unset (as tests/nixery_nix.rs leaves it), the set is what it always was.
{ ... }:
let
  system = builtins.currentSystem;
  salt = builtins.getEnv "NIXERY_PKGS_SALT";
  # A derivation whose builder is the host's sh running `script`, with `extra` attributes.
  rawWith =
    extra: name: script:
    derivation (
      {
        inherit name system;
        builder = "/bin/sh";
        PATH = "/usr/bin:/bin";
        args = [ "-c" script ];
      }
      // (if salt == "" then { } else { inherit salt; })
      // extra
    );
  raw = rawWith { };
  # A program that takes `seconds` to build, made anew by every evaluation.
  sleeper =
    name: bin: seconds:
    rawWith { evaluated = toString builtins.currentTime; } name ''
      sleep ${toString seconds}
      mkdir -p $out/bin
      printf '#!${busybox}/bin/sh\necho "${bin} woke up"\n' > $out/bin/${bin}
      chmod +x $out/bin/${bin}
    '';
  busybox = raw "busybox-1.35.0" ''
    mkdir -p $out/bin && cp /bin/busybox $out/bin/busybox && ln -s busybox $out/bin/sh
  '';
  # A program: a busybox script printing `message`, optionally referencing `lib`.
  program =
    name: bin: message: lib:
    raw name ''
      mkdir -p $out/bin
      printf '#!${busybox}/bin/sh\n${if lib == null then "" else ": ${lib}\n"}echo "${message}"\n' > $out/bin/${bin}
      chmod +x $out/bin/${bin}
    '';
  libshared = raw "libshared-1.0" ''
    mkdir -p $out/lib && echo "shared library" > $out/lib/libshared.so
  '';
  # busybox applets as their own commands.
  applets =
    name: list:
    raw name ''
      mkdir -p $out/bin
      for a in ${list}; do ln -s ${busybox}/bin/busybox $out/bin/$a; done
    '';
in
{
  inherit busybox libshared;
  hello = program "hello-2.12.1" "hello" "Hello from a Nixery-style stevedore image" libshared;
  figlet = program "figlet-2.2.5" "figlet" "figlet says hi" null;
  bashInteractive = applets "bash-interactive-5.2" "bash sh";
  coreutils = applets "coreutils-9.3" "ls cat echo env uname true false";
  moreutils = program "moreutils-0.67" "sponge" "sponge" null;
  nano = program "nano-7.2" "nano" "nano" null;
  cacert = raw "nss-cacert-3.92" ''
    mkdir -p $out/etc/ssl/certs && echo "not a real certificate" > $out/etc/ssl/certs/ca-bundle.crt
  '';
  iana-etc = raw "iana-etc-20230316" ''
    mkdir -p $out/etc && echo "tcp 6 TCP" > $out/etc/protocols && echo "http 80/tcp" > $out/etc/services
  '';
  xorg = {
    xev = program "xev-1.2.5" "xev" "xev here" libshared;
  };
  haskellPackages = {
    stylish-haskell = program "stylish-haskell-0.14.5.0" "stylish-haskell" "stylish" null;
  };
  broken = raw "broken-1.0" "echo this package does not build >&2; exit 1";
  slow = sleeper "slow-1.0" "slow" 30;
  lazy = sleeper "lazy-1.0" "lazy" 3;
}
