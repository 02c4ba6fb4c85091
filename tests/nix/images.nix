# Test images: the layered cases of nixpkgs' nixos/tests/docker-tools.nix, written
# against stevedore's dockerTools. Each attribute is an image (a tarball, or a stream
# script for the stream* ones); tests/layered_images.rs builds and runs them.
{ stevedoreBin }:
let
  inherit (import ./tools.nix { inherit stevedoreBin; }) dockerTools busybox;
  system = builtins.currentSystem;
  sh = "${busybox}/bin/sh";
  mk = name: script: derivation {
    inherit name system;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" script ];
  };
  hello = mk "hello-2.12" ''
    mkdir -p $out/bin
    printf '#!${sh}\necho "Hello, world!"\n' > $out/bin/hello
    chmod +x $out/bin/hello
  '';
  greeter = mk "greeter" ''
    mkdir -p $out/bin
    printf '#!${sh}\necho "greetings from $GREETING"\n' > $out/bin/greet
    chmod +x $out/bin/greet
  '';
  storeSymlink = mk "store-symlink" "ln -s ${hello}/bin $out";
  root = mk "root-env" ''
    mkdir -p $out/bin
    ln -s ${hello}/bin/hello $out/bin/hello
    for a in sh echo cat ls stat readlink id env test; do ln -s ${busybox}/bin/$a $out/bin/$a; done
  '';
  twoLayered = dockerTools.buildLayeredImage {
    name = "two-layered-image";
    tag = "latest";
    contents = [ root ];
    config.Cmd = [ "/bin/hello" ];
    maxLayers = 2;
  };
  parentLayered = dockerTools.buildLayeredImage {
    name = "parent";
    tag = "latest";
    contents = [ root ];
    config.Env = [ "FROM_PARENT=true" "LAST_LAYER=parent" ];
  };
in
rec {
  inherit hello root busybox storeSymlink;

  layered-image = dockerTools.buildLayeredImage {
    name = "layered-image";
    tag = "latest";
    contents = [ root ];
    config.Cmd = [ "/bin/sh" "-c" "hello; cat /example-output" ];
    extraCommands = ''
      echo "This is an example file from extraCommands" > example-output
      mkdir -p tmp
    '';
  };

  another-layered-image = dockerTools.buildLayeredImage {
    name = "another-layered-image";
    tag = "latest";
    contents = [ root greeter ];
    config.Cmd = [ "/bin/greet" ];
    config.Env = [ "GREETING=another" ];
  };

  no-tag-layered = dockerTools.buildLayeredImage { name = "bash-no-tag-layered"; contents = [ root ]; };
  no-tag-stream = dockerTools.streamLayeredImage { name = "bash-no-tag-stream-layered"; contents = [ root ]; };

  uncompressed = dockerTools.buildLayeredImage { name = "uncompressed"; tag = "x"; compressor = "none"; contents = [ root ]; config.Cmd = [ "/bin/hello" ]; };
  zstd = dockerTools.buildLayeredImage { name = "zstd"; tag = "x"; compressor = "zstd"; contents = [ root ]; config.Cmd = [ "/bin/hello" ]; };
  gz = dockerTools.buildLayeredImage { name = "gz"; tag = "x"; compressor = "gz"; contents = [ root ]; config.Cmd = [ "/bin/hello" ]; };

  no-store-paths = dockerTools.buildLayeredImage {
    name = "no-store-paths";
    tag = "latest";
    includeStorePaths = false;
    contents = [ root ];
    extraCommands = ''
      mkdir -p bin-real
      cp ${busybox}/bin/busybox bin-real/busybox
    '';
    config.Cmd = [ "/bin-real/busybox" "echo" "no store" ];
  };

  with-user = dockerTools.buildLayeredImage {
    name = "bash-layered-with-user";
    tag = "latest";
    contents = [ root ];
    config.User = "1000:1000";
    config.Cmd = [ "/bin/sh" "-c" "stat -c %a /nix; stat -c %a /nix/store; id -u" ];
  };

  store-symlink = dockerTools.buildLayeredImage {
    name = "layered-store-symlink";
    tag = "latest";
    contents = [ root ];
    config.Cmd = [ "/bin/sh" "-c" "test -L ${storeSymlink} && readlink ${storeSymlink}" ];
    extraCommands = "ln -s ${storeSymlink} store-symlink";
  };

  unstable-date = dockerTools.buildLayeredImage {
    name = "unstable-date-layered";
    tag = "latest";
    created = "now";
    contents = [ root ];
  };

  inherit twoLayered;

  bulk-layer = dockerTools.buildLayeredImage {
    name = "bulk-layer";
    tag = "latest";
    contents = [ root hello greeter busybox ];
    config.Cmd = [ "/bin/hello" ];
    maxLayers = 2;
  };

  layered-bulk-layer = dockerTools.buildLayeredImage {
    name = "layered-bulk-layer";
    tag = "latest";
    fromImage = twoLayered;
    contents = [ greeter ];
    config.Cmd = [ "/bin/hello" ];
    maxLayers = 4;
  };

  env-layered = dockerTools.buildLayeredImage {
    name = "environment-variables-layered";
    tag = "latest";
    fromImage = parentLayered;
    contents = [ root ];
    config.Env = [ "FROM_CHILD=true" "LAST_LAYER=child" ];
    config.Cmd = [ "/bin/env" ];
  };

  prefixed = dockerTools.buildLayeredImage {
    name = "registry-1.docker.io/Image";
    tag = "latest";
    contents = [ root ];
    config.Cmd = [ "/bin/hello" ];
  };

  fake-root = dockerTools.buildLayeredImage {
    name = "layered-image-with-fake-root-commands";
    tag = "latest";
    contents = [ root ];
    fakeRootCommands = ''
      mkdir -p ./home/alice
      chown 1000 ./home/alice
      ln -s ${hello} ./hello
    '';
    config.Cmd = [ "/bin/sh" "-c" "stat -c %u /home/alice; /hello/bin/hello" ];
  };

  with-path = dockerTools.buildLayeredImage {
    name = "layered-image-with-path";
    tag = "latest";
    contents = [ root ./test-dummy ];
    config.Cmd = [ "/bin/cat" "/hello.txt" ];
  };

  with-architecture = dockerTools.buildLayeredImage {
    name = "layered-image-with-architecture";
    tag = "latest";
    architecture = "arm64";
    contents = [ root ];
  };

  non-root = dockerTools.buildLayeredImage {
    name = "non-root";
    tag = "latest";
    uid = 1000;
    gid = 1000;
    uname = "user";
    gname = "user";
    contents = [ root ];
    config.User = "1000:1000";
    config.WorkingDir = "/tmp-work";
    extraCommands = "mkdir -m 777 tmp-work";
    config.Cmd = [ "/bin/sh" "-c" "pwd; stat -c %u:%g ${hello}/bin/hello; echo $HOME_NOTE" ];
    config.Env = [ "HOME_NOTE=env-ok" ];
  };

  fakechroot = dockerTools.buildLayeredImage {
    name = "image-via-fakechroot";
    tag = "latest";
    contents = [ root ];
    enableFakechroot = true;
    fakeRootCommands = ''
      mkdir -p /opt
      ln -s ${hello}/bin/hello /opt/hello
      chown 1000 /opt
    '';
    config.Cmd = [ "/opt/hello" ];
  };

  config-refs = dockerTools.buildLayeredImage {
    name = "config-refs";
    tag = "latest";
    config.Entrypoint = [ "${greeter}/bin/greet" ];
    config.Env = [ "GREETING=config" ];
    debug = true;
  };

  too-many-base-layers = dockerTools.buildLayeredImage {
    name = "too-many-base-layers";
    fromImage = twoLayered;
    maxLayers = 3;
  };

  pipeline = dockerTools.buildLayeredImage {
    name = "layering-pipeline";
    tag = "latest";
    contents = [ root greeter ];
    layeringPipeline = [
      [ "subcomponent_out" [ greeter ] ]
      [ "over" "rest" [ "pipe" [ [ "popularity_contest" ] [ "limit_layers" 2 ] ] ] ]
    ];
    config.Cmd = [ "/bin/hello" ];
  };

  nix-db = dockerTools.buildLayeredImageWithNixDb {
    name = "nix-layered";
    tag = "latest";
    contents = [ root hello ];
    config.Cmd = [ "/bin/hello" ];
  };

  exported = dockerTools.exportImage { fromImage = layered-image; };
  exported-tagged = dockerTools.exportImage {
    fromImage = layered-image;
    fromImageName = "layered-image";
    fromImageTag = "latest";
    name = "exported.tar.gz";
  };

  merged = dockerTools.mergeImages [ layered-image fake-root no-tag-layered zstd ];
  merged-gz-last = dockerTools.mergeImages [ zstd uncompressed gz ];

  helpers = dockerTools.buildLayeredImage {
    name = "helpers";
    tag = "latest";
    contents = [
      dockerTools.binSh
      dockerTools.usrBinEnv
      dockerTools.caCertificates
      (dockerTools.fakeNss.override {
        extraPasswdLines = [ "alice:x:1000:1000:Alice:/home/alice:/bin/sh" ];
        extraGroupLines = [ "alice:x:1000:" ];
      })
      root
    ];
    config.Cmd = [ "/bin/cat" "/etc/passwd" "/etc/group" "/etc/nsswitch.conf" "/etc/ssl/certs/ca-certificates.crt" ];
  };

  # buildImage (nixpkgs' Docker 1.0 format).
  bash-image = dockerTools.buildImage {
    name = "bash";
    tag = "latest";
    copyToRoot = root;
    config.Cmd = [ "/bin/hello" ];
  };
  build-no-tag = dockerTools.buildImage { name = "bash-no-tag"; copyToRoot = root; };
  build-uncompressed = dockerTools.buildImage { name = "bash-uncompressed"; tag = "x"; compressor = "none"; copyToRoot = root; config.Cmd = [ "/bin/hello" ]; };
  build-zstd = dockerTools.buildImage { name = "bash-zstd"; tag = "x"; compressor = "zstd"; copyToRoot = root; config.Cmd = [ "/bin/hello" ]; };
  build-prefixed = dockerTools.buildImage { name = "registry-1.docker.io/image"; tag = "latest"; copyToRoot = root; config.Cmd = [ "/bin/hello" ]; };
  build-with-path = dockerTools.buildImage { name = "build-image-with-path"; tag = "latest"; copyToRoot = [ root ./test-dummy ]; config.Cmd = [ "/bin/cat" "/hello.txt" ]; };
  build-arm64 = dockerTools.buildImage { name = "build-image-with-architecture"; tag = "latest"; architecture = "arm64"; copyToRoot = root; };
  # A label named `created` that says "now" is the user's, not the image's time.
  build-now = dockerTools.buildImage { name = "unstable-date"; tag = "latest"; created = "now"; copyToRoot = root; config.Labels.created = "now"; };

  layer1 = dockerTools.buildImage {
    name = "l1";
    tag = "latest";
    extraCommands = ''
      mkdir -p tmp
      echo layer1 > tmp/layer1
      echo layer1 > tmp/layer2
      echo layer1 > tmp/layer3
    '';
  };
  layer2 = dockerTools.buildImage {
    name = "l2";
    tag = "latest";
    fromImage = layer1;
    extraCommands = ''
      mkdir -p tmp
      echo layer2 > tmp/layer2
      echo layer2 > tmp/layer3
    '';
  };
  layers-order = dockerTools.buildImage {
    name = "l3";
    tag = "latest";
    fromImage = layer2;
    copyToRoot = [ root ];
    extraCommands = ''
      mkdir -p tmp
      echo layer3 > tmp/layer3
    '';
    config.Cmd = [ "/bin/cat" "/tmp/layer1" "/tmp/layer2" "/tmp/layer3" ];
  };

  # nixpkgs' image step never sees fromImageName/fromImageTag: a matching or an unmatched
  # name:tag gives the same archive as none (tests/data/README.md).
  layers-order-named = layers-order.override { fromImageName = "l2"; fromImageTag = "latest"; };
  layers-order-unmatched = layers-order.override { fromImageName = "l2"; fromImageTag = "no-such-tag"; };
  root-unmatched = root3.override { fromImageName = "nothing"; fromImageTag = "here"; };

  env-parent = dockerTools.buildImage {
    name = "parent-image";
    tag = "latest";
    config.Env = [ "FROM_PARENT=true" "LAST_LAYER=parent" ];
  };
  env-child = dockerTools.buildImage {
    name = "child-image";
    tag = "latest";
    fromImage = env-parent;
    copyToRoot = root;
    config.Env = [ "FROM_CHILD=true" "LAST_LAYER=child" ];
    config.Cmd = [ "/bin/env" ];
  };

  build-on-layered = dockerTools.buildImage {
    name = "layered-on-top";
    tag = "latest";
    fromImage = layered-image;
    extraCommands = "mkdir -p tmp && echo on-top > tmp/on-top";
    config.Cmd = [ "/bin/cat" "/example-output" "/tmp/on-top" ];
  };
  layered-on-build = dockerTools.buildLayeredImage {
    name = "layered-on-build";
    tag = "latest";
    fromImage = bash-image;
    contents = [ greeter ];
    config.Cmd = [ "/bin/greet" ];
    config.Env = [ "GREETING=both" ];
  };

  # runAsRoot, without a VM.
  root1 = dockerTools.buildImage {
    name = "root1";
    tag = "latest";
    runAsRoot = ''
      mkdir -p /tmp
      echo layer1 > /tmp/layer1
      echo layer1 > /tmp/layer2
      echo layer1 > /tmp/layer3
      echo -n a > /layer-order
    '';
  };
  root2 = dockerTools.buildImage {
    name = "root2";
    tag = "latest";
    fromImage = root1;
    runAsRoot = ''
      echo layer2 > /tmp/layer2
      echo layer2 > /tmp/layer3
      echo -n b >> /layer-order
      mkdir -p /etc /home/alice
      echo 'alice:x:1000:1000::/home/alice:/bin/sh' >> /etc/passwd
      chown 1000:1000 /home/alice
    '';
  };
  root3 = dockerTools.buildImage {
    name = "root3";
    tag = "latest";
    fromImage = root2;
    copyToRoot = [ root ];
    runAsRoot = ''
      echo layer3 > /tmp/layer3
      echo -n c >> /layer-order
      rm /tmp/layer1
    '';
    config.Cmd = [ "/bin/sh" "-c" "cat /tmp/layer2 /tmp/layer3 /layer-order; echo; test -e /tmp/layer1 || echo layer1-deleted; stat -c %u:%g /home/alice" ];
  };

  # A base whose manifest lists the same layer twice (nixpkgs #214434).
  repeated-base = mk "repeated-base.tar" ''
    python3 - ${root1} "$out" <<'PY'
    import gzip, io, json, sys, tarfile
    src = tarfile.open(fileobj=io.BytesIO(gzip.open(sys.argv[1]).read()))
    members = {m.name: (m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()}
    manifest = json.loads(members["manifest.json"][1])
    config_name = manifest[0]["Config"]
    config = json.loads(members[config_name][1])
    manifest[0]["Layers"] = manifest[0]["Layers"] * 2
    config["rootfs"]["diff_ids"] = config["rootfs"]["diff_ids"] * 2
    config["history"] = config["history"] * 2
    members["manifest.json"] = (members["manifest.json"][0], json.dumps(manifest).encode())
    members[config_name] = (members[config_name][0], json.dumps(config).encode())
    with tarfile.open(sys.argv[2], "w") as out:
        for name, (m, data) in members.items():
            if data is not None:
                m.size = len(data)
                out.addfile(m, io.BytesIO(data))
            else:
                out.addfile(m)
    PY
  '';
  on-repeated-base = dockerTools.buildImage {
    name = "on-repeated-base";
    tag = "latest";
    fromImage = repeated-base;
    copyToRoot = [ root ];
    runAsRoot = "echo -n d >> /layer-order";
    config.Cmd = [ "/bin/cat" "/layer-order" "/tmp/layer1" ];
  };

  build-owner = dockerTools.buildImage { name = "build-owner"; tag = "latest"; copyToRoot = root; uid = 1000; gid = 100; };
  dirlinked = mk "dirlinked" "mkdir -p $out && ln -s ${hello}/bin $out/tools";
  build-dirlinks = dockerTools.buildImage { name = "dirlinks"; tag = "latest"; copyToRoot = [ dirlinked ]; };
  build-keep-dirlinks = dockerTools.buildImage { name = "keep-dirlinks"; tag = "latest"; copyToRoot = [ dirlinked ]; keepContentsDirlinks = true; };

  # A derivation to enter with the nix-shell images.
  shell-drv = derivation {
    name = "hello-shell";
    inherit system;
    builder = sh;
    args = [ "-c" "echo building $greeting > $out" ];
    greeting = "from the shell image";
    words = [ "a" "b" ];
    flag = true;
    passAsFile = [ "big" ];
    big = "passed as a file";
  };
  nix-shell-run = dockerTools.streamNixShellImage {
    drv = shell-drv;
    tag = "latest";
    shell = sh;
    run = ''
      echo "$greeting|$words|$flag|$(cat "$bigPath")|$HOME|$(pwd)|$(id -u):$(id -g)"
      buildDerivation && cat "$out"
    '';
  };
  nix-shell-build = dockerTools.buildNixShellImage {
    drv = shell-drv;
    tag = "latest";
    shell = sh;
    command = "echo command mode";
  };

  build-nix-db = dockerTools.buildImageWithNixDb {
    name = "build-nix-db";
    tag = "latest";
    copyToRoot = [ root hello ];
    config.Cmd = [ "/bin/hello" ];
  };

  stream-layered = dockerTools.streamLayeredImage {
    name = "stream-layered";
    tag = "latest";
    contents = [ root ];
    config.Cmd = [ "/bin/hello" ];
  };
  stream-hashing = stream-layered.override { precomputeDigests = false; };
  # The same images with one derivation per store layer (layerDerivations).
  layered-image-derivations = layered-image.override { layerDerivations = true; };
  another-layered-image-derivations = another-layered-image.override { layerDerivations = true; };
  non-root-derivations = non-root.override { layerDerivations = true; };
  layers-of-layered-image = layered-image-derivations.storeLayers;
  layers-of-another-layered-image = another-layered-image-derivations.storeLayers;
}
