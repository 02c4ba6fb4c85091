//! Tar writing and reading: CPython-compatible (PAX) and GNU-compatible headers,
//! store-path walking in pathlib order, the store-layer and customisation-layer writers,
//! a small reader for base image archives, and file trees in memory to archive again.

pub mod block;
pub mod gnu;
pub mod io;
pub mod pyheader;
pub mod reader;
pub mod sink;
pub mod store_layer;
pub mod tree;
pub mod walk;

/// tar's block size.
pub const BLOCK: u64 = 512;
/// CPython's and GNU tar's default record size (20 blocks): archives are padded to it.
pub const RECORD: u64 = 10240;

/// Rounds `n` up to a whole number of blocks.
pub fn padded(n: u64) -> u64 {
    n.div_ceil(BLOCK) * BLOCK
}

/// Type flags.
pub mod kind {
    pub const REG: u8 = b'0';
    pub const SYMLINK: u8 = b'2';
    pub const CHAR: u8 = b'3';
    pub const BLOCK: u8 = b'4';
    pub const DIR: u8 = b'5';
    pub const FIFO: u8 = b'6';
    pub const PAX: u8 = b'x';
    pub const GNU_LONGNAME: u8 = b'L';
    pub const GNU_LONGLINK: u8 = b'K';
}
