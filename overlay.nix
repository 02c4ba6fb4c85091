# Replaces dockerTools' layered-image builders with stevedore's, keeping everything
# else of dockerTools. Use: pkgs.extend (import ./overlay.nix), or overlays = [ ... ].
final: prev: {
  stevedore = final.callPackage ./nix/package.nix { };

  dockerTools = prev.dockerTools // (import ./nix/default.nix {
    inherit (final) stevedore bash coreutils fakeroot cacert shadow;
    # proot is Linux-only; enableFakechroot asserts it is there, as nixpkgs does.
    proot = final.proot or null;
    system = final.stdenv.hostPlatform.system;
    storeDir = builtins.storeDir;
    # The tools nixpkgs' stdenv puts on PATH for extraCommands, fakeRootCommands and
    # runAsRoot (coreutils, findutils, diffutils, sed, grep, awk, tar, gzip, bzip2, xz, …).
    shellTools = final.stdenv.initialPath or [ ];
  });
}
