//! Outputs are written under a staging folder beside the clip's outputs and renamed
//! into place only when ffmpeg succeeded: a reader never sees a half-written file, and
//! a failed or cancelled run leaves nothing behind.

use std::path::{Path, PathBuf};

use uuid::Uuid;

pub struct Staging {
    dir: PathBuf,
    target: PathBuf,
    done: bool,
}

impl Staging {
    /// A fresh staging folder for this attempt under `target` (the clip's output
    /// folder); staging folders of earlier attempts of the same job are removed.
    pub fn create(target: &Path, job_id: Uuid, attempt: i32) -> std::io::Result<Self> {
        std::fs::create_dir_all(target)?;
        let prefix = format!(".staging-{job_id}-");
        for item in std::fs::read_dir(target)?.flatten() {
            if item.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(item.path());
            }
        }
        let dir = target.join(format!("{prefix}{attempt}"));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            target: target.to_path_buf(),
            done: false,
        })
    }

    /// Where ffmpeg writes `name` for now.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Renames each of `names` into the clip's folder (atomic per file), then removes
    /// the staging folder. Every file must exist: a missing one fails the commit.
    pub fn commit(mut self, names: &[String]) -> std::io::Result<()> {
        for name in names {
            let staged = self.dir.join(name);
            if !staged.is_file() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("ffmpeg did not write {name}"),
                ));
            }
        }
        for name in names {
            std::fs::rename(self.dir.join(name), self.target.join(name))?;
        }
        self.done = true;
        std::fs::remove_dir_all(&self.dir)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
