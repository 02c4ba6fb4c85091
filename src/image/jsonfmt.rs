//! JSON text as the tools in nixpkgs' buildImage print it: jq (`jq .`: 2-space indent,
//! raw UTF-8) for the image config and manifest, and jshon (jansson with a 1-space
//! indent, `/` escaped as `\/`) for the legacy layer `json` and `repositories`.
//!
//! Numbers follow each tool: jq 1.6 turns every number into a double (infinities
//! become ±DBL_MAX, underflow 0) and prints its shortest digits; jansson keeps integers
//! as 64-bit integers and reals as doubles (`%.17g`), and refuses integers outside
//! 64 bits ("too big integer") and reals that overflow ("real number overflow").

use super::json::{self, Dialect};
use anyhow::{bail, Result};
use serde_json::Value;
use std::fmt::Write;

/// `jq .` output, with the trailing newline.
pub fn jq(value: &Value) -> String {
    let dialect = Dialect {
        indent: Some(2),
        item_separator: ",",
        key_separator: ": ",
        string: jq_string,
        number: |text| Ok(jq_number(text)),
        newline: true,
    };
    json::print(value, &dialect).expect("jq prints every number")
}

/// jshon output, with the trailing newline; an error for a number jansson refuses.
pub fn jshon(value: &Value) -> Result<String> {
    let dialect = Dialect {
        indent: Some(1),
        item_separator: ",",
        key_separator: ": ",
        string: jshon_string,
        number: jshon_number,
        newline: true,
    };
    json::print(value, &dialect)
}

/// A JSON number as jq 1.6 prints it (`jvp_dtoa_fmt` of the double): the shortest
/// digits that read back, an exponent (`e+NN`, at least two digits) when the point is
/// 4 or more places left of them or over 15 places right of them.
pub fn jq_number(text: &str) -> String {
    let x: f64 = text.parse().unwrap_or(f64::NAN);
    if x.is_nan() {
        return "null".into();
    }
    let x = x.clamp(-f64::MAX, f64::MAX);
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0");
    }
    let (digits, decpt) = shortest_digits(x.abs());
    let len = digits.len() as i32;
    let body = if decpt <= -4 || decpt > len + 15 {
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() { "" } else { "." };
        let exp = decpt - 1;
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{first}{point}{rest}e{exp_sign}{:02}", exp.abs())
    } else if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat(decpt.unsigned_abs() as usize))
    } else if decpt >= len {
        format!("{digits}{}", "0".repeat((decpt - len) as usize))
    } else {
        let (whole, frac) = digits.split_at(decpt as usize);
        format!("{whole}.{frac}")
    };
    format!("{sign}{body}")
}

/// The shortest decimal digits of a positive finite `x` that read back as `x`, and the
/// position of the decimal point relative to them (`x = 0.DIGITS * 10^decpt`). When
/// two such strings are equally near `x`, the even one, as David Gay's `dtoa` (jq's)
/// picks it; Rust's shortest form would take the upper one.
fn shortest_digits(x: f64) -> (String, i32) {
    let shortest = split_exp(&format!("{x:e}"));
    let nearest = format!("{x:.*e}", shortest.0.len() - 1);
    if nearest.parse::<f64>() == Ok(x) {
        split_exp(&nearest)
    } else {
        shortest
    }
}

/// `d.ddde±N` to its digits (trailing zeros dropped) and decimal point position `N+1`.
fn split_exp(sci: &str) -> (String, i32) {
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits = mantissa.replace('.', "");
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    (digits.to_string(), exp + 1)
}

/// A JSON number as jansson reads and jshon prints it: integers as 64-bit integers,
/// reals as `%.17g` (with `.0` added to whole numbers); what jansson refuses is an error.
pub fn jshon_number(text: &str) -> Result<String> {
    if !text.contains(['.', 'e', 'E']) {
        return match text.parse::<i64>() {
            Ok(n) => Ok(n.to_string()),
            Err(_) if text.starts_with('-') => {
                bail!(
                    "number {} is out of range for jshon (too big negative integer)",
                    short(text)
                )
            }
            Err(_) => bail!(
                "number {} is out of range for jshon (too big integer)",
                short(text)
            ),
        };
    }
    let x: f64 = text.parse().unwrap_or(f64::NAN);
    if !x.is_finite() {
        bail!(
            "number {} is out of range for jshon (real number overflow)",
            short(text)
        );
    }
    let g = format_g17(x);
    Ok(if g.contains(['.', 'e']) {
        g
    } else {
        format!("{g}.0")
    })
}

/// A number's text for an error message, cut when long.
fn short(text: &str) -> String {
    if text.len() <= 40 {
        return text.to_string();
    }
    format!("{}... ({} characters)", &text[..30], text.len())
}

/// C's `%.17g`, with jansson's exponent (no `+`, no leading zeros).
fn format_g17(x: f64) -> String {
    let sci = format!("{x:.16e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
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

/// A string as jq prints it: raw UTF-8, control characters and DEL as `\u00XX`.
fn jq_string(out: &mut String, s: &str) {
    json::quote(out, s, |out, c| {
        if (c as u32) < 0x20 || c == '\u{7f}' {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    });
}

/// A string as jansson prints it: raw UTF-8, `/` as `\/`, control characters as
/// `\u00XX`.
fn jshon_string(out: &mut String, s: &str) {
    json::quote(out, s, |out, c| {
        if c == '/' {
            out.push_str("\\/");
        } else if (c as u32) < 0x20 {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    });
}
