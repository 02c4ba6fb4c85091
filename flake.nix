{
  description = "stevedore: a fast, byte-compatible replacement for nixpkgs' dockerTools";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: builtins.listToAttrs (map (system: { name = system; value = f system; }) systems);
      pkgsFor = system: import nixpkgs { inherit system; overlays = [ self.overlays.default ]; };
    in
    {
      overlays.default = import ./overlay.nix;

      packages = forAll (system: rec {
        stevedore = (pkgsFor system).stevedore;
        default = stevedore;
      });

      # The builders for a given pkgs: (stevedore.lib.dockerTools pkgs).buildLayeredImage { ... }
      lib.dockerTools =
        pkgs:
        import ./nix/default.nix {
          inherit (pkgs) bash coreutils fakeroot cacert shadow;
          proot = pkgs.proot or null;
          stevedore = pkgs.callPackage ./nix/package.nix { };
          system = pkgs.stdenv.hostPlatform.system;
          shellTools = pkgs.stdenv.initialPath or [ ];
        };

      # Nixery-style images by package name, one derivation per layer (nix/nixery.nix):
      # stevedore.lib.nixery pkgs { packages = [ "hello" "xorg.xev" ]; }
      lib.nixery =
        pkgs: args:
        import ./nix/nixery.nix (
          {
            inherit pkgs;
            stevedore = pkgs.callPackage ./nix/package.nix { };
            system = pkgs.stdenv.hostPlatform.system;
          }
          // args
        );

      checks = forAll (
        system:
        let
          pkgs = pkgsFor system;
        in
        {
          stevedore = pkgs.stevedore;
          hello-layered = pkgs.dockerTools.buildLayeredImage {
            name = "hello";
            contents = [ pkgs.hello ];
            config.Cmd = [ "/bin/hello" ];
          };
          hello-stream = pkgs.dockerTools.streamLayeredImage {
            name = "hello-stream";
            contents = [ pkgs.hello ];
            config.Cmd = [ "/bin/hello" ];
          };
        }
      );
    };
}
