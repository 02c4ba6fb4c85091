#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit and integration tests (which build
# Nix fixtures and drive skopeo, umoci, GNU tar, fakeroot and lndir).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release
