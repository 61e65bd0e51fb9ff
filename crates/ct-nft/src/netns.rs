//! The file of a network namespace, to enter it (a BPF program only needs its inode).

use std::fs;
use std::path::PathBuf;

use ct_bpf::{netns_inode_of_path, netns_spec_path, NETNS_RUN_DIR};

use crate::NftError;

/// The namespace file for `spec` as users give it (see [`ct_bpf::netns_inode`]) whose
/// inode is `inode`: the path itself, `/var/run/netns/NAME`, or, for a bare inode number,
/// a named namespace or a process's `/proc/PID/ns/net` with that inode.
pub fn netns_file(spec: &str, inode: u32) -> Result<PathBuf, NftError> {
    if let Some(path) = netns_spec_path(spec) {
        return Ok(path);
    }
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
        .find(|path| netns_inode_of_path(path).ok() == Some(inode))
        .ok_or(NftError::NetnsNotFound(inode))
}
