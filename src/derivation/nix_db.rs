//! The Nix database of an image (`includeNixDB`): what nixpkgs makes with
//! `nix-store --load-db` of the contents' closure plus a pinned registration time and
//! gcroots, written here directly so no nix or sqlite3 is needed at build time.
//!
//! `nix/var/nix/db/db.sqlite` holds Nix's schema (version 10, `nix/var/nix/db/schema`),
//! one ValidPaths row per closure path (hash as `sha256:<base16>`, narSize, the given
//! registration time) and its Refs (self-references included);
//! `nix/var/nix/gcroots/docker/<name>` links to each root.

use crate::store::{nixbase32, Graph};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Nix's local-store schema (src/libstore/schema.sql), version 10.
const SCHEMA: &str = "
create table if not exists ValidPaths (
    id               integer primary key autoincrement not null,
    path             text unique not null,
    hash             text not null,
    registrationTime integer not null,
    deriver          text,
    narSize          integer,
    ultimate         integer,
    sigs             text,
    ca               text
);
create table if not exists Refs (
    referrer  integer not null,
    reference integer not null,
    primary key (referrer, reference),
    foreign key (referrer) references ValidPaths(id) on delete cascade,
    foreign key (reference) references ValidPaths(id) on delete restrict
);
create index if not exists IndexReferrer on Refs(referrer);
create index if not exists IndexReference on Refs(reference);
create trigger if not exists DeleteSelfRefs before delete on ValidPaths
  begin
    delete from Refs where referrer = old.id and reference = old.id;
  end;
create table if not exists DerivationOutputs (
    drv  integer not null,
    id   text not null,
    path text not null,
    primary key (drv, id),
    foreign key (drv) references ValidPaths(id) on delete cascade
);
create index if not exists IndexDerivationOutputs on DerivationOutputs(path);
";

/// Writes the database for `graph` (every path of it) and gcroots for `roots` under `root`.
pub fn write(root: &Path, graph: &Graph, roots: &[String], registration_time: i64) -> Result<()> {
    let state = root.join("nix/var/nix");
    for dir in ["db", "gcroots/docker", "profiles", "temproots"] {
        std::fs::create_dir_all(state.join(dir))
            .with_context(|| format!("{}: cannot create", state.join(dir).display()))?;
    }
    std::fs::create_dir_all(root.join("nix/store"))?;
    let db_file = state.join("db/db.sqlite");
    if db_file.exists() {
        bail!("{}: already exists", db_file.display());
    }
    let mut db = rusqlite::Connection::open(&db_file)
        .with_context(|| format!("{}: cannot create", db_file.display()))?;
    db.execute_batch(SCHEMA)?;
    let tx = db.transaction()?;
    for node in &graph.nodes {
        tx.execute(
            "insert into ValidPaths (path, hash, registrationTime, narSize) values (?1, ?2, ?3, ?4)",
            rusqlite::params![node.path, base16_hash(&node.nar_hash)?, registration_time, node.nar_size as i64],
        )?;
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        let targets = node
            .references
            .iter()
            .copied()
            .chain(node.self_reference.then_some(i));
        for r in targets {
            tx.execute(
                "insert into Refs (referrer, reference) values (?1, ?2)",
                [i as i64 + 1, r as i64 + 1],
            )?;
        }
    }
    tx.commit()?;
    drop(db);
    std::fs::write(state.join("db/schema"), "10")?;
    for r in roots {
        let name = Path::new(r)
            .file_name()
            .with_context(|| format!("{r}: no file name"))?;
        let link = state.join("gcroots/docker").join(name);
        std::os::unix::fs::symlink(r, &link)
            .with_context(|| format!("{}: cannot create", link.display()))?;
    }
    Ok(())
}

/// `sha256:<nixbase32>` (as exportReferencesGraph gives it) to Nix's DB form, `sha256:<hex>`.
fn base16_hash(nar_hash: &str) -> Result<String> {
    let digest = nar_hash
        .strip_prefix("sha256:")
        .with_context(|| format!("narHash {nar_hash:?} is not sha256"))?;
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(nar_hash.to_string());
    }
    let bytes = nixbase32::decode(digest)
        .filter(|b| b.len() == 32)
        .with_context(|| format!("narHash {nar_hash:?} is not a sha256 in nixbase32"))?;
    Ok(format!("sha256:{}", hex::encode(bytes)))
}
