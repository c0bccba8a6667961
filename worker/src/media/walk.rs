//! Walking a production's folder: every file with its size and modification time,
//! symlinks that leave the production's folder refused, and a digest of the whole listing.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rushes_common::media::MediaRoots;

/// A file found under the production folder.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the production folder, `/`-separated.
    pub rel: String,
    pub abs: PathBuf,
    pub size: i64,
    pub mtime_ns: i64,
}

/// Everything a walk found.
#[derive(Debug, Default)]
pub struct Tree {
    pub entries: Vec<Entry>,
    /// Paths left out, with the reason (a symlink out of the roots, an unreadable folder).
    pub refused: Vec<(String, String)>,
    /// Order-independent digest of every entry's path, size and mtime.
    pub digest: [u8; 16],
}

/// Lists `root` (a production's folder) recursively. Hidden names (`.DS_Store`, `._*`
/// resource forks) are skipped; symlinked files are followed only when their target
/// stays inside `root` itself — not another production's folder, not elsewhere in
/// `roots`; symlinked folders are not followed (no loops, no escapes).
pub fn walk(root: &Path, roots: &MediaRoots) -> std::io::Result<Tree> {
    let base = root.canonicalize()?;
    let mut tree = Tree::default();
    let mut sums = [0u64; 2];
    let mut pending: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    let mut first = true;
    while let Some((dir, prefix)) = pending.pop() {
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            // The production folder itself must be readable; a subfolder may not be.
            Err(err) if first => return Err(err),
            Err(err) => {
                tree.refused.push((prefix, format!("cannot read folder: {err}")));
                continue;
            }
        };
        first = false;
        for item in listing {
            let Ok(item) = item else { continue };
            let name = item.file_name();
            let Some(name) = name.to_str() else {
                let shown = format!("{prefix}{}", name.to_string_lossy());
                tree.refused.push((shown, "name is not valid UTF-8".into()));
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let rel = format!("{prefix}{name}");
            let Ok(kind) = item.file_type() else { continue };
            let path = item.path();
            let metadata = if kind.is_dir() {
                pending.push((path, format!("{rel}/")));
                continue;
            } else if kind.is_symlink() {
                match path.canonicalize() {
                    Ok(target) if !roots.contains(&target) => {
                        tree.refused.push((rel, "symlink leads outside the media roots".into()));
                        continue;
                    }
                    Ok(target) if !target.starts_with(&base) => {
                        tree.refused
                            .push((rel, "symlink leads outside the production's folder".into()));
                        continue;
                    }
                    Ok(target) if target.is_dir() => {
                        tree.refused.push((rel, "symlinked folders are not followed".into()));
                        continue;
                    }
                    Ok(target) => std::fs::metadata(&target),
                    Err(err) => {
                        tree.refused.push((rel, format!("broken symlink: {err}")));
                        continue;
                    }
                }
            } else if kind.is_file() {
                item.metadata()
            } else {
                continue;
            };
            let Ok(metadata) = metadata else { continue };
            let size = i64::try_from(metadata.len()).unwrap_or(i64::MAX);
            let mtime_ns = metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            for (sum, seed) in sums.iter_mut().zip(SEEDS) {
                *sum = sum.wrapping_add(entry_hash(seed, &rel, size, mtime_ns));
            }
            tree.entries.push(Entry {
                rel,
                abs: path,
                size,
                mtime_ns,
            });
        }
    }
    tree.digest[..8].copy_from_slice(&sums[0].to_le_bytes());
    tree.digest[8..].copy_from_slice(&sums[1].to_le_bytes());
    Ok(tree)
}

const SEEDS: [u64; 2] = [0xcbf2_9ce4_8422_2325, 0x9e37_79b9_7f4a_7c15];

/// FNV-1a over the entry, then a SplitMix64 finaliser so sums of many entries stay
/// well spread. Stable across builds (the digest is stored).
fn entry_hash(seed: u64, rel: &str, size: i64, mtime_ns: i64) -> u64 {
    let mut h = seed;
    let (size, mtime) = (size.to_le_bytes(), mtime_ns.to_le_bytes());
    let bytes = rel.as_bytes().iter().chain(&[0u8]).chain(&size).chain(&mtime);
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_their_production() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("rushes-walk-own-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("a/day1"))?;
        std::fs::create_dir_all(root.join("b"))?;
        std::fs::write(root.join("a/day1/c1.mov"), b"x")?;
        std::fs::write(root.join("b/secret.mov"), b"x")?;
        std::os::unix::fs::symlink(root.join("b/secret.mov"), root.join("a/peek.mov"))?;
        std::os::unix::fs::symlink("../b/secret.mov", root.join("a/relative.mov"))?;
        std::os::unix::fs::symlink(root.join("a/day1/c1.mov"), root.join("a/own.mov"))?;
        let roots = MediaRoots::new(std::slice::from_ref(&root));
        let tree = walk(&root.join("a"), &roots)?;
        let mut found: Vec<&str> = tree.entries.iter().map(|e| e.rel.as_str()).collect();
        found.sort_unstable();
        assert_eq!(found, ["day1/c1.mov", "own.mov"]);
        let mut refused: Vec<(&str, &str)> = tree.refused.iter().map(|(p, r)| (p.as_str(), r.as_str())).collect();
        refused.sort_unstable();
        assert_eq!(
            refused,
            [
                ("peek.mov", "symlink leads outside the production's folder"),
                ("relative.mov", "symlink leads outside the production's folder"),
            ]
        );
        std::fs::remove_dir_all(&dir)
    }

    #[test]
    fn walk_lists_files_refuses_escapes_and_digests() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("rushes-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("show/Card A"))?;
        std::fs::create_dir_all(dir.join("outside"))?;
        std::fs::write(root.join("show/Card A/clip é.mov"), b"x")?;
        std::fs::write(root.join("show/.DS_Store"), b"x")?;
        std::fs::write(dir.join("outside/secret.mov"), b"x")?;
        std::os::unix::fs::symlink(dir.join("outside/secret.mov"), root.join("show/leak.mov"))?;
        std::os::unix::fs::symlink(root.join("show/Card A/clip é.mov"), root.join("show/alias.mov"))?;
        let roots = MediaRoots::new(std::slice::from_ref(&root));
        let tree = walk(&root.join("show"), &roots)?;
        let mut found: Vec<&str> = tree.entries.iter().map(|e| e.rel.as_str()).collect();
        found.sort_unstable();
        assert_eq!(found, ["Card A/clip é.mov", "alias.mov"]);
        assert_eq!(tree.refused.len(), 1);
        assert_eq!(tree.refused[0].0, "leak.mov");
        let again = walk(&root.join("show"), &roots)?;
        assert_eq!(tree.digest, again.digest);
        std::fs::write(root.join("show/Card A/clip é.mov"), b"xy")?;
        assert_ne!(walk(&root.join("show"), &roots)?.digest, tree.digest);
        std::fs::remove_dir_all(&dir)
    }
}
