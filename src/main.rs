//! The stevedore command line: flags and wiring only.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;
use stevedore::image::docker_archive::{self, Compressor};
use stevedore::image::{conf::Conf, layered, output};
use stevedore::log;
use stevedore::plan::{self, Algorithm};
use stevedore::store::Graph;
use stevedore::tar::gnu;
use stevedore::tar::sink::FdSink;

#[derive(Parser)]
#[command(
    name = "stevedore",
    version,
    about = "Fast, byte-compatible nixpkgs dockerTools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Split a closure graph into layers; prints nixpkgs' JSON list of lists.
    Plan {
        /// exportReferencesGraph JSON (a list, or `.attrs.json` holding one).
        graph: PathBuf,
        /// Key of the graph in an `.attrs.json` object.
        #[arg(long)]
        graph_key: Option<String>,
        #[arg(long, value_enum, default_value = "auto")]
        algorithm: Algorithm,
        /// Maximum number of store-path layers (the customisation layer comes on top);
        /// 100 by default, Nixery's 94 for `--algorithm nixery`.
        #[arg(long)]
        limit: Option<usize>,
        /// Popularity data for `--algorithm nixery`: a JSON object, store path name
        /// without hash → reference count (Nixery's popcount format).
        #[arg(long)]
        popularity: Option<PathBuf>,
        /// File listing store paths (one per line) to leave out of the output.
        #[arg(long)]
        exclude_file: Vec<PathBuf>,
        /// A store path to leave out of the output.
        #[arg(long)]
        exclude: Vec<String>,
        #[arg(long, default_value = "/nix/store")]
        store_dir: String,
        /// A layeringPipeline (JSON file) to run instead of --algorithm.
        #[arg(long)]
        pipeline: Option<PathBuf>,
    },
    /// Reference counts from closure graphs, as Nixery's popcount computes them from
    /// narinfos; prints a JSON object, name without hash → count, keys sorted.
    Popularity {
        /// exportReferencesGraph JSON files (a list, or `.attrs.json` holding one).
        #[arg(required = true)]
        graphs: Vec<PathBuf>,
        /// Key of the graph in an `.attrs.json` object.
        #[arg(long)]
        graph_key: Option<String>,
        #[arg(long, default_value = "/nix/store")]
        store_dir: String,
    },
    /// Write the docker archive a streamLayeredImage conf describes to stdout.
    StreamLayered {
        conf: PathBuf,
        /// Override the image's RepoTags.
        #[arg(long, short = 't', visible_alias = "repo_tag")]
        repo_tag: Option<String>,
        /// Hash every layer while writing it and fail, naming the layer, if a diff_id
        /// recorded in advance (in the conf, the base image) does not match its bytes.
        #[arg(long)]
        verify: bool,
    },
    /// Write that docker archive to a file, layers built in parallel.
    BuildLayered {
        conf: PathBuf,
        #[arg(long, short = 'o')]
        output: PathBuf,
        #[arg(long, value_enum, default_value = "none")]
        compressor: Compressor,
        #[arg(long, short = 't', visible_alias = "repo_tag")]
        repo_tag: Option<String>,
        /// As stream-layered's --verify.
        #[arg(long)]
        verify: bool,
    },
    /// Copy an image: SOURCE is a stream conf (CONF.json), docker-archive:PATH[:NAME:TAG],
    /// oci:DIR[:TAG], oci-archive:PATH[:TAG] or docker://HOST/REPO[:TAG|@DIGEST]; DEST is
    /// any of those but a conf. Several SOURCEs make an image index (manifest list).
    Copy(CopyArgs),
    /// Record every store layer's diff_id and size in a conf (`store_layer_digests`), so
    /// that streaming it only copies bytes.
    ConfDigests {
        conf: PathBuf,
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Archive a directory as nixpkgs' customisation layer (GNU tar format) into
    /// OUT/layer.tar and its sha256 into OUT/checksum.
    CustomisationLayer {
        dir: PathBuf,
        #[arg(long, short = 'o')]
        output: PathBuf,
        /// mtime of every entry (default: $SOURCE_DATE_EPOCH, else 315532800).
        #[arg(long)]
        mtime: Option<i64>,
        #[arg(long)]
        owner: Option<u64>,
        #[arg(long)]
        group: Option<u64>,
        /// Ownership saved by `fakeroot -s FILE`.
        #[arg(long)]
        fakeroot_state: Option<PathBuf>,
        /// Member name to leave out with its contents (e.g. ./proc).
        #[arg(long)]
        exclude: Vec<String>,
    },
    /// Join directories into OUT as nixpkgs' symlinkJoin does.
    SymlinkJoin {
        output: PathBuf,
        paths: Vec<PathBuf>,
    },
    /// Write the Nix database of a closure into ROOT (includeNixDB).
    NixDb {
        root: PathBuf,
        /// exportReferencesGraph JSON of the closure (a list, or `.attrs.json`).
        #[arg(long)]
        graph: PathBuf,
        #[arg(long)]
        graph_key: Option<String>,
        /// A path to link from nix/var/nix/gcroots/docker.
        #[arg(long)]
        gcroot: Vec<String>,
        /// registrationTime of every path (default: $SOURCE_DATE_EPOCH, else 315532800).
        #[arg(long)]
        registration_time: Option<i64>,
        #[arg(long, default_value = "/nix/store")]
        store_dir: String,
    },
    /// Print the Docker TarSum of a tar read from stdin (as nixpkgs' tarsum tool).
    Tarsum {
        #[arg(long, value_enum, default_value = "v1")]
        version: stevedore::tarsum::Version,
        /// A file whose bytes are hashed first (moby's `extra`, e.g. a legacy image json).
        #[arg(long)]
        extra: Option<PathBuf>,
    },
    /// Flatten a docker archive's layers into one root filesystem tar (exportImage).
    ExportImage {
        archive: PathBuf,
        #[arg(long, short = 'o')]
        output: PathBuf,
        /// The image to export, by one of its RepoTags (default: the first image).
        #[arg(long)]
        image: Option<String>,
        /// mtime of every entry (default: $SOURCE_DATE_EPOCH, else 315532800).
        #[arg(long)]
        mtime: Option<i64>,
    },
    /// Merge docker archives into one holding every image (mergeImages), compressed as
    /// the last input is.
    MergeImages {
        #[arg(long, short = 'o')]
        output: PathBuf,
        images: Vec<PathBuf>,
        /// mtime of every entry (default: $SOURCE_DATE_EPOCH, else 315532800).
        #[arg(long)]
        mtime: Option<i64>,
    },
    /// Copy directories' contents into DEST as buildImage's copyToRoot (rsync -a -k).
    CopyToRoot {
        dest: PathBuf,
        items: Vec<PathBuf>,
        /// rsync -K: keep symlinks to directories in DEST (default: -k).
        #[arg(long)]
        keep_dirlinks: bool,
    },
    /// buildImage's layer: OUT/layer.tar of DIR, OUT/json (base json + TarSum), OUT/VERSION.
    ImageLayer {
        dir: PathBuf,
        #[arg(long, short = 'o')]
        output: PathBuf,
        #[arg(long)]
        base_json: PathBuf,
        #[arg(long, default_value_t = 0)]
        uid: u64,
        #[arg(long, default_value_t = 0)]
        gid: u64,
        /// mtime of every entry (default: $SOURCE_DATE_EPOCH, else 315532800).
        #[arg(long)]
        mtime: Option<i64>,
        /// Keep the files' own owners (as seen by fakeroot) instead of --uid/--gid.
        #[arg(long)]
        keep_owners: bool,
    },
    /// Unpack a docker archive's root filesystem into DEST (layers and whiteouts applied).
    UnpackImage {
        archive: PathBuf,
        dest: PathBuf,
        #[arg(long)]
        image: Option<String>,
    },
    /// Record the state of every path under DIR (before a runAsRoot script).
    Snapshot {
        dir: PathBuf,
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Write what changed under DIR since SNAPSHOT as an overlay upper directory.
    Changes {
        dir: PathBuf,
        #[arg(long)]
        snapshot: PathBuf,
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Builder of nix/default.nix's conf derivation (reads .attrs.json).
    #[command(hide = true)]
    NixConf,
    /// Builder of nix/default.nix's conf with layer derivations (reads .attrs.json).
    #[command(hide = true)]
    NixConfLayers,
    /// Builder of nix/default.nix's buildImage result (reads .attrs.json).
    #[command(hide = true)]
    NixBuildImage,
    /// Builder of nix/default.nix's buildImage baseJson (reads .attrs.json).
    #[command(hide = true)]
    NixBaseJson,
    /// Builder of nix/default.nix's pullImage (reads .attrs.json).
    #[command(hide = true)]
    NixPullImage,
    /// Builder of nix/nixery.nix's derivations (reads .attrs.json; `step` says which).
    #[command(hide = true)]
    NixNixery,
    /// Builder of one layer derivation (reads .attrs.json).
    #[command(hide = true)]
    NixLayer,
    /// Serve images named by their packages (`shell/hello:latest`), built by Nix on first
    /// request, over the registry pull API, as Nixery does.
    Serve(ServeArgs),
    /// Print pullImage's arguments for IMAGE[:TAG] (docker://'s names, without it): the
    /// digest the tag names now and the hash of the archive pullImage writes.
    Prefetch {
        image: String,
        #[command(flatten)]
        platform: PlatformArgs,
        /// Check the registry's TLS certificate (false: also allow plain http).
        #[arg(long, action = clap::ArgAction::Set)]
        tls_verify: Option<bool>,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        // One line, whatever the input put in the message.
        eprintln!("stevedore: {}", format!("{e:#}").replace('\n', "\\n"));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let started = Instant::now();
    match cli.command {
        Command::Plan {
            graph,
            graph_key,
            algorithm,
            limit,
            popularity,
            exclude_file,
            exclude,
            store_dir,
            pipeline,
        } => {
            let g = Graph::load(&graph, graph_key.as_deref(), &store_dir)?;
            let skip = excluded(exclude, &exclude_file)?;
            if popularity.is_some() && (algorithm != Algorithm::Nixery || pipeline.is_some()) {
                bail!("--popularity is only used by --algorithm nixery");
            }
            let layers = match pipeline {
                Some(file) => {
                    let spec = serde_json::Value::String(file.to_string_lossy().into_owned());
                    plan::pipeline::run(&g, &skip, &spec)?
                }
                None if algorithm == Algorithm::Nixery => {
                    let pop = match popularity {
                        Some(file) => plan::nixery::read_popularity(&file)?,
                        None => Default::default(),
                    };
                    let roots = nixery_roots(&graph, graph_key.as_deref(), &g)?;
                    let budget = limit.unwrap_or(plan::nixery::BUDGET);
                    plan::nixery::plan(&g, &roots, &pop, &skip, budget)
                }
                None => plan::plan(algorithm, &g, &skip, limit.unwrap_or(100)),
            };
            println!("{}", plan::to_json(&layers));
            Ok(())
        }
        Command::Popularity {
            graphs,
            graph_key,
            store_dir,
        } => {
            let loaded = graphs
                .iter()
                .map(|f| Graph::load(f, graph_key.as_deref(), &store_dir))
                .collect::<Result<Vec<_>>>()?;
            let counts = plan::nixery::popularity(&loaded);
            println!("{}", serde_json::to_string(&counts)?);
            Ok(())
        }
        Command::StreamLayered {
            conf,
            repo_tag,
            verify,
        } => {
            let (image, _base) = image_of(&conf, repo_tag.as_deref())?;
            let stdout = std::io::stdout();
            let mut out = FdSink::stream(&stdout);
            docker_archive::write_stream(&image, &mut out, verify)?;
            Ok(())
        }
        Command::BuildLayered {
            conf,
            output,
            compressor,
            repo_tag,
            verify,
        } => {
            let (image, _base) = image_of(&conf, repo_tag.as_deref())?;
            output::write_atomically(&output, |file| {
                docker_archive::write_compressed(&image, file, compressor, verify)
            })?;
            let detail = format!(
                "{}, {}",
                log::count(image.layers.len(), "layer"),
                log::file_size(&output)
            );
            log::built(&output, &detail, started);
            Ok(())
        }
        Command::Copy(args) => copy_command(args, started),
        Command::ConfDigests { conf, output } => {
            let text =
                std::fs::read(&conf).with_context(|| format!("{}: cannot read", conf.display()))?;
            let mut value: serde_json::Value = serde_json::from_slice(&text)
                .with_context(|| format!("{}: malformed conf", conf.display()))?;
            let hashed = layered::add_digests(&mut value, &conf)?;
            let text = serde_json::to_string_pretty(&value)? + "\n";
            output::write_bytes(&output, text.as_bytes())?;
            let detail = match hashed {
                Some(bytes) => format!("diff_ids of {} recorded", log::size(bytes)),
                None => "mtime is \"now\": nothing recorded".to_string(),
            };
            log::built(&output, &detail, started);
            Ok(())
        }
        Command::CustomisationLayer {
            dir,
            output,
            mtime,
            owner,
            group,
            fakeroot_state,
            exclude,
        } => {
            let mtime = mtime.unwrap_or_else(source_date_epoch);
            let faked = fakeroot_state
                .map(|f| gnu::read_fakeroot_state(&f))
                .transpose()?;
            let opts = gnu::GnuOptions {
                mtime,
                owner,
                group,
                faked,
                exclude: exclude.into_iter().map(String::into_bytes).collect(),
                names: false,
            };
            stevedore::image::output::customisation_layer(&dir, &output, &opts)?;
            let size = log::file_size(&output.join("layer.tar"));
            log::built(&output, &format!("customisation layer, {size}"), started);
            Ok(())
        }
        Command::NixConf => stevedore::derivation::conf::run(),
        Command::NixConfLayers => stevedore::derivation::conf::run_with_layers(),
        Command::NixBuildImage => stevedore::derivation::build_image::run(),
        Command::NixPullImage => stevedore::derivation::pull_image::run(),
        Command::NixNixery => stevedore::derivation::nixery::run(),
        Command::NixLayer => stevedore::derivation::layer::run(),
        Command::Prefetch {
            image,
            platform,
            tls_verify,
        } => {
            let want = platform.want();
            let text = stevedore::derivation::pull_image::prefetch(&image, want, tls_verify)?;
            print!("{text}");
            Ok(())
        }
        Command::NixBaseJson => stevedore::derivation::base_json::run(),
        Command::CopyToRoot {
            dest,
            items,
            keep_dirlinks,
        } => {
            let refs: Vec<&Path> = items.iter().map(PathBuf::as_path).collect();
            stevedore::contents::copy_to_root(&dest, &refs, keep_dirlinks)
        }
        Command::ImageLayer {
            dir,
            output,
            base_json,
            uid,
            gid,
            mtime,
            keep_owners,
        } => {
            let mtime = mtime.unwrap_or_else(source_date_epoch);
            let owner = (!keep_owners).then_some((uid, gid));
            stevedore::image::legacy_layer::write(&dir, &base_json, owner, mtime, &output)?;
            let size = log::file_size(&output.join("layer.tar"));
            log::built(&output, &format!("layer, {size}"), started);
            Ok(())
        }
        Command::UnpackImage {
            archive,
            dest,
            image,
        } => stevedore::image::flatten::unpack(&archive, image.as_deref(), &dest),
        Command::Snapshot { dir, output } => {
            use stevedore::image::changes;
            changes::save(&changes::snapshot(&dir)?, &output)
        }
        Command::Changes {
            dir,
            snapshot,
            output,
        } => {
            use stevedore::image::changes;
            changes::write_changes(&dir, &changes::load(&snapshot)?, &output)
        }
        Command::MergeImages {
            output,
            images,
            mtime,
        } => {
            let mtime = mtime.unwrap_or_else(source_date_epoch);
            let plain = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
            let mut w = std::io::BufWriter::new(plain.as_file());
            let compressor = stevedore::image::merge::merge(&images, mtime, 0o022, &mut w)?;
            std::io::Write::flush(&mut w)?;
            drop(w);
            output::write_atomically(&output, |file| {
                let mut input = std::fs::File::open(plain.path())?;
                docker_archive::compress_file(&mut input, file, compressor)
            })?;
            let detail = format!(
                "{} archives merged, {}",
                images.len(),
                log::file_size(&output)
            );
            log::built(&output, &detail, started);
            Ok(())
        }
        Command::ExportImage {
            archive,
            output,
            image,
            mtime,
        } => {
            let mtime = mtime.unwrap_or_else(source_date_epoch);
            let flat = stevedore::image::flatten::load(&archive, image.as_deref())?;
            output::write_atomically(&output, |file| {
                let mut out = std::io::BufWriter::new(file);
                flat.write(mtime, &mut out)?;
                std::io::Write::flush(&mut out).context("cannot write output")
            })?;
            let detail = format!("root filesystem, {}", log::file_size(&output));
            log::built(&output, &detail, started);
            Ok(())
        }
        Command::Tarsum { version, extra } => {
            let extra = extra
                .map(|f| std::fs::read(&f).with_context(|| format!("{}: cannot read", f.display())))
                .transpose()?;
            let stdin = std::io::stdin();
            match stevedore::tarsum::of_stream(&mut stdin.lock(), version, extra.as_deref()) {
                Ok(sum) => println!("{sum}"),
                // As nixpkgs' tarsum tool: the error on stdout, exit status 1.
                Err(e) => {
                    println!("{e:#}");
                    std::process::exit(1);
                }
            }
            Ok(())
        }
        Command::NixDb {
            root,
            graph,
            graph_key,
            gcroot,
            registration_time,
            store_dir,
        } => {
            let g = Graph::load(&graph, graph_key.as_deref(), &store_dir)?;
            let time = registration_time.unwrap_or_else(source_date_epoch);
            stevedore::derivation::nix_db::write(&root, &g, &gcroot, time)
                .with_context(|| graph.display().to_string())
        }
        Command::Serve(args) => stevedore::serve::run(args.options()),
        Command::SymlinkJoin { output, paths } => {
            let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
            stevedore::contents::symlink_join(&output, &refs)
        }
    }
}

/// The image a streamer conf describes (and what keeps its base image readable).
fn image_of(
    conf: &Path,
    repo_tag: Option<&str>,
) -> Result<(
    stevedore::image::Image,
    Option<stevedore::image::base::BaseImage>,
)> {
    let loaded = Conf::load(conf)?;
    layered::from_conf(&loaded, repo_tag).with_context(|| conf.display().to_string())
}

/// The top-level roots an `.attrs.json` graph file declares (exportReferencesGraph),
/// as indices into `g`; none for a plain list.
fn nixery_roots(file: &Path, key: Option<&str>, g: &Graph) -> Result<Vec<usize>> {
    let text = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&text)?;
    let key = match (key, &value) {
        (Some(k), _) => k.to_string(),
        (None, serde_json::Value::Object(map)) => map
            .get("exportReferencesGraph")
            .and_then(|e| e.as_object())
            .and_then(|e| {
                if e.contains_key("graph") || e.len() != 1 {
                    Some("graph".to_string())
                } else {
                    e.keys().next().cloned()
                }
            })
            .unwrap_or_default(),
        _ => return Ok(Vec::new()),
    };
    plan::nixery::declared_roots(&value, &key)
        .iter()
        .map(|p| {
            g.find(p)
                .with_context(|| format!("{}: root {p} is not in the graph", file.display()))
        })
        .collect()
}

/// The excluded paths: given directly, and listed one per line in files.
fn excluded(paths: Vec<String>, files: &[PathBuf]) -> Result<HashSet<String>> {
    let mut skip: HashSet<String> = paths.into_iter().collect();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("{}: cannot read", f.display()))?;
        skip.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    Ok(skip)
}

/// $SOURCE_DATE_EPOCH, or nixpkgs' default (1980-01-01).
fn source_date_epoch() -> i64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(315_532_800)
}

/// Which image of a registry's index to read.
#[derive(clap::Args)]
struct PlatformArgs {
    /// The image's os (default linux).
    #[arg(long)]
    os: Option<String>,
    /// Its architecture (default this machine's).
    #[arg(long)]
    arch: Option<String>,
    /// Its variant.
    #[arg(long)]
    variant: Option<String>,
}

impl PlatformArgs {
    fn want(self) -> stevedore::registry::pull::Want {
        stevedore::registry::pull::Want {
            os: self.os,
            architecture: self.arch,
            variant: self.variant,
        }
    }
}

#[derive(clap::Args)]
struct CopyArgs {
    /// SOURCE... DEST
    #[arg(required = true, num_args = 2..)]
    locations: Vec<String>,
    /// none, gzip[:LEVEL] or zstd[:LEVEL] (default: none for docker-archive, gzip for OCI
    /// layouts and registries).
    #[arg(long)]
    compress: Option<String>,
    /// docker or oci media types, where the destination allows both.
    #[arg(long)]
    format: Option<String>,
    /// Check registries' TLS certificates (false: also allow plain http). Registries on
    /// localhost and 127.0.0.1 are reached over plain http by default.
    #[arg(long, action = clap::ArgAction::Set)]
    tls_verify: Option<bool>,
    /// USER:PASSWORD for the source registry (default: the auth files).
    #[arg(long)]
    src_creds: Option<String>,
    /// USER:PASSWORD for the destination registry (default: the auth files).
    #[arg(long)]
    dest_creds: Option<String>,
    #[command(flatten)]
    platform: PlatformArgs,
    /// A repository of the destination registry to mount blobs from (repeatable).
    #[arg(long)]
    mount_from: Vec<String>,
    /// Blobs transferred at once.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
}

fn creds(
    text: Option<&str>,
    flag: &str,
) -> Result<Option<stevedore::registry::credentials::Credentials>> {
    let Some(text) = text else { return Ok(None) };
    match text.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok(Some(stevedore::registry::credentials::Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })),
        _ => anyhow::bail!("{flag}: expected USER:PASSWORD"),
    }
}

fn copy_command(args: CopyArgs, started: Instant) -> Result<()> {
    use stevedore::copy;
    use stevedore::image::{compress::Compression, media::Format};
    use stevedore::registry::client;
    let (dest, sources) = args.locations.split_last().context("no destination")?;
    let to = copy::Location::dest(dest)?;
    let from = sources
        .iter()
        .map(|s| copy::Location::source(s))
        .collect::<Result<Vec<_>>>()?;
    let opts = copy::Options {
        compression: args
            .compress
            .as_deref()
            .map(Compression::parse)
            .transpose()
            .context("--compress")?,
        format: args
            .format
            .as_deref()
            .map(Format::parse)
            .transpose()
            .context("--format")?,
        src_registry: client::Options {
            tls_verify: args.tls_verify,
            credentials: creds(args.src_creds.as_deref(), "--src-creds")?,
        },
        registry: client::Options {
            tls_verify: args.tls_verify,
            credentials: creds(args.dest_creds.as_deref(), "--dest-creds")?,
        },
        want: args.platform.want(),
        mount_from: args.mount_from,
        jobs: args.jobs,
    };
    let reads = from
        .iter()
        .zip(sources)
        .map(|(f, text)| copy::read(f, &opts).with_context(|| text.clone()))
        .collect::<Result<Vec<_>>>()?;
    let layers: usize = reads.iter().map(|r| r.image.layers.len()).sum();
    let detail = match reads.len() {
        1 => log::count(layers, "layer"),
        n => format!(
            "an index of {}, {}",
            log::count(n, "image"),
            log::count(layers, "layer")
        ),
    };
    let result = match reads.len() {
        1 => {
            let read = reads.into_iter().next().expect("one source");
            let copy::Read { image, keep } = read;
            let result = copy::write(image, &to, &opts);
            drop(keep);
            result
        }
        _ => {
            let (images, keep): (Vec<_>, Vec<_>) =
                reads.into_iter().map(|r| (r.image, r.keep)).unzip();
            let result = copy::write_index(images, &to, &opts);
            drop(keep);
            result
        }
    };
    result.with_context(|| dest.clone())?;
    log::built(Path::new(dest), &detail, started);
    Ok(())
}

#[derive(clap::Args)]
struct ServeArgs {
    /// ADDR:PORT to listen on (port 0: any free port, printed at start-up).
    #[arg(long, required = true)]
    listen: String,
    /// The package set: nixpkgs!CHANNEL, git!URL[!REV] (the tag picks the revision when
    /// none is given) or path!DIR.
    #[arg(long, required = true)]
    pkgs: String,
    /// Where built images are recorded (and their gc roots kept).
    #[arg(long, required = true)]
    storage: PathBuf,
    /// docker://HOST/REPO: push built blobs there and redirect blob requests to it.
    #[arg(long)]
    upstream: Option<String>,
    /// Popularity data for the layering (Nixery's popcount format).
    #[arg(long)]
    popularity: Option<PathBuf>,
    /// An option for nix-build (repeatable).
    #[arg(long, num_args = 2, value_names = ["NAME", "VALUE"], action = clap::ArgAction::Append)]
    nix_option: Vec<String>,
    /// Compression of the layers (default: the Nix code's, gzip).
    #[arg(long, value_parser = ["gzip", "zstd", "none"])]
    compress: Option<String>,
    /// Seconds a build may take before nix-build is stopped and the request fails.
    #[arg(long, default_value_t = 600)]
    build_timeout: u64,
}

impl ServeArgs {
    fn options(self) -> stevedore::serve::Options {
        stevedore::serve::Options {
            listen: self.listen,
            pkgs: self.pkgs,
            storage: self.storage,
            upstream: self.upstream,
            popularity: self.popularity,
            nix_options: self
                .nix_option
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
            compress: self.compress,
            build_timeout: std::time::Duration::from_secs(self.build_timeout),
        }
    }
}
