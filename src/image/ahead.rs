//! Work done ahead of the thread that streams an archive, on worker threads:
//! `Hashes` computes the diff_ids the stream needs before it can name a layer, and
//! `Gathered` reads each layer into an ordered queue of segments (header and small-file
//! bytes in memory, large files as open file ranges for the sink to copy without user
//! space), so the stream thread only writes. Gathered bytes are bounded: workers wait
//! when `BUDGET` bytes are queued beyond the layer being streamed, so memory stays small
//! whatever the image size; the layer being streamed is never held back.

use super::digest::Digest;
use super::layer_io::{digest, emit};
use super::model::Image;
use crate::tar::sink::{read_onto, Sink, ZERO_COPY_MIN};
use anyhow::{anyhow, Context, Result};
use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// Bytes gathered beyond the layer being streamed before workers wait.
const BUDGET: u64 = 32 << 20;
/// In-memory segments are cut at this size.
const CHUNK: usize = 1 << 20;
/// What an open file range counts against the budget (bounds open descriptors).
const FILE_COST: u64 = 64 << 10;
/// Written chunks kept for reuse (fresh ones cost page faults).
const SPARE_CHUNKS: usize = 16;

/// The diff_ids of the layers that lack one, hashed in layer order.
pub struct Hashes<'a> {
    image: &'a Image,
    pending: Vec<usize>,
    next: AtomicUsize,
    stopped: AtomicBool,
    done: Mutex<Vec<Option<Result<Digest>>>>,
    changed: Condvar,
}

impl<'a> Hashes<'a> {
    pub fn new(image: &'a Image) -> Self {
        Hashes {
            image,
            pending: (0..image.layers.len())
                .filter(|&i| image.layers[i].diff_id.is_none())
                .collect(),
            next: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            done: Mutex::new((0..image.layers.len()).map(|_| None).collect()),
            changed: Condvar::new(),
        }
    }

    /// A worker thread's loop: hash the next layer until none is left.
    pub fn work(&self) {
        while !self.stopped.load(Ordering::Relaxed) {
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&i) = self.pending.get(k) else {
                return;
            };
            let result = digest(&self.image.layers[i]);
            self.done.lock().expect("hashes")[i] = Some(result);
            self.changed.notify_all();
        }
    }

    /// Layer `i`'s diff_id (known, or waited for).
    pub fn get(&self, i: usize) -> Result<Digest> {
        if let Some(known) = &self.image.layers[i].diff_id {
            return Ok(known.clone());
        }
        let mut done = self.done.lock().expect("hashes");
        loop {
            if let Some(result) = done[i].take() {
                return result;
            }
            done = self.changed.wait(done).expect("hashes");
        }
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

/// A piece of a layer, in order.
pub enum Segment {
    Bytes(Vec<u8>),
    File {
        file: File,
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl Segment {
    fn cost(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.capacity() as u64,
            Segment::File { .. } => FILE_COST,
        }
    }

    /// Writes the segment to `out`.
    pub fn write_to(&self, out: &mut dyn Sink) -> Result<()> {
        match self {
            Segment::Bytes(b) => out.write_all(b),
            Segment::File {
                file,
                path,
                offset,
                len,
            } => out.copy_from(file, path, *offset, *len),
        }
    }
}

#[derive(Default)]
struct Queue {
    segments: VecDeque<Segment>,
    finished: bool,
    error: Option<anyhow::Error>,
}

#[derive(Default)]
struct GatherState {
    queues: Vec<Queue>,
    /// The layer being streamed.
    current: usize,
    /// Bytes queued for layers after `current`.
    ahead: u64,
    stopped: bool,
}

/// Every layer's bytes as ordered segments, gathered by worker threads in layer order.
pub struct Gathered<'a> {
    image: &'a Image,
    next: AtomicUsize,
    state: Mutex<GatherState>,
    changed: Condvar,
    spare: Mutex<Vec<Vec<u8>>>,
}

impl<'a> Gathered<'a> {
    pub fn new(image: &'a Image) -> Self {
        let state = GatherState {
            queues: (0..image.layers.len()).map(|_| Queue::default()).collect(),
            ..GatherState::default()
        };
        Gathered {
            image,
            next: AtomicUsize::new(0),
            state: Mutex::new(state),
            changed: Condvar::new(),
            spare: Mutex::default(),
        }
    }

    /// A worker thread's loop: gather the next layer until none is left.
    pub fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.image.layers.len() || self.state.lock().expect("gather").stopped {
                return;
            }
            let mut sink = GatherSink {
                gathered: self,
                layer: i,
                chunk: Vec::new(),
            };
            let result = emit(&self.image.layers[i], &mut sink).and_then(|()| sink.flush());
            let mut st = self.state.lock().expect("gather");
            let queue = &mut st.queues[i];
            queue.finished = true;
            queue.error = result.err();
            drop(st);
            self.changed.notify_all();
        }
    }

    /// Hands layer `i`'s segments to `each` in order, as they are gathered; layers must
    /// be taken in order.
    pub fn drain(&self, i: usize, mut each: impl FnMut(&Segment) -> Result<()>) -> Result<()> {
        {
            let mut st = self.state.lock().expect("gather");
            st.current = i;
            let queued: u64 = st.queues[i].segments.iter().map(Segment::cost).sum();
            st.ahead = st.ahead.saturating_sub(queued);
        }
        self.changed.notify_all();
        loop {
            let mut st = self.state.lock().expect("gather");
            let segment = loop {
                let queue = &mut st.queues[i];
                if let Some(s) = queue.segments.pop_front() {
                    break Some(s);
                }
                if queue.finished {
                    break None;
                }
                st = self.changed.wait(st).expect("gather");
            };
            match segment {
                Some(s) => {
                    drop(st);
                    each(&s)?;
                    self.recycle(s);
                }
                None => return st.queues[i].error.take().map_or(Ok(()), Err),
            }
        }
    }

    /// Queues a segment of layer `i`, waiting while too much is gathered ahead.
    fn push(&self, i: usize, segment: Segment) -> Result<()> {
        let cost = segment.cost();
        let mut st = self.state.lock().expect("gather");
        while i > st.current && st.ahead + cost > BUDGET && !st.stopped {
            st = self.changed.wait(st).expect("gather");
        }
        if st.stopped {
            return Err(anyhow!("stopped"));
        }
        if i > st.current {
            st.ahead += cost;
        }
        st.queues[i].segments.push_back(segment);
        drop(st);
        self.changed.notify_all();
        Ok(())
    }

    pub fn stop(&self) {
        self.state.lock().expect("gather").stopped = true;
        self.changed.notify_all();
    }

    /// Keeps a written chunk's memory for the next one.
    fn recycle(&self, segment: Segment) {
        if let Segment::Bytes(mut chunk) = segment {
            let mut spare = self.spare.lock().expect("spare");
            if spare.len() < SPARE_CHUNKS && chunk.capacity() == CHUNK {
                chunk.clear();
                spare.push(chunk);
            }
        }
    }

    /// An empty chunk of `CHUNK` bytes' capacity, reused if one is spare.
    fn fresh_chunk(&self) -> Vec<u8> {
        let reused = self.spare.lock().expect("spare").pop();
        reused.unwrap_or_else(|| Vec::with_capacity(CHUNK))
    }
}

/// The sink a worker writes one layer into: bytes cut into chunks, long file ranges
/// kept as open files.
struct GatherSink<'g, 'a> {
    gathered: &'g Gathered<'a>,
    layer: usize,
    chunk: Vec<u8>,
}

impl GatherSink<'_, '_> {
    fn push_chunk(&mut self) -> Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.chunk);
        self.gathered.push(self.layer, Segment::Bytes(chunk))
    }

    /// Makes room for `n` more bytes in the chunk without growing it past `CHUNK`.
    fn room_for(&mut self, n: usize) -> Result<()> {
        if self.chunk.len() + n > CHUNK {
            self.push_chunk()?;
        }
        if self.chunk.capacity() == 0 {
            self.chunk = self.gathered.fresh_chunk();
        }
        Ok(())
    }
}

impl Sink for GatherSink<'_, '_> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.room_for(bytes.len())?;
        self.chunk.extend_from_slice(bytes);
        Ok(())
    }

    fn copy_from(&mut self, file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
        if len < ZERO_COPY_MIN {
            self.room_for(len as usize)?;
            return read_onto(&mut self.chunk, file, path, offset, len);
        }
        self.push_chunk()?;
        let file = file
            .try_clone()
            .with_context(|| format!("{}: cannot open", path.display()))?;
        let segment = Segment::File {
            file,
            path: path.to_path_buf(),
            offset,
            len,
        };
        self.gathered.push(self.layer, segment)
    }

    fn flush(&mut self) -> Result<()> {
        self.push_chunk()
    }
}
