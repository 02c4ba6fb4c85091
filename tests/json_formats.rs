//! The JSON that buildImage's files hold is formatted exactly as jq and jshon (the tools
//! nixpkgs runs) format the same document.

use std::io::Write;
use std::process::{Command, Stdio};

fn tool(cmd: &str, args: &[&str], input: &str) -> String {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

const DOC: &str = r#"{"architecture":"amd64","config":{"Cmd":["/bin/sh","-c","echo \"hi\"\tthere"],"Env":["PATH=/usr/bin:/bin","UNI=é😀","CTRL=a"],"ExposedPorts":{"80/tcp":{}},"Volumes":{},"Labels":{"x/y":"z"},"Memory":1073741824,"Cpu":0.5,"Big":1e3,"Small":0.0001,"Tiny":0.00001,"Huge":1.5e300,"Neg":-2,"On":true,"Off":false,"Nil":null},"created":"1970-01-01T00:00:01Z","os":"linux","preferLocalBuild":true,"variant":"","list":[]}"#;

#[test]
fn jq_pretty_printing() {
    let doc = DOC.replace("CTRL=a", "CTRL=a\\u0001\\u007f");
    let value: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        stevedore::image::jsonfmt::jq(&value),
        tool("jq", &["."], &doc)
    );
}

#[test]
fn jshon_printing() {
    let doc = DOC.replace("CTRL=a", "CTRL=a\\u0001\\u007f");
    let value: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let mut with_checksum = value.clone();
    with_checksum["checksum"] = serde_json::json!("tarsum.v1+sha256:abc");
    assert_eq!(
        stevedore::image::jsonfmt::jshon(&with_checksum),
        tool(
            "jshon",
            &["-s", "tarsum.v1+sha256:abc", "-i", "checksum"],
            &doc
        )
    );
    let repos = serde_json::json!({"registry.io/name": {"v1": "0123"}});
    assert_eq!(
        stevedore::image::jsonfmt::jshon(&repos),
        tool(
            "jshon",
            &[
                "-n",
                "object",
                "-n",
                "object",
                "-s",
                "0123",
                "-i",
                "v1",
                "-i",
                "registry.io/name"
            ],
            ""
        )
    );
}
