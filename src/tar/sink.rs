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
fn read_chunks(
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

/// Reads `len` bytes of `file` at `offset` onto the end of `pending`.
pub fn read_onto(
    pending: &mut Vec<u8>,
    file: &File,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<()> {
    let start = pending.len();
    pending.resize(start + len as usize, 0);
    let mut done = 0usize;
    while done < len as usize {
        let got = file
            .read_at(&mut pending[start + done..], offset + done as u64)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        if got == 0 {
            pending.truncate(start);
            bail!(
                "{}: shorter than expected (changed while archived?)",
                path.display()
            );
        }
        done += got;
    }
    Ok(())
}

/// A stream (a pipe, a socket, a terminal, a file written in order): buffered writes,
/// long file ranges with `sendfile`.
pub struct FdSink<'a> {
    fd: RawFd,
    pending: Vec<u8>,
    zero_copy: bool,
    _out: std::marker::PhantomData<&'a ()>,
}

impl<'a> FdSink<'a> {
    /// A sink writing to `out` (which it does not close).
    pub fn new(out: &'a impl AsRawFd) -> Self {
        FdSink {
            fd: out.as_raw_fd(),
            pending: Vec::with_capacity(BUFFER),
            zero_copy: true,
            _out: std::marker::PhantomData,
        }
    }

    fn write_fd(&mut self, mut bytes: &[u8]) -> Result<()> {
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

    /// `sendfile` of the range; false if the kernel cannot for this pair of files.
    fn send(&mut self, file: &File, path: &Path, offset: u64, len: u64) -> Result<bool> {
        let mut off = offset as libc::off_t;
        let end = offset + len;
        while (off as u64) < end {
            let want = (end - off as u64).min(1 << 30) as usize;
            let n = unsafe { libc::sendfile(self.fd, file.as_raw_fd(), &mut off, want) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                    Some(libc::EINVAL) | Some(libc::ENOSYS) if off as u64 == offset => {
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
        }
        Ok(true)
    }
}

impl Sink for FdSink<'_> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        if self.pending.len() + bytes.len() > BUFFER {
            self.flush()?;
        }
        if bytes.len() >= BUFFER {
            return self.write_fd(bytes);
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
            let mut buf = Vec::new();
            return read_chunks(file, path, offset, len, &mut buf, |c| self.write_fd(c));
        }
        self.flush()?;
        if !self.send(file, path, offset, len)? {
            self.zero_copy = false;
            return self.copy_from(file, path, offset, len);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let result = self.write_fd(&pending);
        self.pending = pending;
        self.pending.clear();
        result
    }
}

/// A file filled at a known position (threads writing disjoint parts of one archive):
/// buffered `pwrite`s, long file ranges with `copy_file_range`.
pub struct OffsetSink<'a> {
    file: &'a File,
    pos: u64,
    pending: Vec<u8>,
    zero_copy: bool,
}

impl<'a> OffsetSink<'a> {
    /// A sink writing into `file` from `pos` on.
    pub fn new(file: &'a File, pos: u64) -> Self {
        OffsetSink {
            file,
            pos,
            pending: Vec::with_capacity(BUFFER),
            zero_copy: true,
        }
    }

    /// `copy_file_range` of the range; false if the kernel cannot for these files.
    fn copy_range(&mut self, file: &File, path: &Path, offset: u64, len: u64) -> Result<bool> {
        let mut off_in = offset as libc::loff_t;
        let mut off_out = self.pos as libc::loff_t;
        let end = offset + len;
        while (off_in as u64) < end {
            let want = (end - off_in as u64).min(1 << 30) as usize;
            let n = unsafe {
                libc::copy_file_range(
                    file.as_raw_fd(),
                    &mut off_in,
                    self.file.as_raw_fd(),
                    &mut off_out,
                    want,
                    0,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                        if off_in as u64 == offset =>
                    {
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
        }
        self.pos = off_out as u64;
        Ok(true)
    }
}

impl Sink for OffsetSink<'_> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        if self.pending.len() + bytes.len() > BUFFER {
            self.flush()?;
        }
        if bytes.len() >= BUFFER {
            self.file
                .write_all_at(bytes, self.pos)
                .context("cannot write output")?;
            self.pos += bytes.len() as u64;
            return Ok(());
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
            let mut buf = Vec::new();
            return read_chunks(file, path, offset, len, &mut buf, |c| {
                self.file
                    .write_all_at(c, self.pos)
                    .context("cannot write output")?;
                self.pos += c.len() as u64;
                Ok(())
            });
        }
        self.flush()?;
        if !self.copy_range(file, path, offset, len)? {
            self.zero_copy = false;
            return self.copy_from(file, path, offset, len);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.file
            .write_all_at(&self.pending, self.pos)
            .context("cannot write output")?;
        self.pos += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }
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

    /// Lower-case hex sha256 of everything that passed.
    pub fn finish(self) -> String {
        hex::encode(self.sha.finalize())
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
