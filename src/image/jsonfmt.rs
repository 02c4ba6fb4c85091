//! JSON text as the tools in nixpkgs' buildImage print it: jq (`jq .`: 2-space indent,
//! raw UTF-8) for the image config and manifest, and jshon (jansson with a 1-space
//! indent, `/` escaped as `\/`) for the legacy layer `json` and `repositories`.

use serde_json::Value;
use std::fmt::Write;

/// Output conventions of one tool.
#[derive(Clone, Copy)]
struct Style {
    indent: usize,
    escape_slash: bool,
}

/// `jq .` output, with the trailing newline.
pub fn jq(value: &Value) -> String {
    let mut out = String::new();
    write(
        &mut out,
        value,
        Style {
            indent: 2,
            escape_slash: false,
        },
        0,
    );
    out.push('\n');
    out
}

/// jshon output, with the trailing newline.
pub fn jshon(value: &Value) -> String {
    let mut out = String::new();
    write(
        &mut out,
        value,
        Style {
            indent: 1,
            escape_slash: true,
        },
        0,
    );
    out.push('\n');
    out
}

fn write(out: &mut String, value: &Value, style: Style, depth: usize) {
    let pad = |out: &mut String, d: usize| {
        out.push('\n');
        out.push_str(&" ".repeat(style.indent * d));
    };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(&n.to_string(), style)),
        Value::String(s) => string(out, s, style),
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Object(o) if o.is_empty() => out.push_str("{}"),
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(out, depth + 1);
                write(out, v, style, depth + 1);
            }
            pad(out, depth);
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, v)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(out, depth + 1);
                string(out, k, style);
                out.push_str(": ");
                write(out, v, style, depth + 1);
            }
            pad(out, depth);
            out.push('}');
        }
    }
}

/// Integers as written; floats as jq (shortest digits, exponent when the point is far
/// away) or jansson (`%.17g`, with `.0` added to whole numbers) prints them.
fn number(text: &str, style: Style) -> String {
    if !text.contains(['.', 'e', 'E']) {
        return text.to_string();
    }
    let x: f64 = text.parse().unwrap_or(f64::NAN);
    if style.escape_slash {
        let g = format_g17(x);
        return if g.contains(['.', 'e', 'n', 'i']) {
            g
        } else {
            format!("{g}.0")
        };
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("digits");
    let digits = mantissa.replace(['-', '.'], "").len() as i32;
    let decpt = exp + 1;
    if decpt <= -4 || decpt > digits + 5 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{x}")
    }
}

/// C's `%.17g`, with jansson's exponent (no `+`, no leading zeros).
fn format_g17(x: f64) -> String {
    let sci = format!("{x:.16e}");
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("digits");
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if (-4..17).contains(&exp) {
        trim(format!("{x:.*}", (16 - exp) as usize))
    } else {
        format!("{}e{exp}", trim(mantissa.to_string()))
    }
}

fn string(out: &mut String, s: &str, style: Style) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '/' if style.escape_slash => out.push_str("\\/"),
            c if (c as u32) < 0x20 || (c as u32 == 0x7f && !style.escape_slash) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
