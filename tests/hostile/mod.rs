//! Shared by the hostile-input tests and the fuzzing harness: running the stevedore
//! binary under a memory limit and a deadline, judging how it ended, and building tar
//! headers with any field value (octal or GNU base-256) and a correct checksum.
#![allow(dead_code)]

pub mod mutate;
pub mod registry;
pub mod seeds;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The address-space limit of every run: a declared size must never become memory.
pub const MEMORY_LIMIT: u64 = 1 << 30;
/// The largest file a run may write (a decompression bomb ends here, not on the disk).
pub const FILE_LIMIT: u64 = 1 << 30;
/// How long one run may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A command running the stevedore binary under test.
pub fn stevedore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stevedore"))
}

/// How a run ended, with what it printed.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Outcome {
    /// One line saying how the run ended, for failure messages.
    pub fn describe(&self) -> String {
        let how = match (self.timed_out, self.signal, self.code) {
            (true, _, _) => "timed out".to_string(),
            (_, Some(s), _) => format!("killed by signal {s}"),
            (_, _, Some(c)) => format!("exit {c}"),
            _ => "unknown end".to_string(),
        };
        format!("{how}; stderr: {:?}", self.stderr)
    }

    /// stdout as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `cmd` with stdin from `stdin` (or nothing), limited to [`MEMORY_LIMIT`] of
/// address space and [`FILE_LIMIT`] per file, no core dumps; killed after `timeout`.
/// stdout and stderr go to files in `scratch`.
pub fn run_limited(
    cmd: &mut Command,
    stdin: Option<&Path>,
    scratch: &Path,
    timeout: Duration,
) -> Outcome {
    let out_path = scratch.join("stdout");
    let err_path = scratch.join("stderr");
    cmd.stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .stdin(match stdin {
            Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
            None => Stdio::null(),
        });
    // SAFETY: only async-signal-safe calls (setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            limit(libc::RLIMIT_AS, MEMORY_LIMIT)?;
            limit(libc::RLIMIT_FSIZE, FILE_LIMIT)?;
            limit(libc::RLIMIT_CORE, 0)
        });
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let (status, timed_out) = wait(&mut child, timeout);
    Outcome {
        code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&std::fs::read(&err_path).unwrap_or_default()).into_owned(),
    }
}

/// Waits for `child`, killing it after `timeout`; whether it was killed.
fn wait(child: &mut std::process::Child, timeout: Duration) -> (ExitStatus, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return (child.wait().unwrap(), true);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: a valid rlimit struct.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Checks that a run ended well: exit 0 (`Ok(true)`), or exit 1 with exactly one stderr
/// line starting `stevedore: ` that contains every one of `names` (`Ok(false)`).
/// Anything else (a panic's 101, a signal, a timeout, a bad message) is an `Err`.
pub fn judge(out: &Outcome, names: &[&str]) -> Result<bool, String> {
    if out.timed_out || out.signal.is_some() {
        return Err(out.describe());
    }
    match out.code {
        Some(0) => Ok(true),
        Some(1) => {
            let line = out.stderr.strip_suffix('\n').unwrap_or(&out.stderr);
            if line.contains('\n') || !line.starts_with("stevedore: ") {
                return Err(format!("not one `stevedore: ` line: {}", out.describe()));
            }
            match names.iter().find(|n| !line.contains(*n)) {
                Some(n) => Err(format!("error does not name {n}: {}", out.describe())),
                None => Ok(false),
            }
        }
        _ => Err(out.describe()),
    }
}

/// A scratch directory for one run.
pub fn scratch(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Offsets and lengths of the numeric header fields.
pub const MODE: (usize, usize) = (100, 8);
pub const UID: (usize, usize) = (108, 8);
pub const GID: (usize, usize) = (116, 8);
pub const SIZE: (usize, usize) = (124, 12);
pub const MTIME: (usize, usize) = (136, 12);
pub const DEVMAJOR: (usize, usize) = (329, 8);
pub const DEVMINOR: (usize, usize) = (337, 8);
pub const NUMERIC: [(usize, usize); 7] = [MODE, UID, GID, SIZE, MTIME, DEVMAJOR, DEVMINOR];

/// A ustar header block for `name` of type `kind` declaring `size` (octal if it fits,
/// else GNU base-256), checksum filled in.
pub fn header(name: &[u8], kind: u8, size: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    set_octal(&mut b, MODE, 0o644);
    set_octal(&mut b, UID, 0);
    set_octal(&mut b, GID, 0);
    set_octal(&mut b, MTIME, 1);
    if size < 1 << 33 {
        set_octal(&mut b, SIZE, size);
    } else {
        set_base256(&mut b, SIZE, size);
    }
    b[156] = kind;
    b[257..265].copy_from_slice(b"ustar\x0000");
    fix_checksum(&mut b);
    b
}

/// Writes `value` as zero-padded octal filling all but the last byte of the field.
pub fn set_octal(b: &mut [u8], (at, len): (usize, usize), value: u64) {
    let text = format!("{value:0w$o}", w = len - 1);
    let text = &text.as_bytes()[text.len() - (len - 1)..];
    b[at..at + len - 1].copy_from_slice(text);
    b[at + len - 1] = 0;
}

/// Writes `value` in GNU base-256 (0x80, then big-endian).
pub fn set_base256(b: &mut [u8], (at, len): (usize, usize), value: u64) {
    let field = &mut b[at..at + len];
    field.fill(0);
    field[0] = 0x80;
    field[len - 8..].copy_from_slice(&value.to_be_bytes());
}

/// Recomputes a header block's checksum (`%06o\0 `).
pub fn fix_checksum(b: &mut [u8]) {
    b[148..156].fill(b' ');
    let sum: u32 = b[..512].iter().map(|&x| x as u32).sum();
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

/// Whether a block's stored checksum is right (how the mutators find headers).
pub fn checksum_ok(b: &[u8]) -> bool {
    if b.len() < 512 || b[..512].iter().all(|&x| x == 0) {
        return false;
    }
    let text = String::from_utf8_lossy(&b[148..156]);
    let Ok(stored) = u32::from_str_radix(text.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    let sum: u32 = (0..512)
        .map(|i| {
            if (148..156).contains(&i) {
                32
            } else {
                b[i] as u32
            }
        })
        .sum();
    stored == sum
}

/// A PAX record (`"<len> <key>=<value>\n"`).
pub fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut len = base;
    while base + len.to_string().len() != len {
        len = base + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// Appends `data` padded to whole blocks.
pub fn push_padded(tar: &mut Vec<u8>, data: &[u8]) {
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}
