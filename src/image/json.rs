//! One JSON printer for every tool whose output stevedore reproduces (Python's
//! `json.dumps`, jq, jshon): it walks arrays and objects, indents, separates and prints
//! empty collections; a [`Dialect`] says how the tool escapes strings, prints numbers
//! (or refuses them), indents and separates. The dialects are in `pyjson` and `jsonfmt`.

use anyhow::Result;
use serde_json::Value;

/// How one tool prints JSON.
pub struct Dialect {
    /// Spaces per level, each item on its own line; `None` prints everything on one line.
    pub indent: Option<usize>,
    /// After every item but the last (before the line break, when indenting).
    pub item_separator: &'static str,
    /// Between a key and its value.
    pub key_separator: &'static str,
    /// Appends a string literal, quotes included.
    pub string: fn(&mut String, &str),
    /// A number's text as the tool prints it (from its JSON text), or why it refuses it.
    pub number: fn(&str) -> Result<String>,
    /// Ends the output with a newline.
    pub newline: bool,
}

/// `value` printed in `dialect`; an error when the dialect refuses a number.
pub fn print(value: &Value, dialect: &Dialect) -> Result<String> {
    let mut out = String::new();
    write(&mut out, value, dialect, 0)?;
    if dialect.newline {
        out.push('\n');
    }
    Ok(out)
}

fn write(out: &mut String, value: &Value, d: &Dialect, depth: usize) -> Result<()> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&(d.number)(&n.to_string())?),
        Value::String(s) => (d.string)(out, s),
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Object(o) if o.is_empty() => out.push_str("{}"),
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                item_start(out, d, i, depth + 1);
                write(out, v, d, depth + 1)?;
            }
            line_break(out, d, depth);
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, v)) in o.iter().enumerate() {
                item_start(out, d, i, depth + 1);
                (d.string)(out, k);
                out.push_str(d.key_separator);
                write(out, v, d, depth + 1)?;
            }
            line_break(out, d, depth);
            out.push('}');
        }
    }
    Ok(())
}

/// What comes before item `i` of a collection whose items are at `depth`.
fn item_start(out: &mut String, d: &Dialect, i: usize, depth: usize) {
    if i > 0 {
        out.push_str(d.item_separator);
    }
    line_break(out, d, depth);
}

/// A line break and the indentation of `depth`, when indenting.
fn line_break(out: &mut String, d: &Dialect, depth: usize) {
    if let Some(n) = d.indent {
        out.push('\n');
        out.push_str(&" ".repeat(n * depth));
    }
}

/// Appends `s` as a JSON string literal: the escapes every tool shares (`\"`, `\\`,
/// `\n`, `\r`, `\t`, `\b`, `\f`), and `other` for every other character.
pub fn quote(out: &mut String, s: &str, other: impl Fn(&mut String, char)) {
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
            c => other(out, c),
        }
    }
    out.push('"');
}
