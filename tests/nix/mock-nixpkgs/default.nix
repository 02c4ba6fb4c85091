# A stand-in for nixpkgs (there is none here) with just what overlay.nix, flake.nix and
# nix/package.nix use: lib bits, callPackage, stdenv.hostPlatform, bash, coreutils,
# fakeroot, proot, hello, a prev dockerTools, and a rustPlatform.buildRustPackage that
# checks its arguments and installs the binary cargo built ($STEVEDORE_BIN).
{ system ? builtins.currentSystem, overlays ? [ ] }:
let
  bin = builtins.getEnv "STEVEDORE_BIN";
  sh = args: derivation ({ inherit system; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; } // args);
  busybox = sh { name = "busybox"; args = [ "-c" "mkdir -p $out/bin && cp /bin/busybox $out/bin/ && ln -s busybox $out/bin/sh" ]; };
  base = final: {
    lib = {
      cleanSourceWith = { src, filter }: builtins.path { path = src; inherit filter; name = "source"; };
      licenses.mit = "mit";
      platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
    };
    stdenv.hostPlatform.system = system;
    callPackage = fn: args:
      let f = import fn; in f (builtins.intersectAttrs (builtins.functionArgs f) final // args);
    rustPlatform.buildRustPackage = attrs:
      assert bin != "" || throw "set STEVEDORE_BIN";
      sh {
        name = "${attrs.pname}-${attrs.version}";
        src = attrs.src;
        lock = attrs.cargoLock.lockFile;
        bin = builtins.path { path = bin; name = "stevedore-bin"; };
        args = [ "-c" "test -f $src/Cargo.toml && test -d $src/src && test ! -e $src/target && test -f $lock && mkdir -p $out/bin && cp $bin $out/bin/stevedore" ];
      };
    bash = "/usr";
    coreutils = "/usr";
    proot = "/usr";
    shadow = "/usr";
    cacert = sh { name = "cacert"; args = [ "-c" "mkdir -p $out/etc/ssl/certs && echo bundle > $out/etc/ssl/certs/ca-bundle.crt" ]; };
    fakeroot = sh { name = "fakeroot-host"; args = [ "-c" "mkdir -p $out/bin && ln -s /usr/bin/fakeroot-sysv $out/bin/fakeroot" ]; };
    hello = sh {
      name = "hello-2.12";
      args = [ "-c" "mkdir -p $out/bin && printf '#!${busybox}/bin/sh\\necho Hello, world!\\n' > $out/bin/hello && chmod +x $out/bin/hello" ];
    };
    dockerTools = {
      pullImage = "prev pullImage";
      buildImage = throw "the overlay must replace buildImage";
      buildLayeredImage = throw "the overlay must replace buildLayeredImage";
    };
  };
  fix = f: let x = f x; in x;
in
fix (final: builtins.foldl' (prev: overlay: prev // overlay final prev) (base final) overlays)
