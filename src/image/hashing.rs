//! A writer that hashes (sha256) and counts what passes through it, so a layer's
//! diff_id is known the moment its last byte is written.

use sha2::{Digest, Sha256};
use std::io::{self, Write};

/// Passes writes to `inner`, hashing and counting them.
pub struct HashingWriter<W> {
    pub inner: W,
    sha: Sha256,
    pub count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            sha: Sha256::new(),
            count: 0,
        }
    }

    /// Lower-case hex sha256 of everything written, and the inner writer.
    pub fn finish(self) -> (String, W) {
        (hex::encode(self.sha.finalize()), self.inner)
    }

    /// The sha256 of everything written, as a digest, and the inner writer.
    pub fn finish_digest(self) -> (crate::image::digest::Digest, W) {
        let digest = crate::image::digest::Digest::from_sha256(self.sha.finalize().into());
        (digest, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// sha256 of `bytes` in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
