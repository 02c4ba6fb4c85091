//! The iteration order CPython (3.11 and later, 64-bit, `PYTHONHASHSEED=0` as nixpkgs'
//! Python setup hook exports) gives a `set` of `frozenset`s of ASCII strings.
//!
//! auto-layer.py orders layers with a stable sort by closure size over
//! `set(layer_split.values())`, so layers of equal closure size come out in this order.
//! Reproduced here: SipHash-1-3 string hashes with a zero key, `frozenset.__hash__`,
//! and the set table's probing and resizing.

/// CPython's `hash(str)` for an ASCII string with a zero hash secret.
pub fn str_hash(s: &[u8]) -> u64 {
    if s.is_empty() {
        return 0;
    }
    let h = siphash13(s);
    if h == u64::MAX {
        u64::MAX - 1
    } else {
        h
    }
}

fn siphash13(data: &[u8]) -> u64 {
    let (mut v0, mut v1, mut v2, mut v3) = (
        0x736f6d6570736575u64,
        0x646f72616e646f6du64,
        0x6c7967656e657261u64,
        0x7465646279746573u64,
    );
    let round = |v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64| {
        *v0 = v0.wrapping_add(*v1);
        *v2 = v2.wrapping_add(*v3);
        *v1 = v1.rotate_left(13) ^ *v0;
        *v3 = v3.rotate_left(16) ^ *v2;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v1);
        *v0 = v0.wrapping_add(*v3);
        *v1 = v1.rotate_left(17) ^ *v2;
        *v3 = v3.rotate_left(21) ^ *v0;
        *v2 = v2.rotate_left(32);
    };
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let m = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        v3 ^= m;
        round(&mut v0, &mut v1, &mut v2, &mut v3);
        v0 ^= m;
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    let b = ((data.len() as u64) << 56) | u64::from_le_bytes(last);
    v3 ^= b;
    round(&mut v0, &mut v1, &mut v2, &mut v3);
    v0 ^= b;
    v2 ^= 0xff;
    for _ in 0..3 {
        round(&mut v0, &mut v1, &mut v2, &mut v3);
    }
    v0 ^ v1 ^ v2 ^ v3
}

/// CPython's `hash(frozenset(items))` given the items' hashes.
pub fn frozenset_hash(item_hashes: &[u64]) -> u64 {
    let shuffle = |h: u64| ((h ^ 89869747) ^ (h << 16)).wrapping_mul(3644798167);
    let mut hash = item_hashes.iter().fold(0u64, |acc, &h| acc ^ shuffle(h));
    hash ^= (item_hashes.len() as u64 + 1).wrapping_mul(1927868237);
    hash ^= (hash >> 11) ^ (hash >> 25);
    hash = hash.wrapping_mul(69069).wrapping_add(907133923);
    if hash == u64::MAX {
        590923713
    } else {
        hash
    }
}

const LINEAR_PROBES: usize = 9;
const PERTURB_SHIFT: u32 = 5;

/// Iteration order of a set built by adding distinct items with these hashes in turn:
/// returns the item indices in slot order.
pub fn set_order(hashes: &[u64]) -> Vec<usize> {
    let mut table: Vec<Option<usize>> = vec![None; 8];
    let mut used = 0usize;
    for (item, &hash) in hashes.iter().enumerate() {
        insert(&mut table, item, hash);
        used += 1;
        let mask = table.len() - 1;
        if used * 5 >= mask * 3 {
            let min_used = if used > 50000 { used * 2 } else { used * 4 };
            let mut size = 8;
            while size <= min_used {
                size <<= 1;
            }
            let old = std::mem::replace(&mut table, vec![None; size]);
            for i in old.into_iter().flatten() {
                insert(&mut table, i, hashes[i]);
            }
        }
    }
    table.into_iter().flatten().collect()
}

fn insert(table: &mut [Option<usize>], item: usize, hash: u64) {
    let mask = table.len() - 1;
    let mut perturb = hash;
    let mut i = (hash as usize) & mask;
    loop {
        let probes = if i + LINEAR_PROBES <= mask {
            LINEAR_PROBES
        } else {
            0
        };
        if let Some(slot) = table[i..=i + probes].iter_mut().find(|s| s.is_none()) {
            *slot = Some(item);
            return;
        }
        perturb >>= PERTURB_SHIFT;
        i = (i
            .wrapping_mul(5)
            .wrapping_add(1)
            .wrapping_add(perturb as usize))
            & mask;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values printed by CPython 3.11.7 with PYTHONHASHSEED=0:
    // hash("abc"), hash("/nix/store"), hash(frozenset()), hash(frozenset({"abc"})),
    // hash(frozenset({"abc", "/nix/store"})) (all mod 2**64), and the iteration order of
    // set(frozenset({str(i)}) for i in range(40)).
    #[test]
    fn hashes_match_cpython() {
        assert_eq!(str_hash(b"abc"), 13851880170939887858);
        assert_eq!(str_hash(b"/nix/store"), 15808985352877304895);
        assert_eq!(frozenset_hash(&[]), 133146708735736);
        assert_eq!(frozenset_hash(&[str_hash(b"abc")]), 20382892960253683);
        let two = [str_hash(b"abc"), str_hash(b"/nix/store")];
        assert_eq!(frozenset_hash(&two), 8285062990852268979);
    }

    #[test]
    fn set_order_matches_cpython() {
        let hashes: Vec<u64> = (0..40)
            .map(|i| frozenset_hash(&[str_hash(i.to_string().as_bytes())]))
            .collect();
        let expected = [
            18, 30, 29, 13, 0, 22, 28, 6, 31, 8, 36, 33, 26, 39, 21, 19, 27, 2, 23, 34, 9, 38, 15,
            12, 35, 32, 14, 11, 16, 25, 1, 4, 17, 10, 7, 24, 5, 37, 3, 20,
        ];
        assert_eq!(set_order(&hashes), expected);
    }
}
