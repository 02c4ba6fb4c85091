//! What a registry asks for in its `WWW-Authenticate` challenge (RFC 6750 §3, and
//! distribution's token spec): `Basic realm=…`, or `Bearer realm=…,service=…,scope=…`,
//! and the token a bearer realm gives for a set of scopes (`repository:NAME:pull,push`).

use super::credentials::Credentials;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A parsed challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

impl Challenge {
    /// Parses a `WWW-Authenticate` header value.
    pub fn parse(header: &str) -> Result<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let params = params(rest);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Ok(Challenge::Basic),
            "bearer" => Ok(Challenge::Bearer {
                realm: params
                    .get("realm")
                    .cloned()
                    .context("a Bearer challenge without a realm")?,
                service: params.get("service").cloned(),
            }),
            _ => bail!("unsupported authentication scheme {scheme:?}"),
        }
    }
}

/// `key="value", key=value` pairs (keys lower-cased).
fn params(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => quoted_value(quoted),
            None => match after.split_once(',') {
                Some((v, n)) => (v.trim().to_string(), n),
                None => (after.trim().to_string(), ""),
            },
        };
        out.insert(key, value);
        rest = next.trim_start().trim_start_matches(',');
    }
    out
}

/// A quoted string's value (with `\` escapes) and what follows its closing quote.
fn quoted_value(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => value.extend(chars.next().map(|(_, c)| c)),
            '"' => return (value, &text[i + 1..]),
            c => value.push(c),
        }
    }
    (value, "")
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// The token URL for `scopes` at a bearer realm.
pub fn token_url(realm: &str, service: Option<&str>, scopes: &[String]) -> String {
    let mut query: Vec<String> = Vec::new();
    if let Some(s) = service {
        query.push(format!("service={}", encode(s)));
    }
    query.extend(scopes.iter().map(|s| format!("scope={}", encode(s))));
    match (query.is_empty(), realm.contains('?')) {
        (true, _) => realm.to_string(),
        (false, true) => format!("{realm}&{}", query.join("&")),
        (false, false) => format!("{realm}?{}", query.join("&")),
    }
}

/// The token in a token server's JSON reply (`token` or `access_token`).
pub fn parse_token(body: &[u8]) -> Result<String> {
    let reply: TokenReply =
        serde_json::from_slice(body).context("the token server's reply is not JSON")?;
    let token = reply
        .token
        .or(reply.access_token)
        .filter(|t| !t.is_empty())
        .context("the token server's reply has no token")?;
    // It goes into a header: visible ASCII only.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the token server's token is not a header value");
    }
    Ok(token)
}

/// `Authorization: Basic …` for credentials.
pub fn basic(credentials: &Credentials) -> String {
    use base64::Engine as _;
    let pair = format!("{}:{}", credentials.username, credentials.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="x""#).unwrap(),
            Challenge::Basic
        );
        assert!(Challenge::parse("Negotiate").is_err());
        assert_eq!(
            token_url(
                "http://h/t",
                Some("reg x"),
                &["repository:a/b:pull,push".into()]
            ),
            "http://h/t?service=reg%20x&scope=repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
