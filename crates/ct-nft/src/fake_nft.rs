//! Stand-in `nft` programs for tests: shell scripts in a directory of their own.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::nft_program::NftProgram;

/// A directory of stand-in `nft` scripts, removed at the end.
pub(crate) struct FakeNft {
    dir: PathBuf,
}

impl FakeNft {
    pub(crate) fn new() -> FakeNft {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ct-nft-fake-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        FakeNft { dir }
    }

    /// A stand-in running `body` as a shell script.
    pub(crate) fn program(&self, body: &str) -> NftProgram {
        let source = self.dir.join("nft.sh");
        let path = self.dir.join("nft");
        std::fs::write(&source, format!("#!/bin/sh\n{body}\n")).unwrap();
        // Copied by another process: had this one opened the program for writing, a child
        // forked meanwhile by another test thread would hold it open and make running it
        // fail (ETXTBSY) for a moment.
        let _ = std::fs::remove_file(&path);
        let copied = std::process::Command::new("/bin/cp")
            .arg(&source)
            .arg(&path)
            .status()
            .unwrap();
        assert!(copied.success());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        NftProgram::at(path).unwrap()
    }
}

impl Drop for FakeNft {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
