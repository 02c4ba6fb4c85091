//! One 512-byte tar header block: field offsets, octal numbers and the checksum,
//! shared by the CPython-compatible and GNU-compatible writers.

/// Byte offsets and lengths of the header fields (POSIX ustar layout).
pub mod field {
    pub const NAME: (usize, usize) = (0, 100);
    pub const MODE: (usize, usize) = (100, 8);
    pub const UID: (usize, usize) = (108, 8);
    pub const GID: (usize, usize) = (116, 8);
    pub const SIZE: (usize, usize) = (124, 12);
    pub const MTIME: (usize, usize) = (136, 12);
    pub const CHKSUM: (usize, usize) = (148, 8);
    pub const TYPE: usize = 156;
    pub const LINKNAME: (usize, usize) = (157, 100);
    pub const MAGIC: (usize, usize) = (257, 8);
    pub const UNAME: (usize, usize) = (265, 32);
    pub const GNAME: (usize, usize) = (297, 32);
    pub const DEVMAJOR: (usize, usize) = (329, 8);
    pub const DEVMINOR: (usize, usize) = (337, 8);
    pub const PREFIX: (usize, usize) = (345, 155);
}

/// POSIX magic and version (`ustar\0` `00`).
pub const POSIX_MAGIC: &[u8; 8] = b"ustar\x0000";
/// GNU magic and version (`ustar ` ` \0`).
pub const GNU_MAGIC: &[u8; 8] = b"ustar  \x00";

/// A header block under construction.
pub struct Block(pub [u8; 512]);

impl Default for Block {
    fn default() -> Self {
        Block([0; 512])
    }
}

impl Block {
    /// Copies `bytes` into a field, truncated to its length, the rest NUL.
    pub fn text(&mut self, (at, len): (usize, usize), bytes: &[u8]) {
        let n = bytes.len().min(len);
        self.0[at..at + n].copy_from_slice(&bytes[..n]);
    }

    /// Writes `value` as zero-padded octal filling all but the last byte, then NUL.
    /// Returns false (writing nothing) when it does not fit.
    pub fn octal(&mut self, (at, len): (usize, usize), value: u64) -> bool {
        let digits = len - 1;
        if digits < 22 && value >= 1u64 << (3 * digits) {
            return false;
        }
        put_octal(&mut self.0[at..at + digits], value);
        self.0[at + digits] = 0;
        true
    }

    /// Writes `value` in GNU base-256 (first byte 0x80, big-endian).
    pub fn base256(&mut self, (at, len): (usize, usize), value: u64) {
        let field = &mut self.0[at..at + len];
        field.fill(0);
        field[0] = 0x80;
        let bytes = value.to_be_bytes();
        field[len - 8..].copy_from_slice(&bytes);
    }

    /// Sets the type flag.
    pub fn kind(&mut self, kind: u8) {
        self.0[field::TYPE] = kind;
    }

    /// Fills in the checksum (`%06o\0 `) and returns the finished block.
    pub fn finish(mut self) -> [u8; 512] {
        let (at, len) = field::CHKSUM;
        self.0[at..at + len].fill(b' ');
        let sum: u32 = self.0.iter().map(|&b| b as u32).sum();
        put_octal(&mut self.0[at..at + 6], sum as u64);
        self.0[at + 6] = 0;
        self.0
    }
}

/// `value` as zero-padded octal filling `out` (it fits: callers check). Written by hand
/// because `format!` was a measurable share of streaming many small files.
fn put_octal(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value & 7) as u8;
        value >>= 3;
    }
}

/// Whether a header block's stored checksum matches its bytes, counted unsigned or
/// signed (old writers), with the checksum field itself counted as spaces.
pub fn checksum_ok(b: &[u8; 512]) -> bool {
    let Some(stored) = parse_number(&b[148..156]) else {
        return false;
    };
    let sum = |f: fn(u8) -> i64| -> i64 {
        b.iter()
            .enumerate()
            .map(|(i, &x)| if (148..156).contains(&i) { 32 } else { f(x) })
            .sum()
    };
    let stored = stored as i64;
    stored == sum(|x| x as i64) || stored == sum(|x| x as i8 as i64)
}

/// Reads an octal or base-256 numeric field as CPython's `nti` does.
pub fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] != 0x80 {
            return None;
        }
        let mut n: u64 = 0;
        for &b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(n);
    }
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let text = std::str::from_utf8(&field[..end]).ok()?.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_fits_or_refuses() {
        let mut b = Block::default();
        assert!(b.octal(field::MODE, 0o755));
        assert_eq!(&b.0[100..108], b"0000755\0");
        assert!(!b.octal(field::UID, 1 << 21));
        assert!(b.octal(field::SIZE, (1 << 33) - 1));
        assert!(!b.octal(field::SIZE, 1 << 33));
    }

    #[test]
    fn parses_numbers() {
        assert_eq!(parse_number(b"0000755\0"), Some(0o755));
        assert_eq!(parse_number(b"\0\0\0\0"), Some(0));
        let mut b = Block::default();
        b.base256(field::SIZE, 1 << 40);
        assert_eq!(parse_number(&b.0[124..136]), Some(1 << 40));
    }
}
