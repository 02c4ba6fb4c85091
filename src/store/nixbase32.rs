//! Nix's base-32 encoding (the alphabet without e, o, t, u; least significant digit last).
//!
//! Owned here because the nix-compat crate on crates.io is an empty placeholder.

/// The 32 characters Nix uses, in digit order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Length of the encoding of `n` bytes.
pub fn encoded_len(n: usize) -> usize {
    (n * 8).div_ceil(5)
}

/// Encodes bytes the way `nix hash to-base32` does.
pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let low = bytes[i] as u16 >> j;
        let high = if i + 1 < bytes.len() {
            (bytes[i + 1] as u16) << (8 - j)
        } else {
            0
        };
        out.push(ALPHABET[((low | high) & 0x1f) as usize] as char);
    }
    out
}

/// Decodes a Nix base-32 string; `None` for a bad character or non-zero padding bits.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let len = text.len() * 5 / 8;
    let mut out = vec![0u8; len];
    for (n, c) in text.bytes().rev().enumerate() {
        let digit = ALPHABET.iter().position(|&a| a == c)? as u16;
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let shifted = digit << j;
        if i < len {
            out[i] |= shifted as u8;
        } else if shifted & 0xff != 0 {
            return None;
        }
        let carry = (shifted >> 8) as u8;
        if i + 1 < len {
            out[i + 1] |= carry;
        } else if carry != 0 {
            return None;
        }
    }
    Some(out)
}

/// True when every character of `text` is in the Nix base-32 alphabet.
pub fn is_valid(text: &str) -> bool {
    text.bytes().all(|c| ALPHABET.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for len in [0usize, 1, 5, 20, 32] {
            let bytes: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            let text = encode(&bytes);
            assert_eq!(text.len(), encoded_len(len));
            assert_eq!(decode(&text).unwrap(), bytes);
        }
    }

    #[test]
    fn known_value() {
        // sha256("") in Nix base-32, as printed by `nix hash to-base32`.
        let digest =
            hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .unwrap();
        assert_eq!(
            encode(&digest),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
    }

    #[test]
    fn rejects_bad_characters() {
        assert!(decode("0e").is_none());
        assert!(!is_valid("abcu"));
    }
}
