# The example image, written the way a user writes one: dockerTools.buildLayeredImage
# from stevedore's nix/default.nix (the overlay hands the same builders to nixpkgs
# users). This machine has no nixpkgs, so the packages are raw derivations: the
# stevedore binary cargo built, bash, coreutils, fakeroot and proot taken from the host
# (the sandbox sees them through extra-sandbox-paths), and a hello program that runs on
# the host's static busybox.
{ stevedoreBin }:
let
  system = builtins.currentSystem;
  raw =
    name: script:
    derivation {
      inherit name system;
      builder = "/bin/sh";
      PATH = "/usr/bin:/bin";
      args = [ "-c" script ];
    };
  stevedore = derivation {
    name = "stevedore";
    inherit system;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    bin = builtins.path { path = stevedoreBin; name = "stevedore-bin"; };
    args = [ "-c" "mkdir -p $out/bin && cp $bin $out/bin/stevedore" ];
  };
  # Debian's /usr/bin/fakeroot is an alternatives link; point at the real script.
  fakeroot = raw "fakeroot-host" "mkdir -p $out/bin && ln -s /usr/bin/fakeroot-sysv $out/bin/fakeroot";
  dockerTools = import ../nix/default.nix {
    inherit stevedore fakeroot;
    bash = "/usr";
    coreutils = "/usr";
    proot = "/usr";
    hostPaths = [ "/usr" "/lib" "/lib64" ];
  };

  busybox = raw "busybox-static" "mkdir -p $out/bin && cp /bin/busybox $out/bin/busybox && ln -s busybox $out/bin/sh";
  hello = raw "hello-stevedore" ''
    mkdir -p $out/bin
    printf '#!${busybox}/bin/sh\necho "Hello from a stevedore image ($(${busybox}/bin/busybox uname -m))"\n' > $out/bin/hello
    chmod +x $out/bin/hello
  '';
in
{
  image = dockerTools.buildLayeredImage {
    name = "hello-stevedore";
    tag = "latest";
    contents = [ hello ];
    config.Cmd = [ "/bin/hello" ];
  };
}
