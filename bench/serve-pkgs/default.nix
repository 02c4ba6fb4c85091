# The package set of bench/serve.sh (`stevedore serve --pkgs path!…/bench/serve-pkgs`, and
# the buildLayeredImage baseline of bench/serve-base.nix): 37 synthetic packages shaped like
# a Python application's image with git and jq: a libc every binary references, shared
# libraries referenced by several packages (zlib, openssl, ncurses, readline, …), a large
# interpreter with thousands of small files, a numerical library, data files. Raw
# derivations built by the host's python3 (the sandbox sees /usr, /lib, /lib64, /bin) from
# gen.py: contents are deterministic (pseudo-random from `seed` and the name), so every
# run (on a machine with the same python3) gets the same store paths and bytes.
#
# The image `app/git/jq` (+ cacert and iana-etc, which `stevedore serve` adds) holds all
# 37 packages: 389 MiB in 15,015 files (265 MiB gzipped).
{ seed ? "stevedore-bench-1", ... }:
let
  system = builtins.currentSystem;
  # name: MiB of binaries (in files), of text (in files), of random data (in files), deps.
  pkg =
    name: bin: nbin: text: ntext: rand: nrand: deps:
    derivation {
      inherit name system;
      builder = "/usr/bin/python3";
      args = [ ./gen.py ];
      spec = builtins.toJSON {
        inherit name bin nbin text ntext rand nrand;
        seed = "${seed}:${name}";
        deps = toString deps;
      };
    };
  s = rec {
    glibc = pkg "glibc-2.37" 24 40 6 300 0 0 [ ];
    gcc-lib = pkg "gcc-12.3.0-lib" 8 10 0.5 20 0 0 [ glibc ];
    zlib = pkg "zlib-1.3" 0.4 2 0.1 5 0 0 [ glibc ];
    xz = pkg "xz-5.4.4" 1.5 6 0.5 20 0 0 [ glibc ];
    bzip2 = pkg "bzip2-1.0.8" 0.8 4 0.2 10 0 0 [ glibc ];
    openssl = pkg "openssl-3.0.10" 9 12 3 80 0 0 [ glibc zlib ];
    libffi = pkg "libffi-3.4.4" 0.3 2 0.2 10 0 0 [ glibc ];
    ncurses = pkg "ncurses-6.4" 2 12 4 2500 0 0 [ glibc ];
    readline = pkg "readline-8.2" 1 3 0.5 20 0 0 [ glibc ncurses ];
    sqlite = pkg "sqlite-3.43.1" 3 4 1 10 0 0 [ glibc zlib readline ];
    expat = pkg "expat-2.5.0" 0.6 3 0.4 10 0 0 [ glibc ];
    gdbm = pkg "gdbm-1.23" 0.6 4 0.4 20 0 0 [ glibc readline ];
    libxcrypt = pkg "libxcrypt-4.4.36" 0.3 2 0.2 5 0 0 [ glibc ];
    tzdata = pkg "tzdata-2023c" 0 0 5 1800 0 0 [ ];
    mailcap = pkg "mailcap-2.1.53" 0 0 0.1 3 0 0 [ ];
    bash = pkg "bash-5.2-p15" 5 8 3 120 0 0 [ glibc readline ncurses ];
    coreutils = pkg "coreutils-9.3" 8 110 2 40 0 0 [ glibc libxcrypt ];
    python3 = pkg "python3-3.11.5" 25 80 58 4200 7 30 [
      glibc gcc-lib zlib xz bzip2 openssl libffi ncurses readline sqlite expat gdbm libxcrypt
      tzdata mailcap bash
    ];
    openblas = pkg "openblas-0.3.24" 30 6 1 30 0 0 [ glibc gcc-lib ];
    python-numpy = pkg "python3.11-numpy-1.25.2" 22 90 14 900 4 20 [ python3 openblas gcc-lib glibc ];
    python-urllib3 = pkg "python3.11-urllib3-2.0.4" 0 0 2 120 0 0 [ python3 ];
    python-certifi = pkg "python3.11-certifi-2023.7.22" 0 0 0.4 10 0 0 [ python3 cacert ];
    python-idna = pkg "python3.11-idna-3.4" 0 0 1 20 0 0 [ python3 ];
    python-requests = pkg "python3.11-requests-2.31.0" 0 0 2 60 0 0 [
      python3 python-urllib3 python-certifi python-idna
    ];
    app = pkg "app-1.4.2" 3 10 6 400 16 60 [ python3 python-numpy python-requests bash coreutils ];
    libunistring = pkg "libunistring-1.1" 1.8 2 0.5 10 0 0 [ glibc ];
    libidn2 = pkg "libidn2-2.3.4" 0.4 2 1.5 40 0 0 [ glibc libunistring ];
    nghttp2 = pkg "nghttp2-1.55.1" 0.8 3 0.3 10 0 0 [ glibc ];
    libssh2 = pkg "libssh2-1.11.0" 0.8 2 0.3 20 0 0 [ glibc openssl zlib ];
    curl = pkg "curl-8.3.0" 2.5 4 1.5 60 0 0 [ glibc openssl zlib nghttp2 libssh2 libidn2 cacert ];
    pcre2 = pkg "pcre2-10.42" 1.6 5 0.4 20 0 0 [ glibc ];
    perl = pkg "perl-5.38.0" 12 40 36 2600 0 0 [ glibc zlib gdbm libxcrypt ];
    git = pkg "git-2.42.0" 30 160 12 700 2 10 [ glibc zlib openssl curl perl expat pcre2 bash ];
    oniguruma = pkg "oniguruma-6.9.8" 0.6 2 0.2 10 0 0 [ glibc ];
    jq = pkg "jq-1.7" 0.5 3 0.3 10 0 0 [ glibc oniguruma ];
    cacert = pkg "nss-cacert-3.92" 0 0 0.3 2 0 0 [ ];
    iana-etc = pkg "iana-etc-20230316" 0 0 0.1 3 0 0 [ ];
  };
in
s
