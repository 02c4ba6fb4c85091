//! Compression of layers and archives: which codec stored bytes use (seen from their
//! first bytes), and encoders whose output is a pure function of the input, the codec
//! and the level, whatever the machine, the thread count or how the input arrives:
//!
//! - gzip: flate2 on its zlib-rs backend (pure Rust, no system zlib), versions pinned in
//!   Cargo.toml; the gzip header has no name, mtime 0 and flate2's fixed OS byte.
//! - zstd: libzstd as the `zstd-sys` crate bundles it (version pinned), one thread per
//!   stream (libzstd's multi-threaded output can depend on the number of workers), no
//!   checksum, no content size.
//!
//! Neither encoder is ever flushed before it finishes (a flush ends a block early, so its
//! position would change the bytes), and both are fed fixed-size blocks. Layer digests are frozen by golden tests
//! (tests/compressed_layers.rs); changing any of the above changes them, and needs an
//! entry in CHANGELOG.md.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};

/// A compression format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    None,
    Gzip,
    Zstd,
}

/// A codec and its level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Compression {
    pub codec: Codec,
    pub level: i32,
}

impl Compression {
    pub const NONE: Compression = Compression {
        codec: Codec::None,
        level: 0,
    };
    /// gzip's own default level.
    pub const GZIP: Compression = Compression {
        codec: Codec::Gzip,
        level: 6,
    };
    /// zstd's own default level.
    pub const ZSTD: Compression = Compression {
        codec: Codec::Zstd,
        level: 3,
    };

    /// Parses `none`, `gzip[:LEVEL]` (1–9) or `zstd[:LEVEL]` (1–19).
    pub fn parse(text: &str) -> Result<Compression> {
        let (name, level) = match text.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (text, None),
        };
        let (base, range) = match name {
            "none" if level.is_none() => return Ok(Compression::NONE),
            "gzip" => (Compression::GZIP, 1..=9),
            "zstd" => (Compression::ZSTD, 1..=19),
            _ => bail!("{text:?}: expected none, gzip[:1-9] or zstd[:1-19]"),
        };
        let Some(level) = level else {
            return Ok(base);
        };
        match level.parse::<i32>() {
            Ok(l) if range.contains(&l) => Ok(Compression { level: l, ..base }),
            _ => bail!(
                "{text:?}: the {name} level must be {} to {}",
                range.start(),
                range.end()
            ),
        }
    }

    /// An encoder writing to `out`.
    pub fn encoder<W: Write>(self, out: W) -> Result<Encoder<W>> {
        let inner = match self.codec {
            Codec::None => Inner::None(out),
            Codec::Gzip => Inner::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(self.level as u32),
            )),
            Codec::Zstd => {
                let mut enc = zstd::Encoder::new(out, self.level)?;
                enc.include_checksum(false)?;
                enc.include_contentsize(false)?;
                Inner::Zstd(enc)
            }
        };
        Ok(Encoder::new(self.codec, inner))
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.codec {
            Codec::None => write!(f, "none"),
            Codec::Gzip => write!(f, "gzip:{}", self.level),
            Codec::Zstd => write!(f, "zstd:{}", self.level),
        }
    }
}

/// A compressing writer; `finish` ends the stream and gives the output back. Input is
/// handed to the codec in blocks of exactly `FEED` bytes (the last one shorter), whatever
/// sizes it arrives in: zlib-rs's output depends on how its input is split, so the split
/// is fixed here.
pub struct Encoder<W: Write> {
    codec: Codec,
    pending: Vec<u8>,
    inner: Inner<W>,
}

/// Input block size given to the codecs.
const FEED: usize = 128 << 10;

enum Inner<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn new(codec: Codec, inner: Inner<W>) -> Self {
        let capacity = if codec == Codec::None { 0 } else { FEED };
        Encoder {
            codec,
            pending: Vec::with_capacity(capacity),
            inner,
        }
    }

    pub fn finish(mut self) -> Result<W> {
        self.feed()?;
        Ok(match self.inner {
            Inner::None(w) => w,
            Inner::Gzip(e) => e.finish().context("cannot finish gzip stream")?,
            Inner::Zstd(e) => e.finish().context("cannot finish zstd stream")?,
        })
    }

    /// The output being written to.
    pub fn get_mut(&mut self) -> &mut W {
        match &mut self.inner {
            Inner::None(w) => w,
            Inner::Gzip(e) => e.get_mut(),
            Inner::Zstd(e) => e.get_mut(),
        }
    }

    /// Hands the pending block to the codec.
    fn feed(&mut self) -> std::io::Result<()> {
        let block = &self.pending[..];
        match &mut self.inner {
            Inner::None(w) => w.write_all(block)?,
            Inner::Gzip(e) => e.write_all(block)?,
            Inner::Zstd(e) => e.write_all(block)?,
        }
        self.pending.clear();
        Ok(())
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.codec == Codec::None {
            return match &mut self.inner {
                Inner::None(w) => w.write(buf),
                _ => unreachable!("a codec without its encoder"),
            };
        }
        let n = buf.len().min(FEED - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == FEED {
            self.feed()?;
        }
        Ok(n)
    }

    /// Does nothing: flushing an encoder would move block boundaries (see the top).
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The codec that stored bytes starting with `magic` use (anything else is taken as
/// plain); bzip2 and xz are recognised only to be refused.
pub fn sniff(magic: &[u8]) -> Result<Codec> {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Codec::Gzip)
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Codec::Zstd)
    } else if magic.starts_with(b"BZh") || magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z']) {
        bail!("bzip2/xz compression is not supported")
    } else {
        Ok(Codec::None)
    }
}

/// A reader of the decompressed bytes of `input`.
pub fn decoder<'a>(codec: Codec, input: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        Codec::None => Box::new(input),
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
    })
}

/// A writer that decompresses what it is given into `out` (to check a stored blob's
/// diff_id in the same pass that copies it).
pub enum Decoding<W: Write> {
    Gzip(Box<flate2::write::MultiGzDecoder<W>>),
    Zstd(zstd::stream::write::Decoder<'static, W>),
}

impl<W: Write> Decoding<W> {
    pub fn new(codec: Codec, out: W) -> Result<Self> {
        Ok(match codec {
            Codec::Gzip => Decoding::Gzip(Box::new(flate2::write::MultiGzDecoder::new(out))),
            Codec::Zstd => Decoding::Zstd(zstd::stream::write::Decoder::new(out)?),
            Codec::None => bail!("nothing to decompress"),
        })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Decoding::Gzip(d) => d.write_all(bytes),
            Decoding::Zstd(d) => d.write_all(bytes),
        }
    }

    /// Ends the stream (a gzip member cut short is an error) and gives `out` back.
    pub fn finish(self) -> std::io::Result<W> {
        match self {
            Decoding::Gzip(d) => d.finish(),
            Decoding::Zstd(mut d) => {
                d.flush()?;
                Ok(d.into_inner())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_codecs_and_levels() {
        assert_eq!(Compression::parse("gzip").unwrap(), Compression::GZIP);
        assert_eq!(Compression::parse("zstd:19").unwrap().level, 19);
        assert_eq!(Compression::parse("none").unwrap(), Compression::NONE);
        for bad in ["gzip:0", "gzip:10", "zstd:x", "none:1", "lz4", ""] {
            assert!(Compression::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bytes_do_not_depend_on_how_the_input_arrives() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for c in [
            Compression::GZIP,
            Compression::ZSTD,
            Compression::parse("zstd:19").unwrap(),
        ] {
            let whole = {
                let mut e = c.encoder(Vec::new()).unwrap();
                e.write_all(&data).unwrap();
                e.finish().unwrap()
            };
            let pieces = {
                let mut e = c.encoder(Vec::new()).unwrap();
                for chunk in data.chunks(777) {
                    e.write_all(chunk).unwrap();
                    e.flush().unwrap();
                }
                e.finish().unwrap()
            };
            assert!(whole == pieces, "{c}");
            let mut back = Vec::new();
            decoder(sniff(&whole).unwrap(), &whole[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data, "{c}");
        }
    }
}
