//! Confinement of paths to the media roots: no `..`, nothing outside a root, no symlink
//! that leads out of one — and, for a file of a production, none that leads out of that
//! production's own folder.

use std::path::{Component, Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("no media roots are configured (RUSHES_MEDIA_ROOTS)")]
    NoRoots,
    #[error("path is empty")]
    Empty,
    #[error("path must not contain `..`")]
    ParentComponent,
    #[error("`{0}` does not exist or cannot be read")]
    NotFound(String),
    #[error("`{0}` is outside the media roots")]
    OutsideRoots(String),
    #[error("`{0}` is not a folder")]
    NotADirectory(String),
    #[error("`{0}` leads outside its production's folder")]
    OutsideFolder(String),
}

/// The configured media roots, canonicalised once.
#[derive(Debug, Clone, Default)]
pub struct MediaRoots {
    roots: Vec<PathBuf>,
}

impl MediaRoots {
    /// Canonicalises each root; a root that does not exist is left out (and logged).
    pub fn new(roots: &[PathBuf]) -> Self {
        let roots = roots
            .iter()
            .filter(|r| !r.as_os_str().is_empty())
            .filter_map(|root| match root.canonicalize() {
                Ok(canonical) => Some(canonical),
                Err(err) => {
                    tracing::warn!(root = %root.display(), error = %err, "media root is not usable");
                    None
                }
            })
            .collect();
        Self { roots }
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Whether an already canonical path lies inside a root.
    pub fn contains(&self, canonical: &Path) -> bool {
        self.roots.iter().any(|root| canonical.starts_with(root))
    }

    /// Resolves a production folder: absolute, or relative to the first root holding it;
    /// never through `..`; after symlinks, still inside a root; a folder.
    pub fn resolve_dir(&self, path: &str) -> Result<PathBuf, PathError> {
        let canonical = self.resolve(path)?;
        if !canonical.is_dir() {
            return Err(PathError::NotADirectory(path.to_owned()));
        }
        Ok(canonical)
    }

    /// Resolves `rel`, a path relative to the production folder `folder`, to a canonical
    /// path that (after symlinks) is still inside that folder: a symlink into another
    /// production's folder is refused like one out of the roots.
    pub fn resolve_inside(&self, folder: &str, rel: &str) -> Result<PathBuf, PathError> {
        let base = self.resolve_dir(folder)?;
        let given = Path::new(rel);
        if given.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(PathError::ParentComponent);
        }
        if rel.trim().is_empty() || given.is_absolute() {
            return Err(PathError::OutsideFolder(rel.to_owned()));
        }
        let canonical = base
            .join(given)
            .canonicalize()
            .map_err(|_| PathError::NotFound(rel.to_owned()))?;
        if !self.contains(&canonical) {
            return Err(PathError::OutsideRoots(rel.to_owned()));
        }
        if !canonical.starts_with(&base) {
            return Err(PathError::OutsideFolder(rel.to_owned()));
        }
        Ok(canonical)
    }

    /// Resolves `path` (see [`Self::resolve_dir`]) to a canonical path inside a root.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, PathError> {
        if self.roots.is_empty() {
            return Err(PathError::NoRoots);
        }
        let trimmed = path.trim();
        if trimmed.is_empty() {
            return Err(PathError::Empty);
        }
        let given = Path::new(trimmed);
        if given.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(PathError::ParentComponent);
        }
        let candidate = if given.is_absolute() {
            given.to_path_buf()
        } else {
            self.roots
                .iter()
                .map(|root| root.join(given))
                .find(|p| p.exists())
                .ok_or_else(|| PathError::NotFound(trimmed.to_owned()))?
        };
        let canonical = candidate
            .canonicalize()
            .map_err(|_| PathError::NotFound(trimmed.to_owned()))?;
        if !self.contains(&canonical) {
            return Err(PathError::OutsideRoots(trimmed.to_owned()));
        }
        Ok(canonical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::io::Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!("rushes-roots-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/show/day1"))?;
        std::fs::create_dir_all(dir.join("elsewhere"))?;
        std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join("root/escape"))?;
        std::os::unix::fs::symlink(dir.join("root/show"), dir.join("root/alias"))?;
        Ok(dir)
    }

    #[test]
    fn paths_stay_inside_the_roots() -> std::io::Result<()> {
        let dir = scratch("confine")?;
        let roots = MediaRoots::new(&[dir.join("root")]);
        let show = dir.join("root/show").canonicalize()?;
        assert_eq!(roots.resolve_dir("show").as_ref(), Ok(&show));
        assert_eq!(roots.resolve_dir(&show.to_string_lossy()).as_ref(), Ok(&show));
        assert_eq!(
            roots.resolve_dir("alias").as_ref(),
            Ok(&show),
            "a symlink inside the root is fine"
        );
        assert_eq!(roots.resolve_dir("show/../show"), Err(PathError::ParentComponent));
        assert_eq!(
            roots.resolve_dir("escape"),
            Err(PathError::OutsideRoots("escape".into()))
        );
        let elsewhere = dir.join("elsewhere").to_string_lossy().into_owned();
        assert_eq!(
            roots.resolve_dir(&elsewhere),
            Err(PathError::OutsideRoots(elsewhere.clone()))
        );
        assert_eq!(roots.resolve_dir("nope"), Err(PathError::NotFound("nope".into())));
        assert_eq!(roots.resolve_dir(""), Err(PathError::Empty));
        assert_eq!(MediaRoots::new(&[]).resolve_dir("show"), Err(PathError::NoRoots));
        std::fs::remove_dir_all(&dir)
    }

    #[test]
    fn a_productions_files_stay_inside_its_folder() -> std::io::Result<()> {
        let dir = scratch("inside")?;
        std::fs::create_dir_all(dir.join("root/other"))?;
        std::fs::write(dir.join("root/show/day1/c1.mov"), b"x")?;
        std::fs::write(dir.join("root/other/secret.mov"), b"x")?;
        std::fs::write(dir.join("elsewhere/far.mov"), b"x")?;
        std::os::unix::fs::symlink(dir.join("root/show/day1/c1.mov"), dir.join("root/show/own.mov"))?;
        std::os::unix::fs::symlink(dir.join("root/other/secret.mov"), dir.join("root/show/peek.mov"))?;
        std::os::unix::fs::symlink(dir.join("elsewhere/far.mov"), dir.join("root/show/far.mov"))?;
        let roots = MediaRoots::new(&[dir.join("root")]);
        let c1 = dir.join("root/show/day1/c1.mov").canonicalize()?;
        assert_eq!(roots.resolve_inside("show", "day1/c1.mov").as_ref(), Ok(&c1));
        assert_eq!(roots.resolve_inside("alias", "own.mov").as_ref(), Ok(&c1));
        assert_eq!(
            roots.resolve_inside("show", "peek.mov"),
            Err(PathError::OutsideFolder("peek.mov".into()))
        );
        assert_eq!(
            roots.resolve_inside("show", "far.mov"),
            Err(PathError::OutsideRoots("far.mov".into()))
        );
        assert_eq!(
            roots.resolve_inside("show", "../other/secret.mov"),
            Err(PathError::ParentComponent)
        );
        assert_eq!(
            roots.resolve_inside("show", "/etc/passwd"),
            Err(PathError::OutsideFolder("/etc/passwd".into()))
        );
        std::fs::remove_dir_all(&dir)
    }
}
