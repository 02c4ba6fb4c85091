//! The JSON that buildImage's files hold is formatted exactly as jq and jshon (the tools
//! nixpkgs runs) format the same document, numbers included: a differential property
//! test feeds random numbers (huge integers, big exponents, negative zero, tiny values,
//! many digits) to the real `jq` 1.6 and `jshon` and to stevedore's printers.

use proptest::prelude::*;
use std::io::Write;
use std::process::{Command, Stdio};
use stevedore::image::jsonfmt;

/// Runs a tool on `input`; its stdout, or `None` when it fails.
fn try_tool(cmd: &str, args: &[&str], input: &str) -> Option<String> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

fn tool(cmd: &str, args: &[&str], input: &str) -> String {
    try_tool(cmd, args, input).unwrap_or_else(|| panic!("{cmd} {args:?} failed on {input}"))
}

const DOC: &str = r#"{"architecture":"amd64","config":{"Cmd":["/bin/sh","-c","echo \"hi\"\tthere"],"Env":["PATH=/usr/bin:/bin","UNI=é😀","CTRL=a"],"ExposedPorts":{"80/tcp":{}},"Volumes":{},"Labels":{"x/y":"z"},"Memory":1073741824,"Cpu":0.5,"Big":1e3,"Small":0.0001,"Tiny":0.00001,"Huge":1.5e300,"Neg":-2,"On":true,"Off":false,"Nil":null},"created":"1970-01-01T00:00:01Z","os":"linux","preferLocalBuild":true,"variant":"","list":[]}"#;

#[test]
fn jq_pretty_printing() {
    let doc = DOC.replace("CTRL=a", "CTRL=a\\u0001\\u007f");
    let value: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(jsonfmt::jq(&value), tool("jq", &["."], &doc));
}

#[test]
fn jshon_printing() {
    let doc = DOC.replace("CTRL=a", "CTRL=a\\u0001\\u007f");
    let value: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let mut with_checksum = value.clone();
    with_checksum["checksum"] = serde_json::json!("tarsum.v1+sha256:abc");
    assert_eq!(
        jsonfmt::jshon(&with_checksum).unwrap(),
        tool(
            "jshon",
            &["-s", "tarsum.v1+sha256:abc", "-i", "checksum"],
            &doc
        )
    );
    let repos = serde_json::json!({"registry.io/name": {"v1": "0123"}});
    assert_eq!(
        jsonfmt::jshon(&repos).unwrap(),
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

#[test]
fn numbers_as_jq_and_jshon_print_them() {
    let cases = [
        ("100000000000000000000000000001", "1e+29", None),
        ("1e400", "1.7976931348623157e+308", None),
        ("-1e400", "-1.7976931348623157e+308", None),
        ("1e-400", "0", Some("0.0")),
        ("-1e-400", "-0", Some("-0.0")),
        ("-0", "-0", Some("0")),
        (
            "9223372036854775807",
            "9223372036854776000",
            Some("9223372036854775807"),
        ),
        ("9223372036854775808", "9223372036854776000", None),
        ("-9223372036854775809", "-9223372036854776000", None),
        ("1e15", "1000000000000000", Some("1000000000000000.0")),
        ("1e16", "1e+16", Some("10000000000000000.0")),
        ("0.00001", "1e-05", Some("1.0000000000000001e-5")),
        ("5e-324", "5e-324", Some("4.9406564584124654e-324")),
        // Halfway between two shortest forms: jq (David Gay's dtoa) takes the even one.
        (
            "1130132102978629.1628500254840151",
            "1130132102978629.2",
            Some("1130132102978629.2"),
        ),
    ];
    for (text, jq, jshon) in cases {
        assert_eq!(jsonfmt::jq_number(text), jq, "jq {text}");
        match jshon {
            Some(want) => assert_eq!(jsonfmt::jshon_number(text).unwrap(), want, "jshon {text}"),
            None => assert!(jsonfmt::jshon_number(text).is_err(), "jshon {text}"),
        }
    }
}

/// A valid JSON number's text, from the corners the printers must get right.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
        2 => "-?[1-9][0-9]{15,40}",
        1 => "-?[1-9][0-9]{0,3}(\\.[0-9]{1,5})?[eE][+-]?(30[0-9]|32[0-9]|400)",
        1 => "-?0\\.[0-9]{1,400}",
        1 => "-?[1-9][0-9]{300,400}(\\.[0-9]{1,3})?",
        1 => prop::sample::select(vec![
            "-0", "0", "-0.0", "0e0", "-0E-0", "9223372036854775807", "9223372036854775808",
            "-9223372036854775808", "-9223372036854775809", "18446744073709551616",
            "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308",
            "2.2250738585072014e-308", "2.4703282292062327e-324", "2.4703282292062328e-324",
            "4.9e-324", "1e400", "-1e400", "1e-400", "-1e-400", "1E2", "1.0", "0.1",
        ])
        .prop_map(String::from),
    ]
}

/// Compares stevedore's printers with `jq .` and `jshon` on one array of numbers; jshon
/// must refuse exactly the numbers stevedore refuses.
fn check_numbers(numbers: &[String]) {
    let doc = format!("[{}]", numbers.join(","));
    let value: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(jsonfmt::jq(&value), tool("jq", &["."], &doc), "jq on {doc}");
    let (good, bad): (Vec<&String>, Vec<&String>) = numbers
        .iter()
        .partition(|n| jsonfmt::jshon_number(&value_text(n)).is_ok());
    let good_doc = format!(
        "[{}]",
        good.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    let good_value: serde_json::Value = serde_json::from_str(&good_doc).unwrap();
    assert_eq!(
        jsonfmt::jshon(&good_value).unwrap(),
        tool("jshon", &[], &good_doc),
        "jshon on {good_doc}"
    );
    for n in bad {
        assert!(
            jsonfmt::jshon(&serde_json::from_str(n).unwrap()).is_err()
                && try_tool("jshon", &[], &format!("[{n}]")).is_none(),
            "jshon should refuse {n}"
        );
    }
}

/// The text serde_json keeps for a number (what the printers are given).
fn value_text(number: &str) -> String {
    serde_json::from_str::<serde_json::Value>(number)
        .unwrap()
        .to_string()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_numbers_match_jq_and_jshon(numbers in prop::collection::vec(number_text(), 1..64)) {
        check_numbers(&numbers);
    }
}
