# The baseline of bench/serve.sh: the packages of the image `app/git/jq` that `stevedore
# serve` builds (with cacert and iana-etc, which serve adds), from the same package set
# (bench/serve-pkgs, so the same store paths), as a docker archive built by stevedore's
# dockerTools.buildLayeredImage (nix/default.nix, imported as examples/hello.nix does),
# with its defaults (maxLayers 100, compressor "gz") unless given.
{
  stevedoreBin,
  compressor ? "gz",
}:
let
  system = builtins.currentSystem;
  pkgs = import ./serve-pkgs { };
  stevedore = derivation {
    name = "stevedore";
    inherit system;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    bin = builtins.path {
      path = stevedoreBin;
      name = "stevedore-bin";
    };
    args = [ "-c" "mkdir -p $out/bin && cp $bin $out/bin/stevedore" ];
  };
  dockerTools = import ../nix/default.nix {
    inherit stevedore;
    bash = "/usr";
    coreutils = "/usr";
    hostPaths = [ "/usr" "/lib" "/lib64" ];
  };
in
dockerTools.buildLayeredImage {
  name = "bench-base";
  tag = "latest";
  inherit compressor;
  contents = with pkgs; [ app git jq cacert iana-etc ];
  # What nixery.nix gives an image without bashInteractive.
  config.Env = [ "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt" ];
}
