//! Reading a docker archive, plain or compressed with gzip or zstd (a compressed one is
//! decompressed once, to a temporary file kept as long as the [`Archive`]): its members
//! as `tar -x` would see them, `manifest.json`, each image's config (its bytes, as
//! digests are of bytes), and each image as the model, its layers read in place from
//! their members (a layer member that is a symlink, as skopeo writes them, is read from
//! its target).
//!
//! Nothing is trusted: every member is checked against the file before it is read, and
//! a manifest with fewer layers than its config has diff_ids is refused. Errors do not
//! name the archive: callers say which input it is.

use crate::image::compress::{self, Codec};
use crate::image::descriptor::Platform;
use crate::image::digest::Digest;
use crate::image::model::{ArchiveLayout, Config, Image, Layer, Source};
use crate::tar::kind;
use crate::tar::pyheader::TarInfo;
use crate::tar::reader::{self, Member};
use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::io::{Read, Seek};
use std::path::{Component, Path, PathBuf};
use tempfile::NamedTempFile;

/// An opened docker archive.
pub struct Archive {
    /// The uncompressed tar the members' offsets are in.
    file: PathBuf,
    members: Vec<Member>,
    /// The decompressed copy, when the archive is compressed.
    spill: Option<NamedTempFile>,
}

/// One image of `manifest.json` (`Parent` and `LayerSources` are not used).
#[derive(Clone, Debug, Deserialize)]
pub struct ManifestEntry {
    /// The member holding the image config.
    #[serde(rename = "Config")]
    pub config: String,
    /// `name:tag`s; `null` for an image saved by its id.
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    /// The members holding the layers, bottom first.
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

impl ManifestEntry {
    /// Whether the image is known as `repo_tag`.
    pub fn tagged(&self, repo_tag: &str) -> bool {
        self.repo_tags.iter().flatten().any(|t| t == repo_tag)
    }
}

/// An image config: its bytes as read, and what the reader takes from them.
pub struct ImageConfig {
    pub bytes: Vec<u8>,
    /// The container config (`config`), `null` when there is none.
    pub container: Value,
    /// `rootfs.diff_ids`, as written (a layer whose diff_id is not a digest is hashed).
    pub diff_ids: Vec<String>,
    pub platform: Platform,
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    config: Value,
    #[serde(default)]
    rootfs: RootFs,
}

#[derive(Default, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

impl Archive {
    /// Opens the archive at `path` and lists its members.
    pub fn open(path: &Path) -> Result<Archive> {
        let (file, spill) = plain_tar(path)?;
        let members = reader::list(&file)?;
        Ok(Archive {
            file,
            members,
            spill,
        })
    }

    /// The uncompressed tar file the members' data offsets refer to.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Every member, in archive order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The last member named `name` (trailing slashes ignored), as `tar -x` leaves it.
    pub fn find(&self, name: &str) -> Option<&Member> {
        reader::find(&self.members, name)
    }

    /// The bytes of the member `name`.
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let missing = || format!("no {}", reader::shown(name.as_bytes()));
        reader::read_member(&self.file, self.find(name).with_context(missing)?)
    }

    /// The member `name`, parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        serde_json::from_slice(&self.read(name)?)
            .with_context(|| format!("{} is not valid", reader::shown(name.as_bytes())))
    }

    /// The images `manifest.json` lists.
    pub fn manifest(&self) -> Result<Vec<ManifestEntry>> {
        self.json("manifest.json").context("not a docker archive")
    }

    /// The image tagged `repo_tag`, or the first one.
    pub fn entry(&self, repo_tag: Option<&str>) -> Result<ManifestEntry> {
        let entries = self.manifest()?;
        match repo_tag {
            None => entries
                .into_iter()
                .next()
                .context("manifest.json lists no image"),
            Some(tag) => entries
                .into_iter()
                .find(|e| e.tagged(tag))
                .with_context(|| format!("no image tagged {tag}")),
        }
    }

    /// The config of the image `entry`.
    pub fn config(&self, entry: &ManifestEntry) -> Result<ImageConfig> {
        let bytes = self.read(&entry.config)?;
        let value: Value = serde_json::from_slice(&bytes).context("bad config")?;
        let parsed = ConfigJson::deserialize(&value).context("bad config")?;
        Ok(ImageConfig {
            platform: Platform::of_config(&value),
            bytes,
            container: parsed.config,
            diff_ids: parsed.rootfs.diff_ids,
        })
    }

    /// The image `entry` (whose config is `config`) as the model: each layer read in
    /// place, its member header kept (named as the manifest names it) for writing it
    /// again as nixpkgs' streamer copies it.
    pub fn image(&self, entry: &ManifestEntry, config: ImageConfig) -> Result<Image> {
        let (names, diff_ids) = (&entry.layers, &config.diff_ids);
        if names.len() != diff_ids.len() {
            bail!("{} layers but {} diff_ids", names.len(), diff_ids.len());
        }
        let mut layers = Vec::new();
        let mut headers = Vec::new();
        for (name, diff_id) in names.iter().zip(diff_ids) {
            let (layer, header) = self.layer(name, diff_id)?;
            layers.push(layer);
            headers.push(Some(header));
        }
        Ok(Image {
            config: Config::Bytes(config.bytes),
            layers,
            platform: config.platform,
            repo_tags: entry.repo_tags.clone().unwrap_or_default(),
            archive: ArchiveLayout { mtime: 0, headers },
        })
    }

    /// The layer `name` (its member's bytes, as they are) and the member's header
    /// under that name.
    fn layer(&self, name: &str, diff_id: &str) -> Result<(Layer, TarInfo)> {
        let shown = reader::shown(name.as_bytes());
        let member = self.layer_member(name)?;
        let mut header = member.info.clone();
        header.name = name.as_bytes().to_vec();
        let layer = Layer {
            // A diff_id that is not a digest is not trusted: the layer is hashed when needed.
            diff_id: Digest::parse(diff_id).ok(),
            blob: None,
            what: format!("member {shown}"),
            source: Source::File {
                path: self.file.clone(),
                offset: member.data_offset,
                len: member.info.size,
                codec: self.codec(member)?,
            },
        };
        Ok((layer, header))
    }

    /// The member holding the layer `name`: itself, or the target of a symlink member.
    pub fn layer_member(&self, name: &str) -> Result<&Member> {
        let shown = reader::shown(name.as_bytes());
        let member = self
            .resolve(name)
            .with_context(|| format!("no layer {shown}"))?;
        if !reader::has_data(member.info.kind) {
            bail!("member {shown}: not a file");
        }
        Ok(member)
    }

    /// The member `name`, following a symlink member (as skopeo writes them) to its
    /// target.
    pub fn resolve(&self, name: &str) -> Option<&Member> {
        let member = self.find(name)?;
        if member.info.kind != kind::SYMLINK {
            return Some(member);
        }
        let target = String::from_utf8_lossy(&member.info.linkname).into_owned();
        let dir = Path::new(name).parent().unwrap_or(Path::new(""));
        let joined = normalize(&dir.join(target));
        self.find(&joined).filter(|m| m.info.kind != kind::SYMLINK)
    }

    /// The codec of a member's bytes, from its first ones.
    fn codec(&self, member: &Member) -> Result<Codec> {
        use std::os::unix::fs::FileExt;
        let mut magic = [0u8; 6];
        let n = (member.info.size as usize).min(magic.len());
        std::fs::File::open(&self.file)
            .and_then(|f| f.read_exact_at(&mut magic[..n], member.data_offset))
            .context("cannot read")?;
        compress::sniff(&magic[..n])
    }

    /// The temporary decompressed copy, if any, to keep while the members are read.
    pub fn into_spill(self) -> Option<NamedTempFile> {
        self.spill
    }
}

/// `path` with `..` and `.` resolved lexically, as a member name.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(p) => parts.push(p),
            _ => {}
        }
    }
    parts
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The path of an uncompressed copy of the archive (itself when it is not compressed),
/// and the temporary file that holds a decompressed copy.
fn plain_tar(path: &Path) -> Result<(PathBuf, Option<NamedTempFile>)> {
    let mut file = std::fs::File::open(path).context("cannot open")?;
    let mut magic = [0u8; 6];
    let n = file.read(&mut magic).context("cannot read")?;
    let codec = compress::sniff(&magic[..n])?;
    if codec == Codec::None {
        return Ok((path.to_path_buf(), None));
    }
    file.rewind().context("cannot read")?;
    let spill = decompress(codec, file)?;
    Ok((spill.path().to_path_buf(), Some(spill)))
}

/// The bytes `input` decompresses to, in a temporary file.
pub fn decompress(codec: Codec, input: impl Read) -> Result<NamedTempFile> {
    let mut spill = NamedTempFile::new().context("cannot create a temporary file")?;
    let mut decoder = compress::decoder(codec, input)?;
    std::io::copy(&mut decoder, spill.as_file_mut()).context("cannot decompress")?;
    Ok(spill)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A docker archive of `members` (name, data; a symlink when data starts with `->`).
    fn archive(members: &[(&str, &[u8])], codec: Codec) -> NamedTempFile {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            match data.strip_prefix(b"->") {
                Some(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_link_name(std::str::from_utf8(target).unwrap())
                        .unwrap();
                    h.set_size(0);
                }
                None => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                }
            }
            h.set_mode(0o644);
            h.set_path(name).unwrap();
            h.set_cksum();
            let body: &[u8] = if data.starts_with(b"->") { &[] } else { data };
            tar.append(&h, body).unwrap();
        }
        let bytes = tar.into_inner().unwrap();
        let mut file = NamedTempFile::new().unwrap();
        let mut enc = crate::image::compress::Compression { codec, level: 3 }
            .encoder(Vec::new())
            .unwrap();
        enc.write_all(&bytes).unwrap();
        file.write_all(&enc.finish().unwrap()).unwrap();
        file
    }

    const DIGEST: &str = "sha256:5d0f1e3b2a8c4e6f7a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f";

    #[test]
    fn reads_skopeo_symlinks_and_compressed_archives() {
        let manifest = br#"[{"Config": "c.json", "RepoTags": null,
            "Layers": ["a/layer.tar", "b/layer.tar"], "LayerSources": {}}]"#;
        let config = format!(
            r#"{{"architecture": "arm64", "os": "linux", "config": {{"Env": ["A=1"]}},
                "rootfs": {{"type": "layers", "diff_ids": ["{DIGEST}", "sha256:00"]}}}}"#
        );
        let members: [(&str, &[u8]); 5] = [
            ("manifest.json", manifest),
            ("c.json", config.as_bytes()),
            ("blobs/one", b"first layer"),
            ("a/layer.tar", b"->../blobs/one"),
            ("b/layer.tar", b"second"),
        ];
        for codec in [Codec::None, Codec::Gzip, Codec::Zstd] {
            let file = archive(&members, codec);
            let archive = Archive::open(file.path()).unwrap();
            let entry = archive.entry(None).unwrap();
            let config = archive.config(&entry).unwrap();
            assert_eq!(config.container["Env"][0], "A=1");
            let image = archive.image(&entry, config).unwrap();
            assert_eq!(image.platform.architecture, "arm64");
            assert!(image.repo_tags.is_empty());
            assert_eq!(
                image.layers[0].diff_id.as_ref().unwrap().to_string(),
                DIGEST
            );
            assert!(image.layers[1].diff_id.is_none(), "not a digest");
            let first = &image.layers[0].source;
            assert_eq!(first.stored_len(), 11);
            let header = image.archive.headers[0].as_ref().unwrap();
            assert_eq!(header.name, b"a/layer.tar");
            assert_eq!(header.kind, kind::REG);
            assert_eq!(image.layers[0].what, "member a/layer.tar");
            assert!(archive.entry(Some("x:y")).is_err());
        }
    }

    #[test]
    fn refuses_fewer_layers_than_diff_ids() {
        let manifest = br#"[{"Config": "c.json", "RepoTags": ["x:y"], "Layers": []}]"#;
        let config = format!(r#"{{"rootfs": {{"diff_ids": ["{DIGEST}"]}}}}"#);
        let file = archive(
            &[("manifest.json", manifest), ("c.json", config.as_bytes())],
            Codec::None,
        );
        let archive = Archive::open(file.path()).unwrap();
        let entry = archive.entry(Some("x:y")).unwrap();
        let config = archive.config(&entry).unwrap();
        let err = archive.image(&entry, config).err().unwrap();
        assert_eq!(err.to_string(), "0 layers but 1 diff_ids");
    }
}
