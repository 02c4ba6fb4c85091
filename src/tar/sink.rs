//! Where archive bytes go. A `Sink` takes small writes (headers, padding, JSON) and
//! ranges of files; each kind of output copies file ranges the cheapest way it can:
//! a pipe or stream with `sendfile` (the kernel hands page-cache pages over, nothing
//! passes through user space), a file being filled at known offsets with
//! `copy_file_range`, anything else by reading into a buffer. `Hashing` wraps any sink
//! and sha256s what passes, reading file ranges once for both.
//!
//! Written by hand rather than with a crate: the standard library's `io::copy` only
//! picks `sendfile`/`copy_file_range` between whole files or sockets and pipes it can
//! see through, not at a file offset into a buffered output, which is what archives need.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Ranges at least this long go through the kernel's zero-copy paths; shorter ones are
/// read into the output buffer, which costs less than a flush and a system call each.
pub const ZERO_COPY_MIN: u64 = 64 << 10;
/// The pipe buffer asked for when the output is a pipe (Linux's default limit for
/// unprivileged processes, /proc/sys/fs/pipe-max-size).
const PIPE_SIZE: libc::c_int = 1 << 20;
/// Output buffered before a write system call.
const BUFFER: usize = 1 << 20;

/// An archive's output.
pub trait Sink {
    /// Appends `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> Result<()>;
    /// Appends `len` bytes of `file` (at `path`, for errors) starting at `offset`.
    fn copy_from(&mut self, file: &File, path: &Path, offset: u64, len: u64) -> Result<()>;
    /// Writes out anything buffered.
    fn flush(&mut self) -> Result<()>;
}

/// Appends `n` NUL bytes.
pub fn write_zeros(out: &mut dyn Sink, mut n: u64) -> Result<()> {
    const ZEROS: [u8; 4096] = [0; 4096];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// Appends exactly `len` bytes of the file at `path`.
pub fn copy_path(out: &mut dyn Sink, path: &Path, len: u64) -> Result<()> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    out.copy_from(&file, path, 0, len)
}

/// Reads `len` bytes of `file` at `offset` in chunks into `buf`, handing each to `each`.
pub fn read_chunks(
    file: &File,
    path: &Path,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    if buf.len() < BUFFER {
        buf.resize(BUFFER, 0);
    }
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let got = file
            .read_at(&mut buf[..want], offset + done)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if got == 0 {
            bail!(
                "{}: shorter than expected (changed while archived?)",
                path.display()
            );
        }
        each(&buf[..got])?;
        done += got as u64;
    }
    Ok(())
}

/// `Sink::copy_from` for sinks that take every byte through `write_all`: the file is
/// read in chunks into the sink's own buffer (`buf` picks it out of the sink).
pub fn copy_by_writes<S: Sink>(
    sink: &mut S,
    buf: fn(&mut S) -> &mut Vec<u8>,
    file: &File,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<()> {
    let mut chunk = std::mem::take(buf(sink));
    let result = read_chunks(file, path, offset, len, &mut chunk, |c| sink.write_all(c));
    *buf(sink) = chunk;
    result
}

/// Reads `len` bytes of `file` at `offset` onto the end of `pending`, straight into its
/// spare capacity (zeroing it first was a measurable share of streaming small files).
pub fn read_onto(
    pending: &mut Vec<u8>,
    file: &File,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<()> {
    let len = len as usize;
    pending.reserve(len);
    let mut done = 0usize;
    while done < len {
        let spare = &mut pending.spare_capacity_mut()[..len - done];
        // SAFETY: pread writes at most `spare.len()` bytes into spare capacity of
        // `pending`, and `set_len` below covers only the bytes it wrote.
        let got = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                (offset + done as u64) as libc::off_t,
            )
        };
        if got < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).with_context(|| format!("{}: cannot read", path.display()));
        }
        if got == 0 {
            bail!(
                "{}: shorter than expected (changed while archived?)",
                path.display()
            );
        }
        // SAFETY: the `got` bytes after the current length were just written by pread.
        unsafe { pending.set_len(pending.len() + got as usize) };
        done += got as usize;
    }
    Ok(())
}

/// Where a buffered sink's bytes end up, and how the kernel copies file ranges there.
pub trait Output {
    /// Writes all of `bytes`.
    fn put(&mut self, bytes: &[u8]) -> Result<()>;
    /// Copies the range in the kernel; `Ok(false)` if it cannot for these two files.
    fn copy_in_kernel(&mut self, file: &File, path: &Path, offset: u64, len: u64) -> Result<bool>;
}

/// A sink that buffers small writes and short file ranges, and hands long ranges to the
/// kernel (falling back to reading them if the kernel cannot).
pub struct Buffered<O: Output> {
    out: O,
    pending: Vec<u8>,
    zero_copy: bool,
}

/// A stream (a pipe, a socket, a terminal, a file written in order); long ranges go by
/// `sendfile`.
pub type FdSink<'a> = Buffered<Stream<'a>>;
/// A file filled from a known position (threads writing disjoint parts of one
/// archive); long ranges go by `copy_file_range`.
pub type OffsetSink<'a> = Buffered<At<'a>>;

impl<O: Output> Buffered<O> {
    pub fn new(out: O) -> Self {
        Buffered {
            out,
            pending: Vec::with_capacity(BUFFER),
            zero_copy: true,
        }
    }
}

impl<'a> FdSink<'a> {
    /// A sink writing to `out` (which it does not close).
    /// A pipe is grown to `PIPE_SIZE` (if the system allows): the reader then wakes up
    /// once a megabyte instead of once every 64 KiB, which halves the cost of the pipe.
    pub fn stream(out: &'a impl AsRawFd) -> Self {
        let fd = out.as_raw_fd();
        unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Buffered::new(Stream {
            fd,
            _out: std::marker::PhantomData,
        })
    }
}

impl<'a> OffsetSink<'a> {
    /// A sink writing into `file` from `pos` on.
    pub fn at(file: &'a File, pos: u64) -> Self {
        Buffered::new(At { file, pos })
    }
}

impl<O: Output> Sink for Buffered<O> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        if self.pending.len() + bytes.len() > BUFFER {
            self.flush()?;
        }
        if bytes.len() >= BUFFER {
            return self.out.put(bytes);
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    fn copy_from(&mut self, file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
        if len < ZERO_COPY_MIN || !self.zero_copy {
            if self.pending.len() as u64 + len > BUFFER as u64 {
                self.flush()?;
            }
            if len <= BUFFER as u64 {
                return read_onto(&mut self.pending, file, path, offset, len);
            }
            let (out, mut buf) = (&mut self.out, Vec::new());
            return read_chunks(file, path, offset, len, &mut buf, |c| out.put(c));
        }
        self.flush()?;
        if !self.out.copy_in_kernel(file, path, offset, len)? {
            self.zero_copy = false;
            return self.copy_from(file, path, offset, len);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let result = self.out.put(&self.pending);
        self.pending.clear();
        result
    }
}

/// A file descriptor written in order.
pub struct Stream<'a> {
    fd: RawFd,
    _out: std::marker::PhantomData<&'a ()>,
}

impl Output for Stream<'_> {
    fn put(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let n = unsafe { libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("cannot write output");
            }
            bytes = &bytes[n as usize..];
        }
        Ok(())
    }

    fn copy_in_kernel(&mut self, file: &File, path: &Path, offset: u64, len: u64) -> Result<bool> {
        kernel_copy(path, offset, len, |off, want| {
            let mut at = off as libc::off_t;
            unsafe { libc::sendfile(self.fd, file.as_raw_fd(), &mut at, want) }
        })
    }
}

/// A file written at a position that advances.
pub struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl Output for At<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all_at(bytes, self.pos)
            .context("cannot write output")?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn copy_in_kernel(&mut self, file: &File, path: &Path, offset: u64, len: u64) -> Result<bool> {
        let start = self.pos;
        let copied = kernel_copy(path, offset, len, |off, want| {
            let mut off_in = off as libc::loff_t;
            let mut off_out = (start + off - offset) as libc::loff_t;
            let out = self.file.as_raw_fd();
            unsafe {
                libc::copy_file_range(file.as_raw_fd(), &mut off_in, out, &mut off_out, want, 0)
            }
        })?;
        if copied {
            self.pos += len;
        }
        Ok(copied)
    }
}

/// Runs `call(offset, want)` (a `sendfile` or `copy_file_range` returning how many bytes
/// it copied) until `len` bytes from `offset` are copied; `Ok(false)` if the very first
/// call says the kernel cannot copy between these files.
fn kernel_copy(
    path: &Path,
    offset: u64,
    len: u64,
    mut call: impl FnMut(u64, usize) -> isize,
) -> Result<bool> {
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(1 << 30) as usize;
        let n = call(offset + done, want);
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR | libc::EAGAIN) => continue,
                Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) if done == 0 => {
                    return Ok(false)
                }
                _ => return Err(e).with_context(|| format!("{}: cannot copy", path.display())),
            }
        }
        if n == 0 {
            bail!(
                "{}: shorter than expected (changed while archived?)",
                path.display()
            );
        }
        done += n as u64;
    }
    Ok(true)
}

/// Any `Write` (an encoder, a buffer): file ranges are read and written.
pub struct WriteSink<W: Write> {
    pub inner: W,
    buf: Vec<u8>,
}

impl<W: Write> WriteSink<W> {
    pub fn new(inner: W) -> Self {
        WriteSink {
            inner,
            buf: Vec::new(),
        }
    }
}

impl<W: Write> Sink for WriteSink<W> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner.write_all(bytes).context("cannot write output")
    }

    fn copy_from(&mut self, file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
        let inner = &mut self.inner;
        read_chunks(file, path, offset, len, &mut self.buf, |c| {
            inner.write_all(c).context("cannot write output")
        })
    }

    fn flush(&mut self) -> Result<()> {
        self.inner.flush().context("cannot write output")
    }
}

/// Passes everything to `inner`, sha256-ing and counting it; file ranges are read once,
/// hashed, and written from the same buffer.
pub struct Hashing<'a> {
    inner: &'a mut dyn Sink,
    sha: Sha256,
    pub count: u64,
    buf: Vec<u8>,
}

impl<'a> Hashing<'a> {
    pub fn new(inner: &'a mut dyn Sink) -> Self {
        Hashing {
            inner,
            sha: Sha256::new(),
            count: 0,
            buf: Vec::new(),
        }
    }

    /// The sha256 of everything that passed.
    pub fn finish(self) -> crate::image::Digest {
        crate::image::Digest::from_sha256(self.sha.finalize().into())
    }
}

impl Sink for Hashing<'_> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.sha.update(bytes);
        self.count += bytes.len() as u64;
        self.inner.write_all(bytes)
    }

    fn copy_from(&mut self, file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
        let (sha, inner) = (&mut self.sha, &mut self.inner);
        read_chunks(file, path, offset, len, &mut self.buf, |c| {
            sha.update(c);
            inner.write_all(c)
        })?;
        self.count += len;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
}

/// Drops what it is given (under `Hashing`, to compute a digest without an output).
pub struct Discard;

impl Sink for Discard {
    fn write_all(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }

    fn copy_from(&mut self, file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
        let mut buf = Vec::new();
        read_chunks(file, path, offset, len, &mut buf, |_| Ok(()))
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}
