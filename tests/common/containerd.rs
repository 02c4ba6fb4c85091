//! A containerd of the test's own, and an image it can run.

use super::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What the runnable image's entrypoint prints.
pub const HELLO: &str = "hello from app\n";

/// A containerd of the test's own (root, state and socket in a temporary directory, the
/// CRI plugin off, so it serves nothing but its socket); stopped when dropped.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Containerd {
    pub fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("ctd")
            .tempdir_in("/tmp")
            .unwrap();
        let config = write_tmp(
            dir.path(),
            "config.toml",
            b"version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
        );
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--address")
            .arg(dir.path().join("sock"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("containerd");
        let ctd = Containerd { dir, child };
        for _ in 0..100 {
            if ctd
                .ctr()
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return ctd;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("containerd did not start");
    }

    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.dir.path().join("sock"));
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The golden conf `default` over a base image whose only layer is a static busybox as
/// `/bin/sh`, so that its `/bin/app` (a `#!/bin/sh` script) runs.
pub fn runnable_conf(dir: &Path) -> PathBuf {
    let golden = read_json(&golden_conf("default", dir));
    let src = dir.join("shell-src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", src.join("bin/sh")).unwrap();
    let layer = dir.join("shell-layer");
    run(stevedore()
        .arg("customisation-layer")
        .arg(&src)
        .arg("-o")
        .arg(&layer));
    let mut base = golden.clone();
    base["store_layers"] = json!([]);
    base["customisation_layer"] = json!(layer);
    base["config"] = json!({});
    base["repo_tag"] = json!("shell:base");
    let base_conf = write_tmp(dir, "shell.conf.json", base.to_string().as_bytes());
    let base_tar = dir.join("shell.tar");
    run(stevedore()
        .arg("build-layered")
        .arg(&base_conf)
        .arg("-o")
        .arg(&base_tar));
    let mut conf = golden;
    conf["from_image"] = json!(base_tar);
    write_tmp(dir, "runnable.conf.json", conf.to_string().as_bytes())
}
