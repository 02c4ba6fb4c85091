# stevedore's dockerTools for the tests, without nixpkgs: the helper is the binary cargo
# built (copied into the store), and bash, coreutils, fakeroot and proot come from the
# host's /usr (allowed for in the sandbox with extra-sandbox-paths /usr /lib /lib64 /bin).
{ stevedoreBin }:
let
  system = builtins.currentSystem;
  stevedore = derivation {
    name = "stevedore";
    inherit system;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    bin = builtins.path { path = stevedoreBin; name = "stevedore-bin"; };
    args = [ "-c" "mkdir -p $out/bin && cp $bin $out/bin/stevedore" ];
  };
  host = "/usr";
  # Debian's /usr/bin/fakeroot goes through /etc/alternatives, which a fakechroot lacks.
  fakeroot = derivation {
    name = "fakeroot-host";
    inherit system;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" "mkdir -p $out/bin && ln -s /usr/bin/fakeroot-sysv $out/bin/fakeroot" ];
  };
in
{
  inherit stevedore;
  dockerTools = import ../../nix/default.nix {
    inherit stevedore;
    bash = host;
    coreutils = host;
    inherit fakeroot;
    cacert = derivation {
      name = "cacert-fixture";
      inherit system;
      builder = "/bin/sh";
      PATH = "/usr/bin:/bin";
      args = [ "-c" "mkdir -p $out/etc/ssl/certs && echo 'fixture bundle' > $out/etc/ssl/certs/ca-bundle.crt" ];
    };
    proot = host;
    hostPaths = [ "/usr" "/lib" "/lib64" ];
  };
  # A static busybox with the applets the tests call, as a store path.
  busybox = derivation {
    name = "busybox";
    inherit system;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" ''
      mkdir -p $out/bin
      cp /bin/busybox $out/bin/busybox
      for a in sh echo cat ls stat readlink id env test printf mkdir ln chown true; do
        ln -s busybox $out/bin/$a
      done
    '' ];
  };
}
