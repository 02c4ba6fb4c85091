# stevedore's dockerTools: nixpkgs' layered-image builders with the same arguments,
# defaults and results, built by the stevedore helper. Written with Nix builtins only
# (no nixpkgs lib, no runCommand), so it evaluates fast and without nixpkgs.
#
# Each package argument is a derivation or store path with a bin/ directory.
# hostPaths: directories outside the store that the tools need at run time (only for
# tools taken from the host, as the tests do); they are bound into the fakechroot and
# left out of its layer.
# shellTools: packages whose bin/ goes on PATH, after the builders' own tools, for the
# user's snippets (extraCommands, fakeRootCommands, runAsRoot), as stdenv's tools are in
# nixpkgs; the overlay passes stdenv.initialPath.
{
  stevedore,
  bash,
  coreutils,
  fakeroot ? null,
  proot ? null,
  cacert ? null,
  shadow ? null,
  system ? builtins.currentSystem,
  storeDir ? builtins.storeDir,
  hostPaths ? [ ],
  shellTools ? [ ],
}:
let
  inherit (builtins)
    appendContext
    attrNames
    baseNameOf
    concatStringsSep
    filter
    fromJSON
    head
    isFunction
    isList
    readFile
    removeAttrs
    replaceStrings
    substring
    toJSON
    unsafeDiscardStringContext
    ;

  helper = "${stevedore}/bin/stevedore";
  toolPath = concatStringsSep ":" (
    map (p: "${p}/bin") (filter (p: p != null) [ stevedore coreutils bash fakeroot proot ])
  );
  # Appended to PATH only while a user's snippet runs.
  shellPath = concatStringsSep ":" (map (p: "${p}/bin") shellTools);

  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  toLower = replaceStrings upper lower;

  # go.GOARCH / GOARM of the host platform, as nixpkgs' defaultArchitecture/defaultVariant.
  goArch = {
    x86_64-linux = "amd64";
    aarch64-linux = "arm64";
    i686-linux = "386";
    armv7l-linux = "arm";
    armv6l-linux = "arm";
    armv5tel-linux = "arm";
    riscv64-linux = "riscv64";
    powerpc64le-linux = "ppc64le";
    s390x-linux = "s390x";
    x86_64-darwin = "amd64";
    aarch64-darwin = "arm64";
  };
  defaultArchitecture = goArch.${system} or (throw "stevedore: no Go architecture known for ${system}");
  defaultVariant =
    {
      armv7l-linux = "v7";
      armv6l-linux = "v6";
      armv5tel-linux = "v5";
    }
    .${system} or "";

  compressors = {
    none = "";
    gz = ".gz";
    zstd = ".zst";
  };
  compressorExt =
    name: compressor:
    compressors.${compressor}
      or (throw "in docker image ${name}: compressor must be one of: [${concatStringsSep " " (attrNames compressors)}]");

  # lib.makeOverridable: the result gains .override (attrs, or a function of the old args).
  makeOverridable =
    f: args:
    f args
    // {
      override = newArgs: makeOverridable f (args // (if isFunction newArgs then newArgs args else newArgs));
    };

  # A derivation plus nixpkgs-style passthru (on the result and under .passthru) and meta.
  finish =
    drv: passthru: meta:
    drv // passthru // { inherit passthru meta; };

  # Very short builders can be reported killed by signal 9 (NixOS/nix#2176: Nix kills
  # the process group once the log closes, sometimes before the builder has exited); a
  # child holding the log open a moment longer lets the builder exit first.
  holdLog = "\n(exec ${coreutils}/bin/sleep 0.05) &";

  # nixpkgs' streamScript: `${streamScript} CONF [--repo_tag NAME:TAG] | docker load`.
  streamScript = run "stream" ''
    printf '#!%s\nexec %s stream-layered "$@"\n' ${bash}/bin/bash ${helper} > "$out"
    chmod +x "$out"
  '' { preferLocalBuild = true; };

  # passthru.copyTo: `copy-to DEST [--compress …] [--format …]` runs `stevedore copy` on
  # an image, from `source` (a layered image's conf: no docker archive is written first).
  copyToScript = name: source: copyScript "${name}-copy-to" "copy-to" "'${source}'";

  # passthru.copyToRegistry: `copy-to-registry [FLAGS…]` pushes the image to
  # docker://IMAGENAME:IMAGETAG (flags as `stevedore copy` takes them).
  copyToRegistryScript =
    name: source: imageName: imageTag:
    copyScript "${name}-copy-to-registry" "copy-to-registry" "'${source}' 'docker://${imageName}:${imageTag}'";

  copyScript =
    name: program: args:
    finish (run name ''
      mkdir -p "$out/bin"
      printf '#!%s\nexec %s copy %s "$@"\n' ${bash}/bin/bash ${helper} "${args}" > "$out/bin/${program}"
      chmod +x "$out/bin/${program}"
    '' { preferLocalBuild = true; }) { } { mainProgram = program; };

  # Both copy scripts of an image.
  copyScripts = name: source: imageName: imageTag: {
    copyTo = copyToScript name source;
    copyToRegistry = copyToRegistryScript name source imageName imageTag;
  };

  run =
    name: script: extra:
    derivation (
      {
        inherit name system;
        builder = "${bash}/bin/bash";
        args = [ "-euc" (script + holdLog) ];
        PATH = toolPath;
      }
      // extra
    );

  # A derivation run by a helper step (`stevedore COMMAND`, reading the structured
  # attributes) under bash, so the log is held open (holdLog).
  helperStep =
    name: command: attrs:
    derivation (
      {
        inherit name system;
        builder = "${bash}/bin/bash";
        args = [ "-ec" ("${helper} ${command}" + holdLog) ];
        PATH = toolPath;
        __structuredAttrs = true;
      }
      // attrs
    );

  streamLayeredImage = makeOverridable (
    {
      name,
      tag ? null,
      fromImage ? null,
      contents ? [ ],
      config ? { },
      architecture ? defaultArchitecture,
      variant ? defaultVariant,
      created ? "1970-01-01T00:00:01Z",
      mtime ? "1970-01-01T00:00:01Z",
      uid ? 0,
      gid ? 0,
      uname ? "root",
      gname ? "root",
      maxLayers ? 100,
      extraCommands ? "",
      fakeRootCommands ? "",
      enableFakechroot ? false,
      includeStorePaths ? true,
      includeNixDB ? false,
      passthru ? { },
      meta ? { },
      layeringPipeline ? null,
      debug ? false,
      # Compute every store layer's diff_id in the conf step (reading the closure once,
      # in parallel), so that streaming only copies bytes. false: the stream hashes.
      precomputeDigests ? true,
      # Build every store layer by its own derivation (named by its first store path,
      # not by the image), so Nix caches layers, substitutes them from binary caches,
      # builds them on remote builders, and shares them between images with the same
      # layer. The image bytes are the same. The plan is read back from the conf with
      # import-from-derivation.
      layerDerivations ? false,
    }:
    assert
      layeringPipeline == null && !(maxLayers > 1)
      -> throw "the maxLayers argument of dockerTools.buildLayeredImage function must be greather than 1 (current value: ${toString maxLayers})";
    assert enableFakechroot -> proot != null || throw "stevedore: enableFakechroot needs proot";
    assert layerDerivations -> mtime != "now" || throw "stevedore: layerDerivations needs a fixed mtime (in docker image ${name})";
    assert fakeRootCommands != "" -> fakeroot != null || throw "stevedore: fakeRootCommands needs fakeroot";
    let
      baseName = baseNameOf name;
      contentsList = if isList contents then contents else [ contents ];

      baseJson = run "${baseName}-base.json" ''cp "$jsonPath" "$out"'' {
        json = toJSON {
          inherit config architecture variant;
          os = "linux";
        };
        passAsFile = [ "json" ];
      };

      # With includeNixDB the layer also gets the Nix database of the contents' closure
      # (nixpkgs' mkDbExtraCommand, run before extraCommands).
      customisationLayer = derivation {
        name = "${baseName}-customisation-layer";
        inherit system storeDir extraCommands fakeRootCommands enableFakechroot hostPaths includeNixDB shellPath;
        exportReferencesGraph.dbGraph = if includeNixDB then contentsList else [ ];
        builder = "${bash}/bin/bash";
        args = [ ./customisation-layer.sh ];
        __structuredAttrs = true;
        PATH = toolPath;
        contents = contentsList;
        useFakeroot = fakeroot != null;
      };

      closureRoots = if includeStorePaths then [ baseJson customisationLayer ] else [ ];

      plannedConf = helperStep "${baseName}-conf.json" "nix-conf" {
        inherit storeDir fromImage maxLayers layeringPipeline tag uid gid uname gname;
        inherit created mtime baseJson customisationLayer debug;
        precomputeDigests = precomputeDigests && !layerDerivations;
        exportReferencesGraph.graph = closureRoots;
        excludePaths = [ baseJson customisationLayer ];
        imageName = toLower name;
        preferLocalBuild = true;
      };

      # With layerDerivations: one derivation per planned store layer (src/derivation/
      # layer.rs), each depending on its own paths only (their context is restored one
      # by one), and the conf again with their outputs.
      planned = fromJSON (unsafeDiscardStringContext (readFile plannedConf));
      withContext = p: appendContext p { ${p}.path = true; };
      storeLayer =
        paths:
        derivation {
          name = "docker-layer-${substring 33 40 (baseNameOf (head paths))}";
          inherit system uid gid uname gname;
          inherit (planned) mtime;
          builder = helper;
          args = [ "nix-layer" ];
          __structuredAttrs = true;
          paths = map withContext paths;
          compressor = "none";
        };
      conf =
        if !layerDerivations then
          plannedConf
        else
          helperStep "${baseName}-conf.json" "nix-conf-layers" {
            baseConf = plannedConf;
            layers = storeLayers;
            preferLocalBuild = true;
          };
      storeLayers = map storeLayer planned.store_layers;

      imageTag =
        if tag != null then tag else substring 0 32 (baseNameOf (unsafeDiscardStringContext conf.outPath));

      stream = run "stream-${baseName}" ''
        printf '#!%s\nexec %s %s "$@"\n' ${bash}/bin/bash ${streamScript} ${conf} > "$out"
        chmod +x "$out"
      '' { preferLocalBuild = true; };
    in
    finish (stream // { imageName = toLower name; inherit conf streamScript; }) (
      passthru
      // {
        inherit imageTag conf streamScript;
        isExe = true;
      }
      // (if layerDerivations then { inherit storeLayers; } else { })
      // copyScripts baseName conf (toLower name) imageTag
    ) meta
  );

  buildLayeredImage = makeOverridable (
    {
      name,
      compressor ? "gz",
      meta ? { },
      ...
    }@args:
    let
      stream = streamLayeredImage (removeAttrs args [ "compressor" "meta" ]);
      ext = compressorExt name compressor;
      image = run "${baseNameOf name}.tar${ext}" ''
        stevedore build-layered ${stream.conf} --compressor ${compressor} -o "$out"
      '' { };
    in
    finish (image // { inherit (stream) imageName; }) (
      {
        inherit (stream) imageTag copyTo copyToRegistry;
        inherit stream;
      }
      // (if stream ? storeLayers then { inherit (stream) storeLayers; } else { })
    ) meta
  );
  # A store file holding `text` (which may refer to store paths, unlike builtins.toFile).
  writeText =
    name: text:
    run name ''cp "$textPath" "$out"'' {
      inherit text;
      passAsFile = [ "text" ];
    };

  # A bash build with structured attributes: `script` runs with them sourced and $out set.
  runStructured =
    name: script: attrs:
    derivation (
      {
        inherit name system script;
        builder = "${bash}/bin/bash";
        args = [ "-euc" (". \"$NIX_BUILD_TOP/.attrs.sh\"; out=\${outputs[out]}; eval \"$script\"" + holdLog) ];
        PATH = toolPath;
        __structuredAttrs = true;
      }
      // attrs
    );

  # A store path holding `links` ({ "path/in/image" = target; }) as symlinks.
  linkTree =
    name: links:
    runStructured name ''
      for link in "''${!links[@]}"; do
        mkdir -p "$out/$(dirname "$link")"
        ln -s "''${links[$link]}" "$out/$link"
      done
    '' { inherit links; };

  # fakeNss: /etc/passwd, /etc/group (root and nobody, extra lines between),
  # /etc/nsswitch.conf and an empty /var/empty, overridable as nixpkgs' is.
  fakeNss = makeOverridable (
    {
      extraPasswdLines ? [ ],
      extraGroupLines ? [ ],
    }:
    runStructured "fake-nss" ''
      mkdir -p "$out/etc" "$out/var/empty"
      printf '%s\n' "root:x:0:0:root user:/var/empty:/bin/sh" ''${extraPasswdLines[@]+"''${extraPasswdLines[@]}"} \
        "nobody:x:65534:65534:nobody:/var/empty:/bin/sh" > "$out/etc/passwd"
      printf '%s\n' "root:x:0:" ''${extraGroupLines[@]+"''${extraGroupLines[@]}"} "nobody:x:65534:" > "$out/etc/group"
      printf 'hosts: files dns\n' > "$out/etc/nsswitch.conf"
    '' { inherit extraPasswdLines extraGroupLines; }
  ) { };

  # exportImage: the image's layers flattened into one root filesystem tar (no VM).
  exportImage =
    {
      fromImage,
      fromImageName ? null,
      fromImageTag ? null,
      diskSize ? 1024,
      name ? fromImage.name,
    }:
    let
      select =
        if fromImageName != null && fromImageTag != null then "--image ${fromImageName}:${fromImageTag}" else "";
    in
    run name ''stevedore export-image ${fromImage} ${select} -o "$out"'' { };
  # buildImage: one layer (copyToRoot, extraCommands) on top of fromImage, in nixpkgs'
  # Docker 1.0 format (`<id>/{VERSION,json,layer.tar}`, TarSum checksums, repositories).
  buildImage = makeOverridable (
    args@{
      name,
      tag ? null,
      fromImage ? null,
      fromImageName ? null,
      fromImageTag ? null,
      copyToRoot ? null,
      keepContentsDirlinks ? false,
      config ? null,
      architecture ? defaultArchitecture,
      variant ? defaultVariant,
      extraCommands ? "",
      uid ? 0,
      gid ? 0,
      runAsRoot ? null,
      diskSize ? 1024,
      buildVMMemorySize ? 512,
      created ? "1970-01-01T00:00:01Z",
      compressor ? "gz",
      includeNixDB ? false,
      contents ? null,
      meta ? { },
    }:
    assert contents != null && copyToRoot != null -> throw "in docker image ${name}: You can not specify both contents and copyToRoot.";
    assert runAsRoot != null -> fakeroot != null && proot != null || throw "stevedore: runAsRoot needs fakeroot and proot (in docker image ${name})";
    let
      baseName = baseNameOf name;
      ext = compressorExt name compressor;
      rootContents =
        if contents != null then
          builtins.trace "warning: in docker image ${name}: The contents parameter is deprecated. Change to copyToRoot if the contents are designed to be copied to the root filesystem, such as when you use `buildEnv` or similar between contents and your packages. Use copyToRoot = buildEnv { ... }; or similar if you intend to add packages to /bin." contents
        else
          copyToRoot;
      rootList = if rootContents == null then [ ] else if isList rootContents then rootContents else [ rootContents ];

      # The image's JSON as Nix writes it; a top-level created = "now" becomes the build
      # time (UTC, whole seconds), as nixpkgs' `jq .created = …` does.
      baseJson = helperStep "${baseName}-config.json" "nix-base-json" {
        json = toJSON {
          inherit created config architecture variant;
          preferLocalBuild = true;
          os = "linux";
        };
      };

      # mkPureLayer, or mkRootLayer when there is a runAsRoot script (run without a VM).
      layer = derivation (
        {
          name = "docker-layer-${baseName}";
          inherit system storeDir extraCommands uid gid keepContentsDirlinks includeNixDB baseJson shellPath;
          builder = "${bash}/bin/bash";
          args = [ (if runAsRoot == null then ./pure-layer.sh else ./root-layer.sh) ];
          __structuredAttrs = true;
          PATH = toolPath;
          copyToRoot = rootList;
          exportReferencesGraph.dbGraph = if includeNixDB then rootList else [ ];
        }
        // (
          if runAsRoot == null then
            { }
          else
            {
              inherit runAsRoot fromImage hostPaths;
              coreutilsBin = "${coreutils}/bin";
            }
        )
      );

      result = helperStep "docker-image-${baseName}.tar${ext}" "nix-build-image" {
        inherit storeDir fromImage tag compressor layer baseJson;
        imageName = toLower name;
        exportReferencesGraph.closure = [ layer ];
      };

      imageTag =
        if tag != null then tag else substring 0 32 (baseNameOf (unsafeDiscardStringContext result.outPath));
    in
    finish (result // { inherit imageTag; imageName = toLower name; }) (
      {
        buildArgs = args;
        inherit layer imageTag;
      }
      // copyScripts baseName "docker-archive:${result}" (toLower name) imageTag
    ) meta
  );

  binSh = linkTree "bin-sh" { "bin/sh" = "${bash}/bin/bash"; };
  usrBinEnv = linkTree "usr-bin-env" { "usr/bin/env" = "${coreutils}/bin/env"; };

  # devShellTools.valueToString: how a derivation attribute becomes an environment value.
  valueToString =
    v:
    if builtins.isList v then
      concatStringsSep " " (map valueToString v)
    else if builtins.isBool v then
      (if v then "1" else "")
    else if v == null then
      ""
    else
      toString v;

  # streamNixShellImage: an image that starts a nix-shell-like environment for `drv`
  # (its build environment, a `buildDerivation` command, the nixbld user). The parts
  # that come from nixpkgs' stdenv (setup, hooks) are used when drv has them.
  streamNixShellImage =
    {
      drv,
      name ? drv.name + "-env",
      tag ? null,
      uid ? 1000,
      gid ? 1000,
      homeDirectory ? "/build",
      shell ? "${bash}/bin/bash",
      command ? null,
      run ? null,
    }:
    assert !(drv.drvAttrs.__structuredAttrs or false)
      || throw "streamNixShellImage: Does not work with the derivation ${drv.name} because it uses __structuredAttrs";
    assert command == null || run == null || throw "streamNixShellImage: Can't specify both command and run";
    let
      attrs = drv.drvAttrs;
      buildDerivation = runStructured "build-derivation" ''
        mkdir -p "$out/bin"
        { printf '#!%s\n' "${shell}"; printf 'exec'; printf ' %q' "''${argv[@]}"; printf '\n'; } > "$out/bin/buildDerivation"
        chmod +x "$out/bin/buildDerivation"
      '' { argv = [ (valueToString attrs.builder) ] ++ map valueToString (attrs.args or [ ]); };
      staticPath = "${dirOf shell}:${buildDerivation}/bin";
      passAsFile = attrs.passAsFile or [ ];
      inputEnv = builtins.listToAttrs (
        map (n: {
          name = if builtins.elem n passAsFile then "${n}Path" else n;
          value =
            if builtins.elem n passAsFile then
              "${writeText "passAsFile-${n}" (valueToString attrs.${n})}"
            else
              valueToString attrs.${n};
        }) (builtins.filter (n: !(builtins.elem n [ "args" "passAsFile" "__ignoreNulls" ])) (attrNames attrs))
      );
      outputEnv = builtins.listToAttrs (
        map (o: { name = o; value = unsafeDiscardStringContext drv.${o}.outPath; }) (drv.outputs or [ "out" ])
      );
      rcfile = writeText "nix-shell-rc" ''
        unset PATH
        dontAddDisableDepTrack=1
        [ -e "$stdenv/setup" ] && source "$stdenv/setup"
        PATH=${staticPath}:"$PATH"
        SHELL=${shell}
        BASH=${shell}
        set +e
        [ -n "$PS1" -a -z "$NIX_SHELL_PRESERVE_PROMPT" ] && PS1='\n\[\033[1;32m\][nix-shell:\w]\$\[\033[0m\] '
        if [ "$(type -t runHook)" = function ]; then
          runHook shellHook
        fi
        unset NIX_ENFORCE_PURITY
        shopt -u nullglob
        shopt -s execfail
        ${if command != null || run != null then "${if command != null then command else ""}\n${if run != null then run else ""}\nexit" else ""}
      '';
      buildDir = "/build";
      envVars =
        {
          PATH = staticPath;
          HOME = homeDirectory;
          NIX_STORE = storeDir;
          NIX_BUILD_CORES = "1";
        }
        // (
          if cacert != null then
            {
              SSL_CERT_FILE = "${cacert}/etc/ssl/certs/ca-bundle.crt";
              NIX_SSL_CERT_FILE = "${cacert}/etc/ssl/certs/ca-bundle.crt";
            }
          else
            { }
        )
        // inputEnv
        // outputEnv
        // {
          NIX_BUILD_TOP = buildDir;
          TMPDIR = buildDir;
          TEMPDIR = buildDir;
          TMP = buildDir;
          TEMP = buildDir;
          PWD = buildDir;
          TERM = "xterm-256color";
        };
    in
    streamLayeredImage {
      inherit name tag;
      contents = [
        binSh
        usrBinEnv
        (fakeNss.override {
          extraPasswdLines = [ "nixbld:x:${toString uid}:${toString gid}:Build user:${homeDirectory}:/noshell" ];
          extraGroupLines = [ "nixbld:!:${toString gid}:" ];
        })
      ];
      fakeRootCommands = ''
        mkdir -p ./nix/store ./nix/var/nix ./etc/nix .${buildDir} .${homeDirectory}
        chown -R ${toString uid}:${toString gid} ./nix ./etc/nix .${buildDir} .${homeDirectory}
      '';
      config = {
        Cmd = if run == null then [ shell "--rcfile" "${rcfile}" ] else [ shell "${rcfile}" ];
        WorkingDir = buildDir;
        Env = map (n: "${n}=${envVars.${n}}") (attrNames envVars);
        User = "${toString uid}:${toString gid}";
      };
    };

  buildNixShellImage =
    {
      drv,
      compressor ? "gz",
      ...
    }@args:
    let
      stream = streamNixShellImage (removeAttrs args [ "compressor" ]);
      ext = compressorExt drv.name compressor;
    in
    finish (run "${drv.name}-env.tar${ext}" ''
      stevedore build-layered ${stream.conf} --compressor ${compressor} -o "$out"
    '' { }) { inherit (stream) imageTag copyTo copyToRegistry; } { }
    // { inherit (stream) imageName; };

  # mergeImages: one archive holding all the images, compressed as the last one is.
  mergeImages =
    images:
    let
      merged = run "merge-docker-images" ''stevedore merge-images -o "$out" ${concatStringsSep " " (map toString images)}'' { };
    in
    finish merged { copyTo = copyToScript "merged" "docker-archive:${merged}"; } { };

  # nixpkgs' fixName: "/" and ":" are not allowed in store path names.
  fixName = replaceStrings [ "/" ":" ] [ "-" "-" ];

  # lib.fetchers.proxyImpureEnvVars (nixpkgs' current list, and the upper-case names
  # older releases also passed).
  proxyImpureEnvVars = [
    "http_proxy"
    "https_proxy"
    "ftp_proxy"
    "all_proxy"
    "no_proxy"
    "HTTP_PROXY"
    "HTTPS_PROXY"
    "FTP_PROXY"
    "ALL_PROXY"
    "NO_PROXY"
    "NIX_SSL_CERT_FILE"
  ];

  # pullImage: a fixed-output derivation holding the uncompressed docker archive of
  # imageName@imageDigest (the image for os/arch/variant if the digest names an index),
  # named finalImageName:finalImageTag. Its hash is given as `hash` (SRI) or `sha256`
  # (lib.fetchers.withNormalizedHash), or as outputHash [and outputHashAlgo]; `stevedore
  # prefetch IMAGE:TAG` prints the arguments.
  pullImage =
    {
      imageName,
      imageDigest,
      hash ? null,
      sha256 ? null,
      outputHash ? null,
      outputHashAlgo ? null,
      os ? "linux",
      arch ? defaultArchitecture,
      variant ? (if defaultVariant == "" then null else defaultVariant),
      finalImageName ? imageName,
      finalImageTag ? "latest",
      tlsVerify ? true,
      name ? fixName "docker-image-${finalImageName}-${finalImageTag}.tar",
    }:
    let
      given = filter (n: n != null) [
        (if hash != null then "hash" else null)
        (if sha256 != null then "sha256" else null)
        (if outputHash != null then "outputHash" else null)
      ];
      hashAttrs =
        if given == [ ] then
          throw "fetcher called without `hash`"
        else if builtins.length given > 1 then
          throw "fetcher called with mutually-incompatible arguments: ${concatStringsSep ", " given}"
        else if hash != null then
          { outputHash = hash; outputHashAlgo = "sha256"; }
        else if sha256 != null then
          { outputHash = sha256; outputHashAlgo = "sha256"; }
        else if outputHashAlgo != null then
          { inherit outputHash outputHashAlgo; }
        else
          { inherit outputHash; };
      pulled = derivation (
        {
          inherit name system imageDigest os arch tlsVerify;
          variant = if variant == null then "" else variant;
          # As nixpkgs sets them: the name and tag the archive gives the image.
          imageName = finalImageName;
          imageTag = finalImageTag;
          sourceImageName = imageName;
          sourceURL = "docker://${imageName}@${imageDigest}";
          destNameTag = "${finalImageName}:${finalImageTag}";
          builder = "${bash}/bin/bash";
          args = [ "-ec" ("${helper} nix-pull-image" + holdLog) ];
          PATH = toolPath;
          __structuredAttrs = true;
          outputHashMode = "flat";
          impureEnvVars = proxyImpureEnvVars;
          preferLocalBuild = true;
        }
        // hashAttrs
        // (if cacert != null then { SSL_CERT_FILE = "${cacert}/etc/ssl/certs/ca-bundle.crt"; } else { })
      );
    in
    finish pulled (copyScripts (fixName finalImageName) "docker-archive:${pulled}" finalImageName finalImageTag) { };

  # The `stevedore copy` source of an image: a layered or stream image's conf (no
  # archive is written first), or the docker archive of any other image.
  imageSource =
    image:
    if image ? conf then
      "${image.conf}"
    else if image ? stream && image.stream ? conf then
      "${image.stream.conf}"
    else
      "docker-archive:${image}";

  # imageIndex: one multi-platform image from per-platform images (each built with its
  # own `architecture`, e.g. one per system). The derivation is an OCI layout holding
  # the index, tagged `tag`; passthru.copyTo (`copy-to DEST [FLAGS]`) and
  # passthru.copyToRegistry (`copy-to-registry [FLAGS]`, to docker://NAME:TAG) copy it
  # straight from the images' sources. `--format docker` makes a Docker manifest list.
  imageIndex =
    {
      name,
      tag ? "latest",
      images,
      meta ? { },
    }:
    assert images != [ ] || throw "stevedore: imageIndex ${name} needs at least one image";
    let
      baseName = fixName (baseNameOf name);
      sources = concatStringsSep " " (map (i: "'${imageSource i}'") images);
      layout = run "${baseName}-index" ''stevedore copy ${sources} "oci:$out:${tag}"'' { };
    in
    finish (layout // { imageName = toLower name; imageTag = tag; }) {
      imageName = toLower name;
      imageTag = tag;
      copyTo = copyScript "${baseName}-index-copy-to" "copy-to" sources;
      copyToRegistry = copyScript "${baseName}-index-copy-to-registry" "copy-to-registry" "${sources} 'docker://${toLower name}:${tag}'";
    } meta;
in
{
  inherit streamLayeredImage buildLayeredImage buildImage exportImage fakeNss mergeImages;
  inherit streamNixShellImage buildNixShellImage;
  inherit pullImage imageIndex;
  buildImageWithNixDb = args: buildImage (args // { includeNixDB = true; });
  buildLayeredImageWithNixDb = args: buildLayeredImage (args // { includeNixDB = true; });

  inherit binSh usrBinEnv;
  caCertificates =
    let
      bundle =
        if cacert != null then "${cacert}/etc/ssl/certs/ca-bundle.crt" else throw "stevedore: caCertificates needs cacert";
    in
    linkTree "ca-certificates" {
      "etc/ssl/certs/ca-bundle.crt" = bundle;
      "etc/ssl/certs/ca-certificates.crt" = bundle;
      "etc/pki/tls/certs/ca-bundle.crt" = bundle;
    };

  # A shell snippet for runAsRoot-style scripts that sets up /etc/passwd, /etc/group,
  # shadow files and PAM for shadow's tools (nixpkgs' shadowSetup).
  shadowSetup = ''
    export PATH=${if shadow != null then "${shadow}/bin" else throw "stevedore: shadowSetup needs shadow"}:$PATH
    mkdir -p /etc/pam.d
    if [[ ! -f /etc/passwd ]]; then
      echo "root:x:0:0::/root:${bash}/bin/bash" > /etc/passwd
      echo "root:!x:::::::" > /etc/shadow
    fi
    if [[ ! -f /etc/group ]]; then
      echo "root:x:0:" > /etc/group
      echo "root:x::" > /etc/gshadow
    fi
    if [[ ! -f /etc/pam.d/other ]]; then
      cat > /etc/pam.d/other <<EOF
    account sufficient pam_unix.so
    auth sufficient pam_rootok.so
    password requisite pam_unix.so nullok yescrypt
    session required pam_unix.so
    EOF
    fi
    if [[ ! -f /etc/login.defs ]]; then
      touch /etc/login.defs
    fi
  '';
}
