# An example image's inputs, from raw derivations (no nixpkgs needed): a store path
# holding the host's static busybox, a greeting script that uses it, and the closure
# graph nixpkgs' layering reads. scripts/example.sh turns them into an image.
let
  system = builtins.currentSystem;
  busybox = derivation {
    name = "busybox-static";
    inherit system;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" "mkdir -p $out/bin && cp /bin/busybox $out/bin/busybox && ln -s busybox $out/bin/sh" ];
  };
  hello = derivation {
    name = "hello-stevedore";
    inherit system;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" ''
      mkdir -p $out/bin
      printf '#!${busybox}/bin/sh\necho "Hello from a stevedore image ($(${busybox}/bin/busybox uname -m))"\n' > $out/bin/hello
      chmod +x $out/bin/hello
    '' ];
  };
  graph = derivation {
    name = "hello-closure-graph";
    inherit system;
    builder = "/bin/bash";
    PATH = "/usr/bin:/bin";
    args = [ "-c" ". \"$NIX_BUILD_TOP/.attrs.sh\"; cp \"$NIX_BUILD_TOP/.attrs.json\" \"\${outputs[out]}\"" ];
    __structuredAttrs = true;
    exportReferencesGraph.graph = [ hello ];
  };
in
{ inherit busybox hello graph; }
