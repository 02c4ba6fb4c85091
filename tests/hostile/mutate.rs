//! Mutators for the fuzzing harness, driven by a small deterministic PRNG: byte-level
//! ones (bit flips, interesting bytes, truncation, extension, chunk duplication and
//! deletion, splicing), tar-aware ones (numeric header fields set to huge octal or
//! base-256 values with the checksum fixed, type flags, names, PAX records with huge
//! sizes, GNU long-name records, global headers) and JSON-aware ones (numbers such as
//! 1e400, -0, 1e-400 or huge integers, wrong types, missing keys, deep nesting).

use super::{checksum_ok, fix_checksum, header, pax_record, push_padded, set_base256, set_octal};
use serde_json::Value;

/// splitmix64: small, fast, and the same sequence everywhere for a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True `num` times in `den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Sizes and other numbers that break readers that trust them.
pub const HUGE: [u64; 12] = [
    0,
    1,
    511,
    512,
    (1 << 20) + 1,
    (1 << 33) - 1,
    1 << 33,
    1 << 40,
    (1 << 63) - 1,
    1 << 63,
    u64::MAX - 511,
    u64::MAX,
];

const BYTES: [u8; 12] = [
    0, 0xff, 0x7f, 0x80, b'0', b'7', b' ', b'\n', b'/', b'.', b'x', b'L',
];

/// Applies 1 to 4 mutations, tar-aware ones most of the time.
pub fn tar_input(rng: &mut Rng, data: &mut Vec<u8>, donor: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        if rng.chance(2, 3) {
            tar(rng, data);
        } else {
            bytes(rng, data, donor);
        }
    }
}

/// Applies 1 to 3 mutations, JSON-aware ones most of the time.
pub fn json_input(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        if rng.chance(4, 5) {
            *data = json(rng, data);
        } else {
            bytes(rng, data, &[]);
        }
    }
}

/// One byte-level mutation.
pub fn bytes(rng: &mut Rng, data: &mut Vec<u8>, donor: &[u8]) {
    let len = data.len();
    let at = rng.below(len + 1);
    let most = if rng.chance(1, 2) { 16 } else { 4096 };
    let span = 1 + rng.below(most);
    match rng.below(9) {
        0 if len > 0 => data[at.min(len - 1)] ^= 1 << rng.below(8),
        1 if len > 0 => data[at.min(len - 1)] = *rng.pick(&BYTES),
        2 => data.truncate(at),
        3 => {
            let fill: Vec<u8> = (0..span).map(|_| rng.next() as u8).collect();
            data.extend(if rng.chance(1, 2) {
                fill
            } else {
                vec![0; span]
            });
        }
        4 if len > 0 => {
            let from = rng.below(len);
            let chunk = data[from..(from + span).min(len)].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, chunk);
        }
        5 => {
            let end = (at + span).min(len);
            data.drain(at..end);
        }
        6 => {
            let end = (at + span).min(len);
            for b in &mut data[at..end] {
                *b = rng.next() as u8;
            }
        }
        7 if !donor.is_empty() => {
            let from = rng.below(donor.len());
            let chunk = &donor[from..(from + span).min(donor.len())];
            let end = (at + chunk.len()).min(len);
            data.splice(at..end, chunk.iter().copied());
        }
        _ => {
            let text = rng.pick(&HUGE).to_string().into_bytes();
            let end = (at + text.len()).min(len);
            data.splice(at..end, text);
        }
    }
}

/// Offsets of the blocks that look like tar headers (a valid checksum).
pub fn headers(data: &[u8]) -> Vec<usize> {
    (0..data.len() / 512)
        .map(|i| i * 512)
        .filter(|&at| checksum_ok(&data[at..at + 512]))
        .collect()
}

/// One tar-aware mutation of a header (a byte-level one when there is none).
pub fn tar(rng: &mut Rng, data: &mut Vec<u8>) {
    let found = headers(data);
    if found.is_empty() {
        return bytes(rng, data, &[]);
    }
    let at = *rng.pick(&found);
    match rng.below(10) {
        0..=2 => numeric_field(rng, &mut data[at..at + 512]),
        3 => type_flag(rng, &mut data[at..at + 512]),
        4 => name_field(rng, &mut data[at..at + 512]),
        5 => insert(data, at, &pax_header(rng)),
        6 => insert(data, at, &long_name(rng)),
        7 => duplicate_member(rng, data, at),
        8 => data[at..at + 512].fill(0),
        _ => magic_and_prefix(rng, &mut data[at..at + 512]),
    }
}

fn insert(data: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    data.splice(at..at, bytes.iter().copied());
}

/// A numeric field set to a huge (or small) octal, base-256 or garbage value; the
/// checksum fixed most of the time so parsing goes deeper.
fn numeric_field(rng: &mut Rng, b: &mut [u8]) {
    let field = *rng.pick(&super::NUMERIC);
    let value = if rng.chance(1, 4) {
        rng.next() >> rng.below(64)
    } else {
        *rng.pick(&HUGE)
    };
    match rng.below(4) {
        0 => set_base256(b, field, value),
        1 => {
            let garbage: [&[u8]; 5] = [b"99999999999", b"-1", b"  ", b"0x10", b"\xff\xff\xff"];
            let g = *rng.pick(&garbage);
            let n = g.len().min(field.1);
            b[field.0..field.0 + n].copy_from_slice(&g[..n]);
        }
        _ if value < 1 << (3 * (field.1 - 1)) => set_octal(b, field, value),
        _ => set_base256(b, field, value),
    }
    if rng.chance(9, 10) {
        fix_checksum(b);
    }
}

fn type_flag(rng: &mut Rng, b: &mut [u8]) {
    b[156] = *rng.pick(b"0123456789xgLKSVDMNA\0");
    fix_checksum(b);
}

fn name_field(rng: &mut Rng, b: &mut [u8]) {
    let names: [&[u8]; 12] = [
        b"../../etc/passwd",
        b"/abs/file",
        b"a/../b",
        b".wh..wh..opq",
        b"usr/.wh.bin",
        b"manifest.json",
        b"a\nb",
        b"",
        b"./",
        b"usr/bin/tool/x",
        b"usr/bin",
        b"layer.tar",
    ];
    let (at, len) = if rng.chance(1, 3) {
        (157, 100)
    } else {
        (0, 100)
    };
    b[at..at + len].fill(0);
    let name = *rng.pick(&names);
    b[at..at + name.len()].copy_from_slice(name);
    fix_checksum(b);
}

fn magic_and_prefix(rng: &mut Rng, b: &mut [u8]) {
    let magics: [&[u8; 8]; 3] = [b"ustar\x0000", b"ustar  \0", b"garbage!"];
    b[257..265].copy_from_slice(*rng.pick(&magics));
    if rng.chance(1, 2) {
        b[345..500].fill(0);
        let prefixes = [&b"prefix"[..], b"..", b"/", &[b'p'; 155]];
        let prefix = *rng.pick(&prefixes);
        b[345..345 + prefix.len()].copy_from_slice(prefix);
    }
    fix_checksum(b);
}

/// A PAX header (`x`, sometimes global `g`) with hostile records, declaring its true
/// size or a huge one.
fn pax_header(rng: &mut Rng) -> Vec<u8> {
    let records: [(&str, String); 12] = [
        ("size", (u64::MAX - 511).to_string()),
        ("size", "-1".into()),
        ("size", "9".repeat(40)),
        ("size", (1u64 << 40).to_string()),
        ("path", "../../escape".into()),
        ("path", "n".repeat(300)),
        ("linkpath", "/etc/shadow".into()),
        ("uid", "99999999999999999999".into()),
        ("mtime", "1e400".into()),
        ("mtime", "nan".into()),
        ("SCHILY.xattr.user.x", "y".into()),
        ("hdrcharset", "BINARY".into()),
    ];
    let mut body = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let (k, v) = rng.pick(&records);
        body.extend(pax_record(k, v));
    }
    if rng.chance(1, 4) {
        body.extend_from_slice(b"99999999999 path=x\n");
    }
    let kind = if rng.chance(1, 5) { b'g' } else { b'x' };
    record(rng, b"././@PaxHeader", kind, &body)
}

/// A GNU long name or long link record, declaring its true size or a huge one.
fn long_name(rng: &mut Rng) -> Vec<u8> {
    let name = if rng.chance(1, 2) {
        "L".repeat(300)
    } else {
        "../".repeat(50)
    };
    let kind = if rng.chance(1, 2) { b'L' } else { b'K' };
    let mut body = name.into_bytes();
    body.push(0);
    record(rng, b"././@LongLink", kind, &body)
}

/// A header and its body; the declared size is a lie a third of the time.
fn record(rng: &mut Rng, name: &[u8], kind: u8, body: &[u8]) -> Vec<u8> {
    let size = if rng.chance(1, 3) {
        *rng.pick(&HUGE[4..])
    } else {
        body.len() as u64
    };
    let mut out = header(name, kind, size).to_vec();
    push_padded(&mut out, body);
    out
}

/// Copies a member (its header and up to 4 KiB after it) elsewhere in the archive.
fn duplicate_member(rng: &mut Rng, data: &mut Vec<u8>, at: usize) {
    let end = (at + 512 + 512 * rng.below(8)).min(data.len());
    let copy = data[at..end].to_vec();
    let found = headers(data);
    let to = *rng.pick(&found);
    insert(data, to, &copy);
}

/// One JSON-aware mutation of a document (a byte-level one when it is not JSON).
pub fn json(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
    let Ok(mut doc) = serde_json::from_slice::<Value>(text) else {
        let mut data = text.to_vec();
        bytes(rng, &mut data, &[]);
        return data;
    };
    let count = count_nodes(&doc);
    let target = rng.below(count);
    let mut seen = 0;
    mutate_node(rng, &mut doc, target, &mut seen);
    if rng.chance(1, 2) {
        serde_json::to_vec(&doc).unwrap()
    } else {
        serde_json::to_vec_pretty(&doc).unwrap()
    }
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Finds node number `target` (pre-order) and mutates it.
fn mutate_node(rng: &mut Rng, v: &mut Value, target: usize, seen: &mut usize) -> bool {
    if *seen == target {
        mutate_value(rng, v);
        return true;
    }
    *seen += 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| mutate_node(rng, x, target, seen)),
        Value::Object(o) => o.values_mut().any(|x| mutate_node(rng, x, target, seen)),
        _ => false,
    }
}

/// Numbers jq, jshon and serde treat differently or cannot hold.
pub const NUMBERS: [&str; 14] = [
    "1e400",
    "-1e400",
    "-0",
    "1e-400",
    "0",
    "-1",
    "3.5",
    "18446744073709551616",
    "18446744073709551615",
    "9223372036854775808",
    "-9223372036854775809",
    "1E2",
    "4294967296",
    "123456789012345678901234567890123456789012345678901234567890",
];

fn mutate_value(rng: &mut Rng, v: &mut Value) {
    match rng.below(7) {
        0 => *v = number(rng),
        1 => *v = wrong_type(rng),
        2 => remove_child(rng, v),
        3 => add_child(rng, v),
        4 => {
            for _ in 0..1 + rng.below(300) {
                *v = Value::Array(vec![v.take()]);
            }
        }
        5 => edit_string(rng, v),
        _ => duplicate_child(rng, v),
    }
}

fn number(rng: &mut Rng) -> Value {
    let text = *rng.pick(&NUMBERS);
    serde_json::from_str(text).unwrap()
}

fn wrong_type(rng: &mut Rng) -> Value {
    let values = [
        "\"string\"",
        "\"\"",
        "null",
        "true",
        "[]",
        "{}",
        "[1, \"a\"]",
        "{\"a\": 1}",
        "[[]]",
    ];
    let text = *rng.pick(&values);
    serde_json::from_str(text).unwrap()
}

fn remove_child(rng: &mut Rng, v: &mut Value) {
    match v {
        Value::Array(a) if !a.is_empty() => {
            let i = rng.below(a.len());
            a.remove(i);
        }
        Value::Object(o) if !o.is_empty() => {
            let i = rng.below(o.len());
            let key = o.keys().nth(i).cloned().unwrap_or_default();
            o.remove(&key);
        }
        _ => *v = Value::Null,
    }
}

fn add_child(rng: &mut Rng, v: &mut Value) {
    let value = if rng.chance(1, 2) {
        number(rng)
    } else {
        wrong_type(rng)
    };
    match v {
        Value::Array(a) => a.push(value),
        Value::Object(o) => {
            let keys = ["path", "size", "Layers", "Config", "out", "x", "references"];
            o.insert(rng.pick(&keys).to_string(), value);
        }
        _ => *v = value,
    }
}

fn edit_string(rng: &mut Rng, v: &mut Value) {
    let Value::String(s) = v else {
        *v = Value::String("../x".into());
        return;
    };
    let edited = match rng.below(8) {
        0 => String::new(),
        1 => format!("{s}\nsecond line"),
        2 => format!("../{s}"),
        3 => format!("{s}/.."),
        4 => s.repeat(50),
        5 => "now".into(),
        6 => "/nonexistent/x".into(),
        _ => {
            let mut chars: Vec<char> = s.chars().collect();
            if !chars.is_empty() {
                let i = rng.below(chars.len());
                chars[i] = *rng.pick(&['0', 'é', '/', '\u{0}', 'Z', '.']);
            }
            chars.into_iter().collect()
        }
    };
    *s = edited;
}

fn duplicate_child(rng: &mut Rng, v: &mut Value) {
    match v {
        Value::Array(a) if !a.is_empty() => {
            let x = a[rng.below(a.len())].clone();
            let at = rng.below(a.len() + 1);
            a.insert(at, x);
        }
        Value::Number(_) => *v = number(rng),
        _ => edit_string(rng, v),
    }
}
