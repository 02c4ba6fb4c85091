//! Image names as Nixery reads them: `PKG[/PKG…]` and a tag, checked against the
//! registry's grammar (so nothing a client sends reaches the filesystem or Nix unchecked),
//! with the meta-packages `shell` and `arm64` consumed, `cacert` and `iana-etc` added,
//! and the packages deduplicated and sorted so that their order does not bust the cache.

use super::error::ApiError;

/// Packages `shell` stands for.
const SHELL: [&str; 4] = ["bashInteractive", "coreutils", "moreutils", "nano"];
/// Packages every image holds.
const ALWAYS: [&str; 2] = ["cacert", "iana-etc"];
/// The longest image name accepted (distribution's limit on repository names).
const MAX_NAME: usize = 255;

/// An image's CPU architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The OCI name (`amd64`, `arm64`), as `nixery.nix`'s `arch` takes it.
    pub fn oci(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// What an image name and tag ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The name as requested (`shell/hello`).
    pub name: String,
    pub tag: String,
    /// Attribute paths, sorted and without duplicates, meta-packages resolved.
    pub packages: Vec<String>,
    pub arch: Arch,
}

impl Image {
    /// `shell/hello:latest`.
    pub fn display(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

/// Checks a repository name (`PKG[/PKG…]`) without resolving it.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(ApiError::name_invalid(
            name,
            "an image name is 1 to 255 characters",
        ));
    }
    for part in name.split('/') {
        if !valid_component(part) {
            let why = match part {
                "" => "empty component".to_string(),
                _ => format!("{part:?} is not a package name ([a-z0-9]+ joined by . _ or -)"),
            };
            return Err(ApiError::name_invalid(name, &why));
        }
    }
    Ok(())
}

/// Checks a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), ApiError> {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let ok = first_ok
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    match ok {
        true => Ok(()),
        false => Err(ApiError::tag_invalid(tag)),
    }
}

/// Parses a name and a tag into what to build.
pub fn parse(name: &str, tag: &str) -> Result<Image, ApiError> {
    check_name(name)?;
    check_tag(tag)?;
    let mut parts: Vec<&str> = name.split('/').collect();
    let mut packages: Vec<String> = Vec::new();
    let mut arch = Arch::Amd64;
    // Leading meta-packages, in any order, as Nixery consumes them.
    while let Some(first) = parts.first() {
        match *first {
            "shell" => packages.extend(SHELL.iter().map(|s| s.to_string())),
            "arm64" => arch = Arch::Arm64,
            _ => break,
        }
        parts.remove(0);
    }
    packages.extend(parts.iter().map(|s| s.to_string()));
    packages.extend(ALWAYS.iter().map(|s| s.to_string()));
    packages.sort();
    packages.dedup();
    Ok(Image {
        name: name.to_string(),
        tag: tag.to_string(),
        packages,
        arch,
    })
}

/// `[a-z0-9]+([._-][a-z0-9]+)*`: no empty part, no leading or trailing or doubled
/// separator, so never `.`, `..` or anything with `/` or `\`.
fn valid_component(part: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut previous_was_separator = true;
    for b in part.bytes() {
        if alnum(b) {
            previous_was_separator = false;
        } else if matches!(b, b'.' | b'_' | b'-') && !previous_was_separator {
            previous_was_separator = true;
        } else {
            return false;
        }
    }
    !previous_was_separator
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_packages_are_consumed_and_the_list_sorted() {
        let i = parse("shell/hello", "latest").unwrap();
        assert_eq!(
            i.packages,
            [
                "bashInteractive",
                "cacert",
                "coreutils",
                "hello",
                "iana-etc",
                "moreutils",
                "nano"
            ]
        );
        assert_eq!(i.arch, Arch::Amd64);
        let a = parse("arm64/hello/git", "v1").unwrap();
        assert_eq!(a.arch, Arch::Arm64);
        assert_eq!(a.packages, ["cacert", "git", "hello", "iana-etc"]);
        // Order and duplicates do not change what is built.
        let b = parse("git/hello/git/cacert", "v1").unwrap();
        assert_eq!(b.packages, ["cacert", "git", "hello", "iana-etc"]);
        // Only leading meta-packages are meta.
        let c = parse("hello/arm64", "latest").unwrap();
        assert_eq!(c.arch, Arch::Amd64);
        assert!(c.packages.contains(&"arm64".to_string()));
        assert_eq!(
            parse("xorg.xev", "latest").unwrap().packages,
            ["cacert", "iana-etc", "xorg.xev"]
        );
    }

    #[test]
    fn names_outside_the_grammar_are_refused() {
        for bad in [
            "", "..", "a/../b", "a//b", "/a", "a/", ".a", "a.", "a..b", "A", "a\\b", "a b", "a/.",
            "a%2e", "a~b",
        ] {
            let e = parse(bad, "latest").unwrap_err();
            assert_eq!(e.code, "NAME_INVALID", "{bad:?}");
            assert_eq!(e.status, 400);
        }
        assert!(parse(&"a".repeat(256), "latest").is_err());
        for good in [
            "a",
            "a-b",
            "a_b",
            "a.b",
            "a1/b2/c3",
            "xorg.xev",
            "python3.pkgs",
        ] {
            assert!(parse(good, "latest").is_ok(), "{good}");
        }
    }

    #[test]
    fn tags_outside_the_grammar_are_refused() {
        for bad in ["", "-a", ".a", "a/b", "a:b", "..", &"a".repeat(129)] {
            let e = parse("hello", bad).unwrap_err();
            assert_eq!(e.code, "TAG_INVALID", "{bad:?}");
        }
        for good in ["latest", "_x", "v1.2-3", "A", &"a".repeat(128)] {
            assert!(parse("hello", good).is_ok(), "{good}");
        }
    }
}
