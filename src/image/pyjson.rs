//! JSON text exactly as Python's `json.dumps(value, indent=4)` writes it
//! (ensure_ascii, `": "` and `","` separators, no trailing newline), and Python's
//! `repr()` of a list of strings, for the image config and manifest nixpkgs writes.

use super::json::{self, Dialect};
use serde_json::Value;
use std::fmt::Write;

/// `json.dumps(value, indent=indent)`; `None` gives the compact one-line form.
pub fn dumps(value: &Value, indent: Option<usize>) -> String {
    let dialect = Dialect {
        indent,
        // Python's separators: `","` when indenting, `", "` otherwise.
        item_separator: if indent.is_some() { "," } else { ", " },
        key_separator: ": ",
        string: |out, s| out.push_str(&string(s)),
        number: |text| Ok(number(text)),
        newline: false,
    };
    json::print(value, &dialect).expect("Python prints every number")
}

/// A JSON number as Python prints what it parsed: integers verbatim, floats by `repr`.
fn number(text: &str) -> String {
    let is_int = !text.contains(['.', 'e', 'E']);
    if is_int {
        let digits = text.trim_start_matches('-');
        return if digits.bytes().all(|b| b == b'0') {
            "0".into()
        } else {
            text.into()
        };
    }
    float_repr(text.parse::<f64>().unwrap_or(f64::NAN))
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form below 1e-4 or from 1e16.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    if (-4..16).contains(&exp) {
        let plain = format!("{x}");
        return if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        };
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// A JSON string literal with Python's ensure_ascii escaping.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    json::quote(&mut out, s, |out, c| match c {
        ' '..='~' => out.push(c),
        _ => {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        }
    });
    out
}

/// Python's `repr()` of a list of strings (e.g. `['/nix/store/a', '/nix/store/b']`).
pub fn repr_list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| repr_str(s)).collect();
    format!("[{}]", parts.join(", "))
}

/// Python's `repr()` of a string. Non-ASCII characters are kept as printable except
/// controls, separators other than space, and surrogate escapes.
pub fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            c if printable(c) => out.push(c),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(quote);
    out
}

fn printable(c: char) -> bool {
    let n = c as u32;
    !(n < 0x20
        || (0x7f..=0xa0).contains(&n)
        || n == 0xad
        || c.is_whitespace()
        || (0x2028..=0x202f).contains(&n)
        || (0xd800..=0xdfff).contains(&n)
        || (0xe000..=0xf8ff).contains(&n)
        || n == 0xfeff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_indent_format() {
        let v = json!({"a": [1, "x"], "b": {}, "c": [], "d": {"e": null}});
        assert_eq!(
            dumps(&v, Some(4)),
            "{\n    \"a\": [\n        1,\n        \"x\"\n    ],\n    \"b\": {},\n    \"c\": [],\n    \"d\": {\n        \"e\": null\n    }\n}"
        );
        assert_eq!(
            dumps(&json!([["a", "b"], ["c"]]), None),
            "[[\"a\", \"b\"], [\"c\"]]"
        );
    }

    #[test]
    fn escapes_like_ensure_ascii() {
        assert_eq!(
            string("é\u{7f}😀\"\\\n"),
            "\"\\u00e9\\u007f\\ud83d\\ude00\\\"\\\\\\n\""
        );
    }

    #[test]
    fn floats_like_python() {
        assert_eq!(float_repr(1.0), "1.0");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(0.0001), "0.0001");
        assert_eq!(float_repr(0.00001), "1e-05");
        assert_eq!(float_repr(123.456), "123.456");
    }

    #[test]
    fn repr_quotes() {
        assert_eq!(repr_list(&["a".into(), "it's".into()]), "['a', \"it's\"]");
    }
}
