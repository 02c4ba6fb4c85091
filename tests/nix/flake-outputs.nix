# Evaluates flake.nix's outputs with the mock nixpkgs as its nixpkgs input.
let
  flake = import ../../flake.nix;
  outputs = flake.outputs { self = outputs; nixpkgs = { outPath = ./mock-nixpkgs; }; };
in
outputs
