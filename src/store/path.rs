//! Store paths: `<store_dir>/<32-char nixbase32 hash>-<name>`, parsed and checked.

use super::nixbase32;
use std::fmt;

/// Length of the hash part of a store path's base name.
pub const HASH_LEN: usize = 32;

/// A validated absolute store path (`/nix/store/<hash>-<name>`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorePath {
    full: String,
    base_start: usize,
}

impl StorePath {
    /// Parses `text` as a direct child of `store_dir`, checking the hash and name syntax.
    pub fn parse(store_dir: &str, text: &str) -> Result<StorePath, String> {
        let dir = store_dir.trim_end_matches('/');
        let rest = text
            .strip_prefix(dir)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| format!("{text:?} is not in the store directory {dir}"))?;
        check_base_name(rest).map_err(|why| format!("{text:?} is not a store path: {why}"))?;
        Ok(StorePath {
            full: text.to_string(),
            base_start: text.len() - rest.len(),
        })
    }

    /// The whole path as written.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// `<hash>-<name>`.
    pub fn base_name(&self) -> &str {
        &self.full[self.base_start..]
    }

    /// The 32-character hash part.
    pub fn hash_part(&self) -> &str {
        &self.base_name()[..HASH_LEN]
    }

    /// The name after the hash and dash.
    pub fn name(&self) -> &str {
        &self.base_name()[HASH_LEN + 1..]
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

fn check_base_name(base: &str) -> Result<(), String> {
    if base.len() < HASH_LEN + 2 || base.as_bytes()[HASH_LEN] != b'-' {
        return Err("expected <32-char hash>-<name>".into());
    }
    if !nixbase32::is_valid(&base[..HASH_LEN]) {
        return Err("the hash part is not nixbase32".into());
    }
    let name = &base[HASH_LEN + 1..];
    if name.len() > 211 {
        return Err("the name is longer than 211 characters".into());
    }
    if name.starts_with('.') {
        return Err("the name starts with a dot".into());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "+-._?=".contains(c);
    if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
        return Err(format!("the name contains {bad:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "/nix/store/0c8v8ymkq2sg4d8lbf2fx6pkr1fpjv3d-hello-2.12";

    #[test]
    fn parses_parts() {
        let p = StorePath::parse("/nix/store", HELLO).unwrap();
        assert_eq!(p.hash_part(), "0c8v8ymkq2sg4d8lbf2fx6pkr1fpjv3d");
        assert_eq!(p.name(), "hello-2.12");
        assert_eq!(p.base_name(), &HELLO[11..]);
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in [
            "/nix/store/short-x",
            "/nix/store/0c8v8ymkq2sg4d8lbf2fx6pkr1fpjv3e-hello",
            "/nix/store/0c8v8ymkq2sg4d8lbf2fx6pkr1fpjv3d-he/llo",
            "/tmp/0c8v8ymkq2sg4d8lbf2fx6pkr1fpjv3d-hello",
            "/nix/store/0c8v8ymkq2sg4d8lbf2fx6pkr1fpjv3d-.hidden",
        ] {
            assert!(StorePath::parse("/nix/store", bad).is_err(), "{bad}");
        }
    }
}
