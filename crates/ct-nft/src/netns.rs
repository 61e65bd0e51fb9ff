//! Finding the file of a network namespace known only by its inode, to enter it (a BPF
//! program only needs the inode; `setns` needs a descriptor).

use std::fs;
use std::path::PathBuf;

use ct_bpf::{NetnsFile, NETNS_RUN_DIR};

use crate::NftError;

/// The network namespace whose inode is `inode`, open: a named namespace
/// (`/var/run/netns/NAME`) or a process's `/proc/PID/ns/net`. Each candidate is opened
/// once and judged by its descriptor's inode, and the descriptor that matched is the one
/// returned: a process exiting (and its PID being reused) after the search cannot swap
/// the namespace. A namespace named by path is opened by [`ct_bpf::resolve_netns`]
/// instead.
pub fn find_netns(inode: u32) -> Result<NetnsFile, NftError> {
    let named = fs::read_dir(NETNS_RUN_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path());
    let processes = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .map(|entry| entry.path().join("ns/net"));
    named
        .chain(processes)
        .filter_map(|path: PathBuf| NetnsFile::open(&path).ok())
        .find(|file| file.inode() == inode)
        .ok_or(NftError::NetnsNotFound(inode))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn finds_its_own_namespace_by_inode() {
        let own = fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
        let found = find_netns(own).unwrap();
        assert_eq!(found.inode(), own);
        assert_eq!(found.file().metadata().unwrap().ino(), u64::from(own));
    }

    #[test]
    fn an_inode_no_namespace_has_is_not_found() {
        // Namespace inodes are allocated near 0xf0000000; 1 is the root directory's.
        assert!(matches!(find_netns(1), Err(NftError::NetnsNotFound(1))));
    }
}
