//! One-line summaries of what a step built, on stderr: what a Nix build log shows.

use std::path::Path;
use std::time::Instant;

/// `stevedore: NAME: DETAIL, in T s`, NAME being the output's file name.
pub fn built(output: &Path, detail: &str, started: Instant) {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| output.display().to_string());
    eprintln!(
        "stevedore: {name}: {detail}, in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// A byte count for people: `812 B`, `3.4 KiB`, `41.0 MiB`, `1.07 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1 layer`, `3 layers`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The size of the file at `path`, for a summary (0 if it cannot be read).
pub fn file_size(path: &Path) -> String {
    size(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
}

/// `stevedore: MESSAGE` on stderr: one step of a long transfer, or something retried.
pub fn note(message: &str) {
    eprintln!("stevedore: {message}");
}
