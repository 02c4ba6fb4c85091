# A stand-in for nixpkgs (there is none here) with just what overlay.nix, flake.nix and
# nix/package.nix use: lib bits, callPackage, stdenv.hostPlatform and initialPath, bash,
# coreutils, fakeroot, proot, hello, a prev dockerTools, and a
# rustPlatform.buildRustPackage that checks its arguments and installs the binary cargo
# built ($STEVEDORE_BIN). Packages are store paths linking to just their own programs
# on the host, so a tool that a builder does not put on PATH cannot be found.
{ system ? builtins.currentSystem, overlays ? [ ] }:
let
  bin = builtins.getEnv "STEVEDORE_BIN";
  sh = args: derivation ({ inherit system; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; } // args);
  busybox = sh { name = "busybox"; args = [ "-c" "mkdir -p $out/bin && cp /bin/busybox $out/bin/ && ln -s busybox $out/bin/sh" ]; };
  # A package of host programs: { name = "tool"; programs = { prog = "/usr/bin/real"; }; }.
  hostPackage =
    name: programs:
    sh {
      inherit name;
      args = [ "-c" (builtins.concatStringsSep "\n" (
        [ "mkdir -p $out/bin" ] ++ map (p: "ln -s ${programs.${p}} $out/bin/${p}") (builtins.attrNames programs)
      )) ];
    };
  fromUsrBin = names: builtins.listToAttrs (map (n: { name = n; value = "/usr/bin/${n}"; }) names);
  coreutilsPrograms = [
    "cat" "chgrp" "chmod" "chown" "cp" "date" "dd" "df" "echo" "false" "ln" "ls" "mkdir" "mknod" "mktemp" "mv"
    "pwd" "readlink" "rm" "rmdir" "sleep" "sync" "touch" "true" "uname" "[" "basename" "cksum" "comm" "cut"
    "dirname" "du" "env" "expr" "head" "id" "install" "join" "md5sum" "mkfifo" "nproc" "od" "paste" "printf"
    "realpath" "seq" "sha256sum" "sort" "split" "stat" "tac" "tail" "tee" "test" "timeout" "tr" "truncate"
    "uniq" "wc" "whoami" "yes"
  ];
  base = final: {
    lib = {
      cleanSourceWith = { src, filter }: builtins.path { path = src; inherit filter; name = "source"; };
      licenses.mit = "mit";
      platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
    };
    stdenv.hostPlatform.system = system;
    # nixpkgs' stdenv.initialPath, less file, make and patch.
    stdenv.initialPath = [
      final.coreutils
      (hostPackage "findutils" (fromUsrBin [ "find" "xargs" ]))
      (hostPackage "diffutils" (fromUsrBin [ "diff" "cmp" ]))
      (hostPackage "gnused" (fromUsrBin [ "sed" ]))
      (hostPackage "gnugrep" (fromUsrBin [ "grep" ]))
      (hostPackage "gawk" { awk = "/usr/bin/mawk"; })
      (hostPackage "gnutar" (fromUsrBin [ "tar" ]))
      (hostPackage "gzip" (fromUsrBin [ "gzip" ]))
      (hostPackage "bzip2" (fromUsrBin [ "bzip2" ]))
      (hostPackage "xz" (fromUsrBin [ "xz" ]))
      final.bash
    ];
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
    bash = hostPackage "bash" { bash = "/usr/bin/bash"; sh = "/usr/bin/bash"; };
    coreutils = hostPackage "coreutils" (fromUsrBin coreutilsPrograms);
    proot = hostPackage "proot" (fromUsrBin [ "proot" ]);
    shadow = "/usr";
    cacert = sh { name = "cacert"; args = [ "-c" "mkdir -p $out/etc/ssl/certs && echo bundle > $out/etc/ssl/certs/ca-bundle.crt" ]; };
    # Debian's fakeroot script needs getopt, sed and cut, which nixpkgs' wrapper adds to PATH.
    fakeroot = sh {
      name = "fakeroot-host";
      args = [ "-c" ''
        mkdir -p $out/bin $out/libexec
        for t in getopt sed cut; do ln -s /usr/bin/$t $out/libexec/$t; done
        printf '#!/usr/bin/bash\nPATH=$PATH:%s/libexec exec /usr/bin/fakeroot-sysv "$@"\n' $out > $out/bin/fakeroot
        chmod +x $out/bin/fakeroot
      '' ];
    };
    hello = sh {
      name = "hello-2.12";
      args = [ "-c" "mkdir -p $out/bin && printf '#!${busybox}/bin/sh\\necho Hello, world!\\n' > $out/bin/hello && chmod +x $out/bin/hello" ];
    };
    dockerTools = {
      pullImage = throw "the overlay must replace pullImage";
      tarsum = "prev tarsum";
      buildImage = throw "the overlay must replace buildImage";
      buildLayeredImage = throw "the overlay must replace buildLayeredImage";
    };
  };
  fix = f: let x = f x; in x;
in
fix (final: builtins.foldl' (prev: overlay: prev // overlay final prev) (base final) overlays)
