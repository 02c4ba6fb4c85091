//! A file tree in memory, as a directory holds it once archives are extracted into it:
//! paths (as components) to GNU tar entries, kept in the order GNU tar's `--sort=name`
//! archives them (component by component, bytewise). What a path replaces, what a
//! parent defaults to, and which copy of a path wins are the caller's rules.

use super::gnu::Item;
use super::kind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A path as its components (no empty or `.` ones); the root is empty.
pub type Key = Vec<Vec<u8>>;

/// Paths to their entries.
#[derive(Clone, Default)]
pub struct Tree(BTreeMap<Key, Item>);

impl Tree {
    pub fn get(&self, key: &[Vec<u8>]) -> Option<&Item> {
        self.0.get(key)
    }

    /// Every path and its entry, in `--sort=name` order (the root first).
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Item)> {
        self.0.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Key, &mut Item)> {
        self.0.iter_mut()
    }

    /// Puts `item` at `key`, replacing the entry there (not those below it).
    pub fn insert(&mut self, key: Key, item: Item) {
        self.0.insert(key, item);
    }

    /// As [`Tree::insert`], each missing parent of `key` added as a copy of `dir`.
    pub fn insert_with_parents(&mut self, key: Key, item: Item, dir: &Item) {
        for depth in 1..key.len() {
            if !self.0.contains_key(&key[..depth]) {
                self.0.insert(key[..depth].to_vec(), dir.clone());
            }
        }
        self.0.insert(key, item);
    }

    pub fn remove(&mut self, key: &[Vec<u8>]) -> Option<Item> {
        self.0.remove(key)
    }

    /// Removes everything below `key` (not `key` itself).
    pub fn remove_below(&mut self, key: &[Vec<u8>]) {
        let below: Vec<Key> = (self.0.range(key.to_vec()..))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(key))
            .filter(|k| k.len() > key.len())
            .cloned()
            .collect();
        for k in below {
            self.0.remove(&k);
        }
    }

    /// Removes `key` and everything below it.
    pub fn remove_subtree(&mut self, key: &[Vec<u8>]) {
        self.remove_below(key);
        self.0.remove(key);
    }

    /// Adds the entries of `other` whose paths this tree does not have yet.
    pub fn add_missing(&mut self, other: Tree) {
        for (k, v) in other.0 {
            self.0.entry(k).or_insert(v);
        }
    }

    /// The entries as named archive members: the root as `./` (with the tree's own
    /// root entry, or else `root`), then each path after `prefix`, directories ending
    /// in `/`.
    pub fn into_items(mut self, root: Item, prefix: &[u8]) -> Vec<Item> {
        let root = self.0.remove(&Vec::new()).unwrap_or(root);
        let mut items = vec![Item {
            name: b"./".to_vec(),
            ..root
        }];
        for (key, item) in self.0 {
            let mut name = prefix.to_vec();
            name.extend(key.join(&b'/'));
            if item.kind == kind::DIR {
                name.push(b'/');
            }
            items.push(Item { name, ..item });
        }
        items
    }
}

/// Where the path `key` is below the directory `root`.
pub fn path(root: &Path, key: &[Vec<u8>]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut path = root.to_path_buf();
    for c in key {
        path.push(std::ffi::OsStr::from_bytes(c));
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> Key {
        crate::tar::reader::components(path.as_bytes())
    }

    fn names(tree: Tree) -> Vec<String> {
        let root = Item::root_owned(kind::DIR, 0o755);
        (tree.into_items(root, b"./").iter())
            .map(|i| String::from_utf8_lossy(&i.name).into_owned())
            .collect()
    }

    /// Each directory's entries by name, then theirs: `a/b/...` before `a/b.d`, as GNU
    /// tar's `--sort=name` has them.
    #[test]
    fn parents_implied_removal_and_name_order() {
        let dir = Item::root_owned(kind::DIR, 0o755);
        let file = Item::root_owned(kind::REG, 0o644);
        let mut tree = Tree::default();
        for p in ["a/b/c", "a/b.d", "a/b/e", "a-z", "x/y"] {
            tree.insert_with_parents(key(p), file.clone(), &dir);
        }
        assert_eq!(
            names(tree.clone()),
            ["./", "./a/", "./a/b/", "./a/b/c", "./a/b/e", "./a/b.d", "./a-z", "./x/", "./x/y"]
        );
        tree.remove_below(&key("a/b"));
        tree.remove_subtree(&key("x"));
        assert_eq!(names(tree), ["./", "./a/", "./a/b/", "./a/b.d", "./a-z"]);
    }
}
