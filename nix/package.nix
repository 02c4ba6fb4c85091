# The stevedore helper, built from this repository with nixpkgs' rustPlatform.
{ lib, rustPlatform }:
rustPlatform.buildRustPackage {
  pname = "stevedore";
  version = (builtins.fromTOML (builtins.readFile ../Cargo.toml)).package.version;
  src = lib.cleanSourceWith {
    src = ../.;
    filter = path: type:
      let base = baseNameOf path; in
      !(type == "directory" && (base == "target" || base == "example-output" || base == ".git"));
  };
  cargoLock.lockFile = ../Cargo.lock;
  # The integration tests need Nix, skopeo and umoci; scripts/test.sh runs them.
  doCheck = false;
  meta = {
    description = "Fast, byte-compatible replacement for nixpkgs' dockerTools";
    mainProgram = "stevedore";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
  };
}
