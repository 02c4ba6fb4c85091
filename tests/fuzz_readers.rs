//! A fuzzing harness on stable Rust: every reader of stevedore is driven with mutated
//! real inputs (made by tests/hostile/seeds.rs) and generated ones, the real binary run
//! once per case under a 1 GiB address-space limit and a 10 s deadline. Every case must
//! end with exit 0 and a sane result, or exit 1 and exactly one `stevedore: ` line on
//! stderr naming the input file (and, for a layer inside an archive, the layer member),
//! with no output left behind; never a panic (101), a signal, or a timeout.
//! `registry_replies` pulls from a registry in the test (tests/hostile/registry.rs)
//! whose replies are mutated: its error must name the registry, and an image it copies
//! must be a whole layout, every layer decompressing to its diff_id.
//!
//! Time: `STEVEDORE_FUZZ_SECONDS` (default 40) of wall time for the whole file, shared
//! by the targets below, which run in parallel. A long local run:
//! `STEVEDORE_FUZZ_SECONDS=3600 cargo test --release --test fuzz_readers`.
//!
//! Replay: each case has its own seed. A failing case's input is saved as
//! `target/fuzz-failures/<target>-<seed>.<ext>`, with the command and the verdict in
//! `<target>-<seed>.txt`; `STEVEDORE_FUZZ_REPLAY=<target>:<seed>` runs that one case
//! again, and `STEVEDORE_FUZZ_SEED=<n>` fixes the seeds of a whole run.

mod hostile;

use hostile::mutate::{self, Rng};
use hostile::registry;
use hostile::seeds::{self, Seeds};
use hostile::{judge, run_limited, scratch, stevedore, Outcome, TIMEOUT};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How many tests below share the time budget.
const TARGETS: u32 = 12;
/// A target stops after this many failing cases (each one is saved).
const MAX_FAILURES: usize = 10;

/// What went wrong in a case: the input to save, the command, the verdict.
struct Failure {
    input: PathBuf,
    command: String,
    why: String,
}

/// Whether the case succeeded (exit 0), or what went wrong.
type CaseResult = Result<bool, Failure>;

#[test]
fn export_image() {
    campaign("export-image", |rng, dir, s| {
        let input = mutated_archive(rng, dir, s);
        let out = dir.join("out.tar");
        let mut cmd = stevedore();
        cmd.arg("export-image").arg(&input).arg("-o").arg(&out);
        let o = exec(&mut cmd, dir, None);
        verdict(&o, &[&input], || tar_file(&out), || absent(&out)).map_err(fail(&input, &cmd))
    });
}

#[test]
fn unpack_image() {
    campaign("unpack-image", |rng, dir, s| {
        let input = mutated_archive(rng, dir, s);
        let dest = dir.join("root");
        let mut cmd = stevedore();
        cmd.arg("unpack-image").arg(&input).arg(&dest);
        let o = exec(&mut cmd, dir, None);
        let unpacked = || check(dest.is_dir(), "no root directory");
        verdict(&o, &[&input], unpacked, || Ok(())).map_err(fail(&input, &cmd))
    });
}

#[test]
fn merge_images() {
    campaign("merge-images", |rng, dir, s| {
        let input = mutated_archive(rng, dir, s);
        let out = dir.join("merged.tar");
        let mut cmd = stevedore();
        cmd.arg("merge-images").arg("-o").arg(&out);
        if rng.chance(1, 2) {
            cmd.arg(&input).arg(&s.archive);
        } else {
            cmd.arg(&s.chained).arg(&input);
        }
        let o = exec(&mut cmd, dir, None);
        let written = || check(out.is_file(), "no output");
        verdict(&o, &[&input], written, || absent(&out)).map_err(fail(&input, &cmd))
    });
}

#[test]
fn from_image() {
    campaign("from-image", |rng, dir, s| {
        let input = mutated_archive(rng, dir, s);
        let conf = write_json(&dir.join("conf.json"), &s.conf_with_base(&input));
        layered(rng, dir, &conf, &[&input]).map_err(|(cmd, why)| Failure {
            input,
            command: cmd,
            why,
        })
    });
}

#[test]
fn build_image_base() {
    campaign("build-image-base", |rng, dir, s| {
        let input = mutated_archive(rng, dir, s);
        let out = dir.join("image");
        std::fs::write(
            dir.join(".attrs.json"),
            s.build_attrs(&out, Some(&input)).to_string(),
        )
        .unwrap();
        let mut cmd = nix_step("nix-build-image", dir);
        let o = exec(&mut cmd, dir, None);
        let written = || check(out.is_file(), "no output");
        verdict(&o, &[&input], written, || absent(&out)).map_err(fail(&input, &cmd))
    });
}

#[test]
fn layer_in_archive() {
    campaign("layer-in-archive", |rng, dir, s| {
        let (input, layer) = mutated_layer(rng, dir, s);
        let layer = stevedore::tar::reader::shown(layer.as_bytes());
        let (mut cmd, out) = match rng.below(4) {
            0 => {
                let out = dir.join("out.tar");
                let mut c = stevedore();
                c.arg("export-image").arg(&input).arg("-o").arg(&out);
                (c, out)
            }
            1 => {
                let mut c = stevedore();
                c.arg("unpack-image").arg(&input).arg(dir.join("root"));
                (c, dir.join("root"))
            }
            2 => {
                let out = dir.join("image");
                let attrs = s.build_attrs(&out, Some(&input));
                std::fs::write(dir.join(".attrs.json"), attrs.to_string()).unwrap();
                (nix_step("nix-build-image", dir), out)
            }
            _ => {
                let conf = write_json(&dir.join("conf.json"), &s.conf_with_base(&input));
                let out = dir.join("built.tar");
                let mut c = stevedore();
                c.arg("build-layered").arg(&conf).arg("-o").arg(&out);
                (c, out)
            }
        };
        let o = exec(&mut cmd, dir, None);
        let names = [input.to_str().unwrap(), layer.as_str()];
        let written = || check(out.exists(), "no output");
        let judged =
            judge(&o, &names).and_then(|ok| if ok { written().map(|_| ok) } else { Ok(ok) });
        judged.map_err(fail(&input, &cmd))
    });
}

#[test]
fn tarsum() {
    campaign("tarsum", |rng, dir, s| {
        let mut tars: Vec<&Path> = s.layer_tars.iter().map(PathBuf::as_path).collect();
        tars.push(&s.archive);
        let seed = std::fs::read(rng.pick(&tars)).unwrap();
        let donor = std::fs::read(rng.pick(&tars)).unwrap();
        let mut data = seed;
        mutate::tar_input(rng, &mut data, &donor);
        let input = dir.join("input.tar");
        std::fs::write(&input, &data).unwrap();
        let version = *rng.pick(&["v0", "v1", "dev"]);
        let mut cmd = stevedore();
        cmd.args(["tarsum", "--version", version]);
        let o = exec(&mut cmd, dir, Some(&input));
        tarsum_verdict(&o)
            .and_then(|ok| same_as_moby(&o, &input, version, dir).map(|_| ok))
            .map_err(fail(&input, &cmd))
    });
}

/// moby's own tarsum tool (built by scripts/deps.sh) gives the same line.
fn same_as_moby(o: &Outcome, input: &Path, version: &str, dir: &Path) -> Result<(), String> {
    let tool = seeds::target_dir().join("moby-tarsum/tarsum");
    if !tool.exists() {
        return Ok(());
    }
    let theirs = exec(Command::new(tool).arg(version), dir, Some(input));
    let same = (theirs.code, theirs.stdout_text()) == (o.code, o.stdout_text());
    if same || known_divergence(&theirs.stdout_text(), &o.stdout_text(), input) {
        return Ok(());
    }
    Err(format!(
        "moby's tarsum says {:?}, stevedore says {:?}",
        theirs.stdout_text(),
        o.stdout_text()
    ))
}

/// What stevedore's tarsum does not reproduce: Go's tar writer refusing a header moby
/// re-encodes, sparse files, the order of more than 12 entries with repeated paths, and
/// a global header with a record Go cannot merge (Go then keeps the records that came
/// before it in its random map order).
fn known_divergence(theirs: &str, ours: &str, input: &Path) -> bool {
    let data = std::fs::read(input).unwrap();
    let headers = mutate::headers(&data);
    let typed = |t: u8| headers.iter().filter(|&&at| data[at + 156] == t).count();
    let sparse = data.windows(10).any(|w| w == b"GNU.sparse") || typed(b'S') > 0;
    let bad_global = headers
        .iter()
        .any(|&at| data[at + 156] == b'g' && bad_record(&data[at + 512..]));
    theirs.starts_with("archive/tar: cannot encode header")
        || ours.starts_with("TarSum of an archive with repeated paths")
        || sparse
        || bad_global
}

/// Whether a PAX body holds a value mutate.rs makes that Go's mergePAX refuses.
fn bad_record(body: &[u8]) -> bool {
    let body = &body[..body.len().min(4096)];
    let bad: [&[u8]; 5] = [
        b"=1e400\n",
        b"=nan\n",
        b"size=1844",
        b"size=9999",
        b"uid=9999",
    ];
    bad.iter().any(|b| body.windows(b.len()).any(|w| w == *b))
}

#[test]
fn conf() {
    campaign("conf", |rng, dir, s| {
        let seed = if rng.chance(1, 2) {
            &s.conf
        } else {
            &s.conf_from
        };
        let input = mutated_json(rng, seed, &dir.join("conf.json"));
        layered(rng, dir, &input, &[&input]).map_err(|(cmd, why)| Failure {
            input,
            command: cmd,
            why,
        })
    });
}

#[test]
fn graph() {
    campaign("graph", |rng, dir, s| {
        let seeds = [&s.nix_graph, &s.nix_graph, &s.graph, &s.graph_attrs];
        let seed = *rng.pick(&seeds);
        let store_dir = match seed == &s.nix_graph {
            true => "/nix/store",
            false => &s.store_dir,
        };
        let input = mutated_json(rng, seed, &dir.join("graph.json"));
        let mut cmd = stevedore();
        let db = dir.join("root/nix/var/nix/db/db.sqlite");
        let nix_db = rng.chance(1, 3);
        if nix_db {
            cmd.arg("nix-db").arg(dir.join("root"));
            cmd.arg("--graph").arg(&input);
        } else {
            let algorithm = *rng.pick(&["auto", "popularity"]);
            let limit = *rng.pick(&["0", "1", "2", "3", "100"]);
            cmd.arg("plan").arg(&input);
            cmd.args(["--algorithm", algorithm, "--limit", limit]);
        }
        cmd.args(["--store-dir", store_dir]);
        let o = exec(&mut cmd, dir, None);
        let sane = || match nix_db {
            true => check(db.is_file(), "no database"),
            false => plan_output(&o),
        };
        verdict(&o, &[&input], sane, || Ok(())).map_err(fail(&input, &cmd))
    });
}

#[test]
fn attrs() {
    campaign("attrs", |rng, dir, s| {
        let out = dir.join("out");
        let base = rng.chance(1, 2).then_some(s.archive.as_path());
        let (step, attrs) = if rng.chance(1, 2) {
            ("nix-conf", s.conf_attrs(&out, base))
        } else {
            ("nix-build-image", s.build_attrs(&out, base))
        };
        let seed = write_json(&dir.join("seed.json"), &attrs);
        let input = mutated_json(rng, &seed, &dir.join(".attrs.json"));
        let mut cmd = nix_step(step, dir);
        let o = exec(&mut cmd, dir, None);
        if cannot_write_output(&o, &input) {
            return Ok(false);
        }
        let written = || declared_output(&input, dir);
        verdict(&o, &[&input], written, || absent(&out)).map_err(fail(&input, &cmd))
    });
}

/// Whether a step failed writing the output its (mutated) attributes name: the error
/// then names that output rather than the attributes.
fn cannot_write_output(o: &Outcome, attrs: &Path) -> bool {
    let declared = std::fs::read(attrs)
        .ok()
        .and_then(|t| serde_json::from_slice::<Value>(&t).ok())
        .and_then(|a| a["outputs"]["out"].as_str().map(String::from));
    let Some(out) = declared else {
        return false;
    };
    let line = o.stderr.trim_end();
    o.code == Some(1)
        && line.lines().count() == 1
        && line.starts_with("stevedore: ")
        && line.contains(out.trim_start_matches("./"))
}

#[test]
fn base_json() {
    campaign("base-json", |rng, dir, s| {
        let input = mutated_json(rng, &s.base_json, &dir.join("base.json"));
        let out = dir.join("layer");
        let mut cmd = stevedore();
        cmd.arg("image-layer").arg(&s.content).arg("-o").arg(&out);
        cmd.arg("--base-json").arg(&input);
        let o = exec(&mut cmd, dir, None);
        let sane = || layer_json(&out.join("json"));
        let nothing = || absent(&out.join("layer.tar"));
        verdict(&o, &[&input], sane, nothing).map_err(fail(&input, &cmd))
    });
}

#[test]
fn registry_replies() {
    let server = registry::Server::start();
    let started = Instant::now();
    let budget = budget();
    let replaying = std::env::var("STEVEDORE_FUZZ_REPLAY").is_ok();
    let skipped = std::sync::atomic::AtomicUsize::new(0);
    campaign("registry-replies", |rng, dir, s| {
        let name = format!("c{:08x}", rng.next() as u32);
        let case = registry::case(rng, registry::images(s), &server.registry(), &name);
        let room = budget.saturating_sub(started.elapsed()) > TIMEOUT + Duration::from_secs(2);
        if case.slow && !(room && case.slow_chosen) && !replaying {
            skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(false);
        }
        case.write(dir);
        server.serve(&name, dir);
        let (out, tmp) = (dir.join("out"), dir.join("tmp"));
        let mut cmd = stevedore();
        cmd.arg("copy").args(&case.args).arg(&case.reference);
        cmd.arg(format!("oci:{}", out.display()));
        cmd.env("TMPDIR", &tmp)
            .env("HOME", dir)
            .env("REGISTRY_AUTH_FILE", dir.join("no-auth.json"))
            .env_remove("XDG_RUNTIME_DIR");
        let mut o = exec(&mut cmd, dir, None);
        o.stderr = registry::without_notes(&o.stderr);
        let judged = judge(&o, &[&server.registry()]).and_then(|ok| {
            match ok {
                true => registry::check_layout(&out)?,
                false => registry::nothing_written(&out)?,
            }
            registry::tmp_empty(&tmp).map(|_| ok)
        });
        judged.map_err(|why| Failure {
            input: case.bundle(dir),
            command: format!("{cmd:?}"),
            why,
        })
    });
    eprintln!(
        "fuzz registry-replies: {} slow cases skipped",
        skipped.into_inner()
    );
}

/// Runs cases of one target with fresh seeds until its share of the time is spent;
/// saves and reports every failing case.
fn campaign(target: &str, case: impl Fn(&mut Rng, &Path, &Seeds) -> CaseResult) {
    let started = Instant::now();
    let Some(case_seeds) = case_seeds(target) else {
        return;
    };
    let seeds = seeds::get();
    std::fs::create_dir_all(seeds::work_dir()).unwrap();
    let work = tempfile::Builder::new()
        .prefix(&format!("{target}-"))
        .tempdir_in(seeds::work_dir())
        .unwrap();
    let budget = budget();
    let mut failures = Vec::new();
    let (mut cases, mut succeeded) = (0, 0);
    for seed in case_seeds {
        if cases > 0 && started.elapsed() >= budget {
            break;
        }
        let dir = scratch(work.path(), "case");
        match case(&mut Rng::new(seed), &dir, seeds) {
            Ok(ok) => succeeded += ok as usize,
            Err(f) => failures.push(save(target, seed, &f)),
        }
        cases += 1;
        if failures.len() >= MAX_FAILURES {
            break;
        }
    }
    eprintln!(
        "fuzz {target}: {cases} cases ({succeeded} succeeded) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{target}: {} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Each target's share of `STEVEDORE_FUZZ_SECONDS`, given that tests run in parallel.
fn budget() -> Duration {
    let total: f64 = std::env::var("STEVEDORE_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40.0);
    let threads = std::env::var("RUST_TEST_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .clamp(1, TARGETS as usize);
    Duration::from_secs_f64(total * threads as f64 / TARGETS as f64)
}

/// The seeds of a target's cases: one replayed case, none (replaying another target),
/// or an endless sequence from the run's base seed.
fn case_seeds(target: &str) -> Option<Box<dyn Iterator<Item = u64>>> {
    if let Ok(replay) = std::env::var("STEVEDORE_FUZZ_REPLAY") {
        let (name, seed) = replay.rsplit_once(':').expect("REPLAY=<target>:<seed>");
        let seed = u64::from_str_radix(seed, 16).expect("seed in hex");
        return (name == target).then(|| Box::new(std::iter::once(seed)) as _);
    }
    let base = match std::env::var("STEVEDORE_FUZZ_SEED") {
        Ok(v) => v.parse().expect("STEVEDORE_FUZZ_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("fuzz {target}: STEVEDORE_FUZZ_SEED={base}");
    let mut rng = Rng::new(base ^ name_hash(target));
    Some(Box::new(std::iter::from_fn(move || Some(rng.next()))))
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Keeps a failing case's input and what happened under `target/fuzz-failures`.
fn save(target: &str, seed: u64, f: &Failure) -> String {
    let dir = seeds::target_dir().join("fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    let ext = f
        .input
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("bin");
    let stem = format!("{target}-{seed:016x}");
    let kept = dir.join(format!("{stem}.{ext}"));
    std::fs::copy(&f.input, &kept).unwrap();
    let report = format!(
        "seed: {seed:016x}\nreplay: STEVEDORE_FUZZ_REPLAY={target}:{seed:016x}\n\
         input: {} (was {})\ncommand: {}\nverdict: {}\n",
        kept.display(),
        f.input.display(),
        f.command,
        f.why
    );
    std::fs::write(dir.join(format!("{stem}.txt")), &report).unwrap();
    format!(
        "{stem}: {} (see {})",
        f.why,
        dir.join(format!("{stem}.txt")).display()
    )
}

/// Runs one case's command in its directory.
fn exec(cmd: &mut Command, dir: &Path, stdin: Option<&Path>) -> Outcome {
    cmd.current_dir(dir);
    run_limited(cmd, stdin, dir, TIMEOUT)
}

/// A hidden Nix-builder step reading `dir/.attrs.json`.
fn nix_step(step: &str, dir: &Path) -> Command {
    let mut cmd = stevedore();
    cmd.arg(step)
        .env("NIX_BUILD_TOP", dir)
        .env_remove("NIX_ATTRS_JSON_FILE")
        .env("SOURCE_DATE_EPOCH", "1");
    cmd
}

fn fail<'a>(input: &'a Path, cmd: &'a Command) -> impl FnOnce(String) -> Failure + 'a {
    move |why| Failure {
        input: input.to_path_buf(),
        command: format!("{cmd:?}"),
        why,
    }
}

/// Judges a run naming `inputs`, then checks its result (exit 0) or that nothing was
/// left behind (exit 1).
fn verdict(
    o: &Outcome,
    inputs: &[&Path],
    on_success: impl FnOnce() -> Result<(), String>,
    on_failure: impl FnOnce() -> Result<(), String>,
) -> Result<bool, String> {
    let names: Vec<&str> = inputs.iter().map(|p| p.to_str().unwrap()).collect();
    if judge(o, &names)? {
        on_success().map(|_| true)
    } else {
        on_failure().map(|_| false)
    }
}

fn check(ok: bool, why: &str) -> Result<(), String> {
    ok.then_some(()).ok_or_else(|| why.to_string())
}

/// A complete tar file: there, a whole number of blocks.
fn tar_file(path: &Path) -> Result<(), String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("no output: {e}"))?
        .len();
    check(
        len > 0 && len.is_multiple_of(512),
        "output is not whole tar blocks",
    )
}

/// Nothing at `path`, and no temporary file beside it.
fn absent(path: &Path) -> Result<(), String> {
    check(!path.exists(), "output left behind after an error")?;
    let Ok(entries) = std::fs::read_dir(path.parent().unwrap()) else {
        return Ok(());
    };
    let leftover = entries
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with(".stevedore-"));
    check(!leftover, "temporary output left behind after an error")
}

/// A mutated copy of a docker archive seed, written into `dir`.
fn mutated_archive(rng: &mut Rng, dir: &Path, s: &Seeds) -> PathBuf {
    let archives = s.archives();
    let pick = if rng.chance(1, 8) {
        rng.pick(&archives[3..])
    } else {
        rng.pick(&archives[..3])
    };
    let mut data = std::fs::read(pick).unwrap();
    let donor = std::fs::read(rng.pick(&archives[..3])).unwrap();
    let ext = pick.extension().unwrap().to_str().unwrap();
    if ext == "tar" {
        mutate::tar_input(rng, &mut data, &donor);
    } else {
        mutate::bytes(rng, &mut data, &donor);
    }
    let path = dir.join(format!("image.{ext}"));
    std::fs::write(&path, data).unwrap();
    path
}

/// A plain archive seed with one layer member's bytes mutated in place (the outer
/// archive stays valid); returns the file and the layer member's name.
fn mutated_layer(rng: &mut Rng, dir: &Path, s: &Seeds) -> (PathBuf, String) {
    let archives = s.archives();
    let pick = rng.pick(&archives[..3]);
    let mut data = std::fs::read(pick).unwrap();
    let members = stevedore::tar::reader::list(pick).unwrap();
    let layers: Vec<_> = members
        .iter()
        .filter(|m| m.info.name.ends_with(b"layer.tar") && m.info.size > 0)
        .collect();
    let m = rng.pick(&layers);
    let (start, len) = (m.data_offset as usize, m.info.size as usize);
    let mut layer = data[start..start + len].to_vec();
    mutate::tar_input(rng, &mut layer, &[]);
    layer.resize(len, 0);
    data[start..start + len].copy_from_slice(&layer);
    let path = dir.join("image.tar");
    std::fs::write(&path, data).unwrap();
    (path, String::from_utf8_lossy(&m.info.name).into_owned())
}

/// A mutated copy of the JSON file `seed`, written to `path`.
fn mutated_json(rng: &mut Rng, seed: &Path, path: &Path) -> PathBuf {
    let mut data = std::fs::read(seed).unwrap();
    mutate::json_input(rng, &mut data);
    std::fs::write(path, data).unwrap();
    path.to_path_buf()
}

fn write_json(path: &Path, value: &Value) -> PathBuf {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path.to_path_buf()
}

/// `stream-layered CONF` or `build-layered CONF -o OUT`, judged: a whole archive on
/// stdout or in OUT, or nothing at all.
fn layered(
    rng: &mut Rng,
    dir: &Path,
    conf: &Path,
    inputs: &[&Path],
) -> Result<bool, (String, String)> {
    let out = dir.join("built.tar");
    let stream = rng.chance(1, 2);
    let mut cmd = stevedore();
    if stream {
        cmd.arg("stream-layered").arg(conf);
    } else {
        cmd.arg("build-layered").arg(conf).arg("-o").arg(&out);
    }
    let o = exec(&mut cmd, dir, None);
    let streamed = o.stdout.len();
    let result = match stream {
        true => verdict(
            &o,
            inputs,
            || {
                check(
                    streamed > 0 && streamed.is_multiple_of(512),
                    "stream is not whole tar blocks",
                )
            },
            || check(streamed == 0, "partial stream after an error"),
        ),
        false => verdict(&o, inputs, || tar_file(&out), || absent(&out)),
    };
    result.map_err(|why| (format!("{cmd:?}"), why))
}

/// `stevedore tarsum` as nixpkgs' tool: the sum, or the error, as one stdout line.
fn tarsum_verdict(o: &Outcome) -> Result<bool, String> {
    if o.timed_out || o.signal.is_some() {
        return Err(o.describe());
    }
    let text = o.stdout_text();
    let one_line = text.ends_with('\n') && text.lines().count() == 1 && o.stderr.is_empty();
    match o.code {
        Some(0) if one_line && text.starts_with("tarsum") => Ok(true),
        Some(1) if one_line => Ok(false),
        _ => Err(format!("stdout {text:?}; {}", o.describe())),
    }
}

/// plan's stdout: a JSON list of lists of store paths.
fn plan_output(o: &Outcome) -> Result<(), String> {
    let layers: Vec<Vec<String>> =
        serde_json::from_slice(&o.stdout).map_err(|e| format!("plan printed no layers: {e}"))?;
    check(
        layers.iter().flatten().all(|p| p.starts_with('/')),
        "plan printed a path that is not absolute",
    )
}

/// The output the mutated `.attrs.json` names exists.
fn declared_output(attrs: &Path, dir: &Path) -> Result<(), String> {
    let a: Value = serde_json::from_slice(&std::fs::read(attrs).unwrap())
        .map_err(|e| format!("accepted attrs that are not JSON: {e}"))?;
    let out = a["outputs"]["out"]
        .as_str()
        .ok_or("succeeded without outputs.out")?;
    check(dir.join(out).exists(), "no output")
}

/// The layer's `json`: an object with the TarSum `checksum`.
fn layer_json(path: &Path) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("no json: {e}"))?;
    let doc: Value = serde_json::from_slice(&text).map_err(|e| format!("bad json: {e}"))?;
    check(doc["checksum"].is_string(), "json without checksum")
}
