//! Writing an image as a docker archive (Docker Image Spec v1.2, the manifest-only
//! shape nixpkgs' streamer writes): layers as `<diff_id>/layer.tar`, then the config
//! `<sha256>.json`, then `manifest.json`, all in CPython's PAX tar format.
//!
//! Two writers with identical output. `write_stream` writes to any `Write` in order,
//! producing the next store layers on other threads (spooled, memory bounded) while the
//! current one is copied out. `write_file` lays the archive out in advance (every size is
//! known from metadata) and lets threads write their layers straight into place.

use super::config;
use super::hashing::{sha256_hex, HashingWriter, OffsetWriter};
use super::model::{Image, Layer, Source};
use crate::tar::io::{self, write_zeros};
use crate::tar::pyheader::TarInfo;
use crate::tar::store_layer::StoreLayer;
use crate::tar::{padded, BLOCK, RECORD};
use anyhow::{anyhow, Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// Layers up to this size are spooled in memory when streaming; larger ones to a temp file.
const MEMORY_SPOOL: u64 = 16 << 20;
/// How many layers may be produced ahead of the one being streamed.
const LOOKAHEAD: usize = 2;
const IO_BUFFER: usize = 1 << 20;

/// What was written: the diff_ids in layer order and the config's digest.
#[derive(Debug, Clone)]
pub struct Written {
    pub diff_ids: Vec<String>,
    pub config_digest: String,
}

/// Writes `image` as a docker archive to `out`, in order.
pub fn write_stream(image: &Image, out: &mut dyn Write) -> Result<Written> {
    let producer = Producer::new(image);
    std::thread::scope(|scope| {
        for _ in 0..rayon::current_num_threads().max(1) {
            scope.spawn(|| producer.work());
        }
        let result = stream_members(image, &producer, out);
        producer.stop();
        result
    })
}

fn stream_members(image: &Image, producer: &Producer, out: &mut dyn Write) -> Result<Written> {
    let mut offset = 0u64;
    let mut diff_ids = Vec::new();
    let mut buf = vec![0u8; IO_BUFFER];
    for (i, layer) in image.layers.iter().enumerate() {
        let (diff_id, mut spool) = match &layer.diff_id {
            Some(d) => (d.clone(), None),
            None => {
                let (d, s) = producer.take(i)?;
                (d, Some(s))
            }
        };
        let header = layer_header(layer, &diff_id);
        out.write_all(&header).context("cannot write output")?;
        match spool.as_mut() {
            Some(s) => s.copy_to(out, &mut buf)?,
            None => copy_range(layer, out, &mut buf)?,
        }
        write_zeros(out, padded(layer.size) - layer.size)?;
        offset += header.len() as u64 + padded(layer.size);
        diff_ids.push(diff_id);
    }
    let (tail, written) = tail_members(image, diff_ids);
    out.write_all(&tail).context("cannot write output")?;
    offset += tail.len() as u64;
    write_zeros(out, end_padding(offset))?;
    out.flush().context("cannot write output")?;
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
pub fn write_compressed(image: &Image, file: &File, compressor: Compressor) -> Result<()> {
    match compressor {
        Compressor::None => write_file(image, file).map(|_| ()),
        _ => encode_into(file, compressor, |w| write_stream(image, w).map(|_| ())),
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
    let out = BufWriter::new(file);
    let mut out = match compressor {
        Compressor::None => {
            let mut out = out;
            write(&mut out)?;
            return out.flush().context("cannot write output");
        }
        Compressor::Gz => {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            write(&mut enc)?;
            enc.finish()?
        }
        Compressor::Zstd => {
            let mut enc = zstd::Encoder::new(out, 3)?;
            enc.multithread(rayon::current_num_threads() as u32)?;
            write(&mut enc)?;
            enc.finish()?
        }
    };
    out.flush().context("cannot write output")
}

/// Writes `image` as a docker archive into `file` (which should be empty), producing
/// layers in parallel, each straight into its place.
pub fn write_file(image: &Image, file: &File) -> Result<Written> {
    let mut offsets = Vec::with_capacity(image.layers.len());
    let mut offset = 0u64;
    for layer in &image.layers {
        let header_len = layer_header(layer, &"0".repeat(64)).len() as u64;
        offsets.push(offset + header_len);
        offset += header_len + padded(layer.size);
    }
    let diff_ids = fill_layers(image, file, &offsets)?;
    for (i, layer) in image.layers.iter().enumerate() {
        let header = layer_header(layer, &diff_ids[i]);
        let at = offsets[i] - header.len() as u64;
        file.write_all_at(&header, at)
            .context("cannot write output")?;
        let pad = padded(layer.size) - layer.size;
        file.write_all_at(&vec![0u8; pad as usize], offsets[i] + layer.size)
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
fn fill_layers(image: &Image, file: &File, offsets: &[u64]) -> Result<Vec<String>> {
    let mut order: Vec<usize> = (0..image.layers.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(image.layers[i].size));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<String>>>> =
        Mutex::new((0..image.layers.len()).map(|_| None).collect());
    rayon::scope(|s| {
        for _ in 0..rayon::current_num_threads().max(1) {
            s.spawn(|_| {
                let mut buf = vec![0u8; IO_BUFFER];
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    let mut out = OffsetWriter {
                        file,
                        pos: offsets[i],
                    };
                    let r = produce(&image.layers[i], &mut out, &mut buf);
                    results.lock().expect("results")[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("results")
        .into_iter()
        .map(|r| r.expect("every layer produced"))
        .collect()
}

/// Writes a layer's bytes to `out`, returning its diff_id.
fn produce(layer: &Layer, out: &mut dyn Write, buf: &mut Vec<u8>) -> Result<String> {
    match (&layer.source, &layer.diff_id) {
        (Source::StorePaths(store), _) => produce_store(store, out, buf),
        (Source::FileRange { .. }, Some(d)) => {
            copy_range(layer, out, buf)?;
            Ok(d.clone())
        }
        (Source::FileRange { .. }, None) => {
            let mut hashing = HashingWriter::new(out);
            copy_range(layer, &mut hashing, buf)?;
            Ok(hashing.finish().0)
        }
    }
}

fn produce_store(store: &StoreLayer, out: &mut dyn Write, buf: &mut Vec<u8>) -> Result<String> {
    let mut hashing = HashingWriter::new(BufWriter::with_capacity(IO_BUFFER, out));
    store.write_to(&mut hashing, buf)?;
    let (digest, mut inner) = hashing.finish();
    inner.flush().context("cannot write output")?;
    Ok(digest)
}

fn copy_range(layer: &Layer, out: &mut dyn Write, buf: &mut [u8]) -> Result<()> {
    let Source::FileRange { path, offset } = &layer.source else {
        return Err(anyhow!("not a file layer"));
    };
    io::copy_range(path, *offset, layer.size, out, buf)
}

fn layer_header(layer: &Layer, diff_id: &str) -> Vec<u8> {
    let mut info = layer.header.clone();
    info.name = layer.member_name(diff_id);
    info.size = layer.size;
    info.encode()
}

/// The config and manifest members, and what they describe.
fn tail_members(image: &Image, diff_ids: Vec<String>) -> (Vec<u8>, Written) {
    let config_bytes = config::image_config(image, &diff_ids);
    let config_digest = sha256_hex(&config_bytes);
    let config_name = format!("{config_digest}.json");
    let names: Vec<String> = image
        .layers
        .iter()
        .zip(&diff_ids)
        .map(|(l, d)| String::from_utf8_lossy(&l.member_name(d)).into_owned())
        .collect();
    let manifest = config::manifest(&config_name, &image.repo_tag, &names);
    let mut tail = Vec::new();
    for (name, bytes) in [
        (config_name.as_bytes(), &config_bytes),
        (b"manifest.json", &manifest),
    ] {
        tail.extend(TarInfo::file(name, bytes.len() as u64, image.mtime).encode());
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

/// A produced layer waiting to be streamed.
enum Spool {
    Memory(Vec<u8>),
    Disk(File),
}

impl Spool {
    fn copy_to(&mut self, out: &mut dyn Write, buf: &mut [u8]) -> Result<()> {
        match self {
            Spool::Memory(bytes) => out.write_all(bytes).context("cannot write output"),
            Spool::Disk(file) => {
                file.rewind()?;
                loop {
                    let n = file.read(buf).context("cannot read spooled layer")?;
                    if n == 0 {
                        return Ok(());
                    }
                    out.write_all(&buf[..n]).context("cannot write output")?;
                }
            }
        }
    }
}

/// Produces the store layers of an image ahead of the streamer, at most
/// `LOOKAHEAD` layers beyond the one being written.
struct Producer<'a> {
    image: &'a Image,
    pending: Vec<usize>,
    state: Mutex<ProducerState>,
    changed: Condvar,
}

#[derive(Default)]
struct ProducerState {
    next: usize,
    streamed: usize,
    stopped: bool,
    done: HashMap<usize, Result<(String, Spool)>>,
}

impl<'a> Producer<'a> {
    fn new(image: &'a Image) -> Self {
        let pending = (0..image.layers.len())
            .filter(|&i| image.layers[i].diff_id.is_none())
            .collect();
        Producer {
            image,
            pending,
            state: Mutex::default(),
            changed: Condvar::new(),
        }
    }

    fn work(&self) {
        let mut buf = vec![0u8; IO_BUFFER];
        loop {
            let k = {
                let mut st = self.state.lock().expect("producer");
                loop {
                    if st.stopped || st.next >= self.pending.len() {
                        return;
                    }
                    if st.next <= st.streamed + LOOKAHEAD {
                        break;
                    }
                    st = self.changed.wait(st).expect("producer");
                }
                st.next += 1;
                st.next - 1
            };
            let i = self.pending[k];
            let result = spool(&self.image.layers[i], &mut buf);
            self.state.lock().expect("producer").done.insert(i, result);
            self.changed.notify_all();
        }
    }

    fn take(&self, i: usize) -> Result<(String, Spool)> {
        let mut st = self.state.lock().expect("producer");
        loop {
            if let Some(r) = st.done.remove(&i) {
                st.streamed += 1;
                self.changed.notify_all();
                return r;
            }
            st = self.changed.wait(st).expect("producer");
        }
    }

    fn stop(&self) {
        self.state.lock().expect("producer").stopped = true;
        self.changed.notify_all();
    }
}

fn spool(layer: &Layer, buf: &mut Vec<u8>) -> Result<(String, Spool)> {
    if layer.size <= MEMORY_SPOOL {
        let mut bytes = Vec::with_capacity(layer.size as usize);
        let digest = produce(layer, &mut bytes, buf)?;
        return Ok((digest, Spool::Memory(bytes)));
    }
    let mut file = tempfile::tempfile().context("cannot create a temporary file")?;
    let digest = produce(layer, &mut file, buf)?;
    Ok((digest, Spool::Disk(file)))
}
