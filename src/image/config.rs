//! The image config and manifest.json bytes, formatted as nixpkgs' streamer writes
//! them (`json.dumps(..., indent=4)`, keys in its order), and the base Env overlay.

use super::digest::Digest;
use super::model::{history_comment, StreamerConfig};
use super::pyjson;
use serde_json::{json, Map, Value};

/// The streamer's image config JSON for the given diff_ids (in layer order).
pub fn streamer_config(s: &StreamerConfig, diff_ids: &[Digest]) -> Vec<u8> {
    let history: Vec<Value> = s
        .history
        .iter()
        .map(|paths| json!({"created": s.created, "comment": history_comment(paths)}))
        .collect();
    let mut top = Map::new();
    top.insert("created".into(), json!(s.created));
    top.insert("architecture".into(), s.architecture.clone());
    top.insert("os".into(), json!("linux"));
    top.insert("config".into(), s.config.clone());
    let ids: Vec<String> = diff_ids.iter().map(Digest::to_string).collect();
    top.insert("rootfs".into(), json!({"diff_ids": ids, "type": "layers"}));
    top.insert("history".into(), Value::Array(history));
    pyjson::dumps(&Value::Object(top), Some(4)).into_bytes()
}

/// manifest.json for one image.
pub fn manifest(config_name: &str, repo_tags: &[String], layer_names: &[String]) -> Vec<u8> {
    let mut entry = Map::new();
    entry.insert("Config".into(), json!(config_name));
    entry.insert("RepoTags".into(), json!(repo_tags));
    entry.insert("Layers".into(), json!(layer_names));
    pyjson::dumps(&Value::Array(vec![Value::Object(entry)]), Some(4)).into_bytes()
}

/// nixpkgs' `overlay_base_config`: the base's Env entries, then ours, one per variable
/// (the first position, the last value). Other base settings are not inherited.
pub fn overlay_env(base_config: &Value, mut config: Value) -> Value {
    let env_of = |v: &Value| -> Vec<Value> {
        v.get("Env")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let all: Vec<Value> = env_of(base_config)
        .into_iter()
        .chain(env_of(&config))
        .collect();
    if all.is_empty() {
        return config;
    }
    let mut resolved: indexmap::IndexMap<String, Value> = indexmap::IndexMap::new();
    for entry in all {
        let text = entry.as_str().unwrap_or_default();
        let key = text.split_once('=').map_or(text, |(k, _)| k).to_string();
        resolved.insert(key, entry);
    }
    if config.is_null() {
        config = json!({});
    }
    if let Some(map) = config.as_object_mut() {
        map.insert("Env".into(), Value::Array(resolved.into_values().collect()));
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_last_wins_at_first_position() {
        let base = json!({"Env": ["A=1", "LAST_LAYER=base", "B=2"]});
        let own = json!({"Cmd": ["x"], "Env": ["LAST_LAYER=child", "C=3"]});
        let merged = overlay_env(&base, own);
        assert_eq!(
            merged,
            json!({"Cmd": ["x"], "Env": ["A=1", "LAST_LAYER=child", "B=2", "C=3"]})
        );
    }

    #[test]
    fn env_absent_everywhere_stays_absent() {
        assert_eq!(
            overlay_env(&json!({}), json!({"Cmd": []})),
            json!({"Cmd": []})
        );
    }
}
