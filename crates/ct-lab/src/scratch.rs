//! Scratch directories for tests: one per test, removed when it ends, pass or fail.

use std::path::{Path, PathBuf};

/// A directory of its own under the system's temporary directory, named after the test
/// process and `name`, so tests running at once never share one. Removed on drop.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Creates (or empties) `$TMPDIR/ct-test-<pid>-<name>`. Panics when it cannot: a test
    /// without its directory cannot go on.
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ct-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating scratch directory {}: {e}", dir.display()));
        Scratch { dir }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
