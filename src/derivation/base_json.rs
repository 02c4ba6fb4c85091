//! buildImage's baseJson step: the image JSON as Nix wrote it (`json`), with a top-level
//! `created = "now"` replaced by the build time in UTC, whole seconds (nixpkgs runs
//! `jq '.created = "$(TZ=utc date --iso-8601=seconds)"'`). Nothing else changes: a
//! `"now"` inside `config` (a label, say) is the user's.

use super::attrs;
use crate::image::time::Time;
use anyhow::{Context, Result};
use serde_json::{Map, Value};

/// Runs the step: reads `.attrs.json`, writes `outputs.out`.
pub fn run() -> Result<()> {
    let attrs = attrs::load()?;
    let out = attrs::output(&attrs, "out")?;
    let text = attrs::string(&attrs, "json").context("no json attribute")?;
    let json = resolve_created(&text, Time::now()).context("json attribute")?;
    std::fs::write(&out, json).with_context(|| format!("{}: cannot write", out.display()))
}

/// `text` with a top-level `"created": "now"` set to `now` (whole seconds); otherwise
/// `text` unchanged.
pub fn resolve_created(text: &str, now: Time) -> Result<String> {
    let mut doc: Map<String, Value> = serde_json::from_str(text).context("not a JSON object")?;
    match doc.get_mut("created") {
        Some(created) if created == "now" => {
            let time = Time::from_timestamp(now.timestamp()).isoformat();
            eprintln!("stevedore: created = \"now\" is {time}");
            *created = Value::String(time);
            Ok(serde_json::to_string(&doc)?)
        }
        _ => Ok(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_top_level_created_is_resolved() {
        let now = Time::from_timestamp(1_700_000_000);
        let text = r#"{"architecture":"amd64","config":{"Labels":{"created":"now"}},"created":"now","os":"linux"}"#;
        assert_eq!(
            resolve_created(text, now).unwrap(),
            r#"{"architecture":"amd64","config":{"Labels":{"created":"now"}},"created":"2023-11-14T22:13:20+00:00","os":"linux"}"#
        );
        let fixed = r#"{"config":{"Labels":{"created":"now"}},"created":"1970-01-01T00:00:01Z"}"#;
        assert_eq!(resolve_created(fixed, now).unwrap(), fixed);
    }
}
