//! Writing an image as a docker archive (Docker Image Spec v1.2, the manifest-only
//! shape nixpkgs' streamer writes): layers as `<diff_id>/layer.tar`, then the config
//! `<sha256>.json`, then `manifest.json`, all in CPython's PAX tar format.
//!
//! Two writers with identical output. `write_stream` writes to any `Sink` in order: a
//! layer's member name holds its diff_id, so layers whose diff_id is not known yet are
//! hashed ahead on worker threads (reading their files once), then written from their
//! files again, which a pipe or a file takes without the bytes passing through user
//! space; nothing is spooled, so memory stays small whatever the image size.
//! `write_file` lays the archive out in advance (every size is known from metadata) and
//! lets threads write their layers straight into place, hashing those it must.

use crate::image::ahead::{Gathered, Hashes};
use crate::image::compress::{Codec, Compression};
use crate::image::config;
use crate::image::digest::Digest;
use crate::image::layer_io::{digest, emit};
use crate::image::model::{Image, Layer};
use crate::tar::pyheader::TarInfo;
use crate::tar::sink::{write_zeros, Hashing, OffsetSink, Sink, WriteSink};
use crate::tar::{padded, BLOCK, RECORD};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// What was written: the diff_ids in layer order and the config's digest.
#[derive(Debug, Clone)]
pub struct Written {
    pub diff_ids: Vec<Digest>,
    pub config_digest: Digest,
}

/// Writes `image` as a docker archive to `out`, in order. With `verify`, every layer is
/// hashed while it is written and a diff_id known in advance that does not match its
/// bytes is an error naming the layer.
pub fn write_stream(image: &Image, out: &mut dyn Sink, verify: bool) -> Result<Written> {
    let hashes = Hashes::new(image);
    let gathered = Gathered::new(image);
    std::thread::scope(|scope| {
        for _ in 0..rayon::current_num_threads().max(1) {
            scope.spawn(|| hashes.work());
            scope.spawn(|| gathered.work());
        }
        let result = stream_members(image, &hashes, &gathered, out, verify);
        hashes.stop();
        gathered.stop();
        result
    })
}

fn stream_members(
    image: &Image,
    hashes: &Hashes,
    gathered: &Gathered,
    out: &mut dyn Sink,
    verify: bool,
) -> Result<Written> {
    let mut offset = 0u64;
    let mut diff_ids = Vec::new();
    for (i, layer) in image.layers.iter().enumerate() {
        let diff_id = hashes.get(i)?;
        let header = image.member_header(i, &diff_id).encode();
        out.write_all(&header)?;
        if verify && layer.source.codec() == Codec::None {
            let mut hashing = Hashing::new(out);
            gathered.drain(i, |segment| segment.write_to(&mut hashing))?;
            check_digest(layer, &diff_id, &hashing.finish())?;
        } else {
            if verify {
                check_digest(layer, &diff_id, &digest(layer)?)?;
            }
            gathered.drain(i, |segment| segment.write_to(out))?;
        }
        let len = layer.source.stored_len();
        write_zeros(out, padded(len) - len)?;
        offset += header.len() as u64 + padded(len);
        diff_ids.push(diff_id);
    }
    let (tail, written) = tail_members(image, diff_ids);
    out.write_all(&tail)?;
    offset += tail.len() as u64;
    write_zeros(out, end_padding(offset))?;
    out.flush()?;
    Ok(written)
}

/// How a whole archive is compressed (nixpkgs' `compressor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compressor {
    None,
    Gz,
    Zstd,
}

/// Writes `image` into `file`, compressed as asked: uncompressed archives are laid out
/// and filled in parallel; compressed ones are streamed through the encoder.
pub fn write_compressed(
    image: &Image,
    file: &File,
    compressor: Compressor,
    verify: bool,
) -> Result<()> {
    match compressor {
        Compressor::None => write_file(image, file, verify).map(|_| ()),
        _ => encode_into(file, compressor, |w| {
            write_stream(image, &mut WriteSink::new(w), verify).map(|_| ())
        }),
    }
}

/// Copies `input` into `file`, compressed as asked.
pub fn compress_file(input: &mut dyn Read, file: &File, compressor: Compressor) -> Result<()> {
    encode_into(file, compressor, |w| {
        std::io::copy(input, w)
            .map(|_| ())
            .context("cannot write output")
    })
}

/// Runs `write` on an encoder into `file`: gzip without name or time, zstd level 3 on
/// all threads, or none.
fn encode_into(
    file: &File,
    compressor: Compressor,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    // The layers' encoders: their bytes depend only on the input (fixed-size feed, one
    // zstd thread), not on how the input arrives or on the thread count.
    let compression = match compressor {
        Compressor::None => Compression::NONE,
        Compressor::Gz => Compression::GZIP,
        Compressor::Zstd => Compression::ZSTD,
    };
    let mut enc = compression.encoder(BufWriter::new(file))?;
    write(&mut enc)?;
    enc.finish()?.flush().context("cannot write output")
}

/// Writes `image` as a docker archive into `file` (which should be empty), producing
/// layers in parallel, each straight into its place.
pub fn write_file(image: &Image, file: &File, verify: bool) -> Result<Written> {
    let placeholder = Digest::of(b"");
    let mut offsets = Vec::with_capacity(image.layers.len());
    let mut offset = 0u64;
    for (i, layer) in image.layers.iter().enumerate() {
        let header_len = image.member_header(i, &placeholder).encode().len() as u64;
        offsets.push(offset + header_len);
        offset += header_len + padded(layer.source.stored_len());
    }
    let diff_ids = fill_layers(image, file, &offsets, verify)?;
    for (i, layer) in image.layers.iter().enumerate() {
        let header = image.member_header(i, &diff_ids[i]).encode();
        let at = offsets[i] - header.len() as u64;
        file.write_all_at(&header, at)
            .context("cannot write output")?;
        let len = layer.source.stored_len();
        let pad = padded(len) - len;
        file.write_all_at(&vec![0u8; pad as usize], offsets[i] + len)
            .context("cannot write output")?;
    }
    let (tail, written) = tail_members(image, diff_ids);
    file.write_all_at(&tail, offset)
        .context("cannot write output")?;
    offset += tail.len() as u64;
    let pad = end_padding(offset);
    file.write_all_at(&vec![0u8; pad as usize], offset)
        .context("cannot write output")?;
    Ok(written)
}

/// Produces every layer at its offset, largest first, on all threads; returns diff_ids.
fn fill_layers(image: &Image, file: &File, offsets: &[u64], verify: bool) -> Result<Vec<Digest>> {
    let mut order: Vec<usize> = (0..image.layers.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(image.layers[i].source.stored_len()));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Digest>>>> =
        Mutex::new((0..image.layers.len()).map(|_| None).collect());
    rayon::scope(|s| {
        for _ in 0..rayon::current_num_threads().max(1) {
            s.spawn(|_| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = order.get(k) else { break };
                let mut out = OffsetSink::at(file, offsets[i]);
                let r = produce(&image.layers[i], &mut out, verify);
                results.lock().expect("results")[i] = Some(r);
            });
        }
    });
    let results = results.into_inner().expect("results");
    results
        .into_iter()
        .map(|r| r.expect("every layer produced"))
        .collect()
}

/// Writes a layer into `out`, hashing it when its diff_id is not known (or `verify`);
/// returns the diff_id.
fn produce(layer: &Layer, out: &mut dyn Sink, verify: bool) -> Result<Digest> {
    match &layer.diff_id {
        Some(known) if !verify || layer.source.codec() != Codec::None => {
            if verify {
                check_digest(layer, known, &digest(layer)?)?;
            }
            emit(layer, out)?;
            out.flush()?;
            Ok(known.clone())
        }
        _ => {
            let mut hashing = Hashing::new(out);
            emit(layer, &mut hashing)?;
            hashing.flush()?;
            let got = hashing.finish();
            if let Some(known) = &layer.diff_id {
                check_digest(layer, known, &got)?;
            }
            Ok(got)
        }
    }
}

/// An error naming the layer when its bytes hash to `got` rather than `expected`.
pub fn check_digest(layer: &Layer, expected: &Digest, got: &Digest) -> Result<()> {
    if got != expected {
        bail!(
            "{}: its bytes hash to {got}, not to the expected {expected}",
            layer.what
        );
    }
    Ok(())
}

/// The config and manifest members, and what they describe.
fn tail_members(image: &Image, diff_ids: Vec<Digest>) -> (Vec<u8>, Written) {
    let config_bytes = image.config.render(&diff_ids);
    let config_digest = Digest::of(&config_bytes);
    let config_name = format!("{}.json", config_digest.hex());
    let names: Vec<String> = (0..image.layers.len())
        .map(|i| String::from_utf8_lossy(&image.member_header(i, &diff_ids[i]).name).into_owned())
        .collect();
    let manifest = config::manifest(&config_name, &image.repo_tags, &names);
    let mut tail = Vec::new();
    for (name, bytes) in [
        (config_name.as_bytes(), &config_bytes),
        (b"manifest.json", &manifest),
    ] {
        tail.extend(TarInfo::file(name, bytes.len() as u64, image.archive.mtime).encode());
        tail.extend_from_slice(bytes);
        tail.resize(padded(tail.len() as u64) as usize, 0);
    }
    (
        tail,
        Written {
            diff_ids,
            config_digest,
        },
    )
}

/// Zeros that end an archive of `len` bytes: two blocks, then up to a whole record.
fn end_padding(len: u64) -> u64 {
    (len + 2 * BLOCK).div_ceil(RECORD) * RECORD - len
}
