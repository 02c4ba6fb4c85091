//! Errors as the registry API reports them: an HTTP status and
//! `{"errors":[{"code":…,"message":…,"detail":…}]}`, the message one line.

use serde_json::{json, Value};

/// One error answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    /// The registry's error code (`MANIFEST_UNKNOWN`, `NAME_INVALID`, …).
    pub code: &'static str,
    pub message: String,
    pub detail: Value,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            // One line, whatever went into it.
            message: message.into().replace(['\n', '\r'], " "),
            detail: Value::Null,
        }
    }

    pub fn with_detail(mut self, detail: Value) -> ApiError {
        self.detail = detail;
        self
    }

    pub fn name_invalid(name: &str, why: &str) -> ApiError {
        ApiError::new(
            400,
            "NAME_INVALID",
            format!("invalid image name {name:?}: {why}"),
        )
        .with_detail(json!({ "name": name }))
    }

    pub fn tag_invalid(tag: &str) -> ApiError {
        ApiError::new(
            400,
            "TAG_INVALID",
            format!("invalid tag {tag:?}: expected [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"),
        )
        .with_detail(json!({ "tag": tag }))
    }

    pub fn digest_invalid(text: &str) -> ApiError {
        ApiError::new(
            400,
            "DIGEST_INVALID",
            format!("invalid digest {text:?}: expected sha256:<64 lower-case hex digits>"),
        )
    }

    /// Packages the package source does not have: every one of them named.
    pub fn packages_unknown(pkgs: &[String]) -> ApiError {
        ApiError::new(
            404,
            "MANIFEST_UNKNOWN",
            format!("Could not find Nix packages: {}", pkgs.join(", ")),
        )
        .with_detail(json!({ "pkgs": pkgs }))
    }

    pub fn manifest_unknown(what: &str) -> ApiError {
        ApiError::new(404, "MANIFEST_UNKNOWN", format!("manifest unknown: {what}"))
    }

    pub fn blob_unknown(digest: &str) -> ApiError {
        ApiError::new(404, "BLOB_UNKNOWN", format!("blob unknown: {digest}"))
            .with_detail(json!({ "digest": digest }))
    }

    /// A server-side failure (a Nix build, the storage).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "UNKNOWN", message)
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        let mut error = json!({ "code": self.code, "message": self.message });
        if !self.detail.is_null() {
            error["detail"] = self.detail.clone();
        }
        serde_json::to_vec(&json!({ "errors": [error] })).expect("JSON of strings")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_the_registry_json_on_one_line() {
        let e = ApiError::packages_unknown(&["nope".into(), "nada".into()]);
        let v: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["errors"][0]["code"], "MANIFEST_UNKNOWN");
        assert_eq!(
            v["errors"][0]["message"],
            "Could not find Nix packages: nope, nada"
        );
        assert_eq!(v["errors"][0]["detail"]["pkgs"], json!(["nope", "nada"]));
        let e = ApiError::internal("a\nb");
        assert_eq!(e.message, "a b");
        let v: Value = serde_json::from_slice(&e.body()).unwrap();
        assert!(v["errors"][0].get("detail").is_none());
    }
}
