//! A layer's bytes: as its source stores them, uncompressed, or as a compressed blob,
//! with the digests a writer needs computed in the same pass: the diff_id (sha256 of the
//! uncompressed tar) and the blob's digest and size.

use super::compress::{self, Codec, Compression, Encoder};
use super::digest::Digest;
use super::hashing::HashingWriter;
use super::model::{Layer, Source};
use crate::tar::sink::{copy_by_writes, Discard, Hashing, OffsetSink, Sink};
use anyhow::{bail, Context, Result};
use sha2::Digest as _;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

/// Writes a layer's bytes as its source stores them (`source.stored_len()` of them).
pub fn emit(layer: &Layer, out: &mut dyn Sink) -> Result<()> {
    match &layer.source {
        Source::StorePaths(store) => store.write_to(out),
        Source::File {
            path, offset, len, ..
        } => {
            let file =
                File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
            out.copy_from(&file, path, *offset, *len)
        }
    }
}

/// Writes a layer's uncompressed bytes (decompressing what its source stores compressed).
pub fn emit_uncompressed(layer: &Layer, out: &mut dyn Sink) -> Result<()> {
    match &layer.source {
        Source::File {
            path,
            offset,
            len,
            codec,
        } if *codec != Codec::None => {
            let mut input = open_decoded(path, *offset, *len, *codec)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = input
                    .read(&mut buf)
                    .with_context(|| format!("{}: cannot decompress", layer.what))?;
                if n == 0 {
                    return Ok(());
                }
                out.write_all(&buf[..n])?;
            }
        }
        _ => emit(layer, out),
    }
}

fn open_decoded(path: &Path, offset: u64, len: u64, codec: Codec) -> Result<Box<dyn Read>> {
    let mut file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .with_context(|| format!("{}: cannot read", path.display()))?;
    compress::decoder(codec, file.take(len))
}

/// The sha256 of a layer's uncompressed bytes (its diff_id), without writing them.
pub fn digest(layer: &Layer) -> Result<Digest> {
    let mut discard = Discard;
    let mut hashing = Hashing::new(&mut discard);
    emit_uncompressed(layer, &mut hashing)?;
    Ok(hashing.finish())
}

/// What producing a blob found: the layer's diff_id, and the blob's digest and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Produced {
    pub diff_id: Digest,
    pub digest: Digest,
    pub size: u64,
}

/// Writes the layer to `out` compressed as asked, reading it once: its diff_id comes from
/// the uncompressed bytes on their way into the encoder, the blob's digest and size from
/// what comes out. A source already stored with the asked codec is copied as it is.
pub fn produce_blob(layer: &Layer, compression: Compression, out: &File) -> Result<Produced> {
    let mut at = OffsetSink::at(out, 0);
    produce_into(layer, compression, &mut at)
}

/// [`produce_blob`] into any sink (an upload's body, say), flushed at the end.
pub fn produce_into(
    layer: &Layer,
    compression: Compression,
    out: &mut dyn Sink,
) -> Result<Produced> {
    let stored = layer.source.codec();
    let produced = if compression.codec == Codec::None {
        write_plain(layer, out)?
    } else if stored == compression.codec {
        copy_stored(layer, out)?
    } else {
        let mut sink = BlobSink::new(compression, out)?;
        emit_uncompressed(layer, &mut sink)?;
        sink.finish()?
    };
    match &layer.diff_id {
        Some(known) if *known != produced.diff_id => bail!(
            "its uncompressed bytes hash to {}, not to the diff_id {known}",
            produced.diff_id
        ),
        _ => Ok(produced),
    }
}

/// The uncompressed layer as the blob (its digest is the diff_id); copied in the kernel
/// when nothing needs hashing: store paths whose diff_id was recorded at build time.
/// Bytes read from a file (an archive member, a layout's blob) are always hashed, so a
/// blob that does not match its digest is refused.
fn write_plain(layer: &Layer, out: &mut dyn Sink) -> Result<Produced> {
    let (diff_id, size) = match (&layer.diff_id, &layer.source) {
        (Some(known), Source::StorePaths(_)) => {
            emit(layer, out)?;
            out.flush()?;
            (known.clone(), layer.source.stored_len())
        }
        _ => {
            let mut hashing = Hashing::new(out);
            emit_uncompressed(layer, &mut hashing)?;
            hashing.flush()?;
            let size = hashing.count;
            (hashing.finish(), size)
        }
    };
    Ok(Produced {
        digest: diff_id.clone(),
        diff_id,
        size,
    })
}

/// A stored blob copied as it is, hashed on the way (and checked against its descriptor,
/// when it has one), and decompressed on the way too: its diff_id comes from the bytes,
/// so a blob that is intact but holds another layer (or bad compressed data) is refused.
fn copy_stored(layer: &Layer, out: &mut dyn Sink) -> Result<Produced> {
    let mut hashing = Hashing::new(out);
    let decoding =
        compress::Decoding::new(layer.source.codec(), HashingWriter::new(std::io::sink()))?;
    let mut tee = Decoded {
        out: &mut hashing,
        decoding,
        buf: Vec::new(),
        what: &layer.what,
    };
    emit(layer, &mut tee)?;
    let diff = tee
        .decoding
        .finish()
        .with_context(|| format!("{}: cannot decompress", layer.what))?;
    hashing.flush()?;
    let size = hashing.count;
    let blob_digest = hashing.finish();
    if let Some(blob) = &layer.blob {
        if blob.descriptor.digest != blob_digest {
            bail!(
                "blob {} does not match its digest (its bytes hash to {blob_digest})",
                blob.descriptor.digest
            );
        }
    }
    Ok(Produced {
        diff_id: diff.finish_digest().0,
        digest: blob_digest,
        size,
    })
}

/// Passes a stored blob on and decompresses it on the way.
struct Decoded<'a, 'b> {
    out: &'a mut Hashing<'b>,
    decoding: compress::Decoding<HashingWriter<std::io::Sink>>,
    buf: Vec<u8>,
    what: &'a str,
}

impl Sink for Decoded<'_, '_> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.decoding
            .write_all(bytes)
            .with_context(|| format!("{}: cannot decompress", self.what))?;
        self.out.write_all(bytes)
    }

    fn copy_from(&mut self, file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
        copy_by_writes(self, |s| &mut s.buf, file, path, offset, len)
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush()
    }
}

/// Hashes what it is given (the diff_id), compresses it, and hashes and counts what the
/// encoder writes to the sink.
struct BlobSink<'a> {
    diff: sha2::Sha256,
    encoder: Encoder<HashingWriter<SinkWriter<'a>>>,
    buf: Vec<u8>,
}

impl<'a> BlobSink<'a> {
    fn new(compression: Compression, out: &'a mut dyn Sink) -> Result<Self> {
        Ok(BlobSink {
            diff: sha2::Sha256::new(),
            encoder: compression.encoder(HashingWriter::new(SinkWriter(out)))?,
            buf: Vec::new(),
        })
    }

    fn finish(self) -> Result<Produced> {
        let counted = self.encoder.finish()?;
        let size = counted.count;
        let (digest, out) = counted.finish_digest();
        out.0.flush()?;
        Ok(Produced {
            diff_id: Digest::from_sha256(self.diff.finalize().into()),
            digest,
            size,
        })
    }
}

impl Sink for BlobSink<'_> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.diff.update(bytes);
        self.encoder.write_all(bytes).context("cannot write blob")
    }

    fn copy_from(&mut self, file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
        copy_by_writes(self, |s| &mut s.buf, file, path, offset, len)
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A sink as a writer (for encoders).
struct SinkWriter<'a>(&'a mut dyn Sink);

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .write_all(buf)
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
