//! Finding the file of a network namespace known only by its inode, to enter it (a BPF
//! program only needs the inode; `setns` needs a descriptor), and listing every network
//! namespace there is.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ct_bpf::{NetnsFile, NETNS_RUN_DIR};

use crate::NftError;

/// The network namespace whose inode is `inode`, open: a named namespace
/// (`/var/run/netns/NAME`) or a process's `/proc/PID/ns/net`. Each candidate is opened
/// once and judged by its descriptor's inode, and the descriptor that matched is the one
/// returned: a process exiting (and its PID being reused) after the search cannot swap
/// the namespace. A namespace named by path is opened by [`ct_bpf::resolve_netns`]
/// instead.
pub fn find_netns(inode: u32) -> Result<NetnsFile, NftError> {
    named_netns()
        .chain(process_dirs().map(|dir| dir.join("ns/net")))
        .filter_map(|path: PathBuf| NetnsFile::open(&path).ok())
        .find(|file| file.inode() == inode)
        .ok_or(NftError::NetnsNotFound(inode))
}

/// The files of the named namespaces (`/var/run/netns/NAME`).
fn named_netns() -> impl Iterator<Item = PathBuf> {
    fs::read_dir(NETNS_RUN_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
}

/// `/proc/PID` of every process.
fn process_dirs() -> impl Iterator<Item = PathBuf> {
    fs::read_dir("/proc")
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
        .map(|entry| entry.path())
}

/// The network namespaces that exist, as one look at the system found them.
#[derive(Debug, Default)]
pub(crate) struct NetnsScan {
    /// The inode of every namespace found.
    pub(crate) present: HashSet<u32>,
    /// Those not `known` before, open (held from here on, whatever happens to the path).
    pub(crate) new: Vec<NetnsFile>,
}

/// Every network namespace a name (`/var/run/netns/NAME`) or a process holds, each once.
///
/// Processes whose parent is this process are not counted: the `nft` sessions that own
/// the trace tables live in the namespaces they serve, and would keep a namespace listed
/// after everything else left it. Namespaces held only otherwise (a bind mount elsewhere,
/// an open descriptor, a thread that entered one) are not found. A namespace in `known`
/// is only stat'ed; a new one is opened, and kept only if the descriptor is the same
/// namespace the path showed.
pub(crate) fn scan_netns(known: &HashSet<u32>) -> NetnsScan {
    let own_pid = std::process::id();
    let mut scan = NetnsScan::default();
    let take = |path: &Path, scan: &mut NetnsScan| {
        let Ok(inode) = fs::metadata(path).map(|m| m.ino()) else {
            return;
        };
        let Ok(inode) = u32::try_from(inode) else {
            return;
        };
        if !scan.present.insert(inode) || known.contains(&inode) {
            return;
        }
        match NetnsFile::open(path) {
            Ok(file) if file.inode() == inode => scan.new.push(file),
            // Gone or swapped since the stat: the next look finds it as it is then.
            _ => {
                scan.present.remove(&inode);
            }
        }
    };
    for path in named_netns() {
        take(&path, &mut scan);
    }
    for dir in process_dirs() {
        let net = dir.join("ns/net");
        // Only a namespace not found yet is worth reading the parent for.
        let seen = fs::metadata(&net)
            .ok()
            .and_then(|m| u32::try_from(m.ino()).ok())
            .is_some_and(|inode| scan.present.contains(&inode));
        if seen || parent_pid(&dir) == Some(own_pid) {
            continue;
        }
        take(&net, &mut scan);
    }
    scan
}

/// The parent of the process at `/proc/PID`, from its `stat` (`PID (COMM) STATE PPID ...`;
/// the command name may hold spaces and parentheses, so the fields are read after the
/// last `)`).
fn parent_pid(dir: &Path) -> Option<u32> {
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    let (_, fields) = stat.rsplit_once(')')?;
    fields.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_its_own_namespace_by_inode() {
        let own = fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
        let found = find_netns(own).unwrap();
        assert_eq!(found.inode(), own);
        assert_eq!(found.file().metadata().unwrap().ino(), u64::from(own));
    }

    #[test]
    fn a_scan_finds_its_own_namespace_and_opens_only_new_ones() {
        let own = fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
        let scan = scan_netns(&HashSet::new());
        assert!(scan.present.contains(&own));
        assert!(scan.new.iter().any(|ns| ns.inode() == own));
        let mut inodes: Vec<u32> = scan.new.iter().map(NetnsFile::inode).collect();
        inodes.sort_unstable();
        inodes.dedup();
        assert_eq!(inodes.len(), scan.new.len(), "each namespace once");
        let again = scan_netns(&scan.present);
        assert!(again.present.contains(&own));
        assert!(again
            .new
            .iter()
            .all(|ns| !scan.present.contains(&ns.inode())));
    }

    #[test]
    fn the_parent_is_read_after_the_command_name() {
        let parent = parent_pid(Path::new("/proc/self")).unwrap();
        assert_eq!(parent, std::os::unix::process::parent_id());
        assert_eq!(parent_pid(Path::new("/proc/nonexistent")), None);
    }

    #[test]
    fn an_inode_no_namespace_has_is_not_found() {
        // Namespace inodes are allocated near 0xf0000000; 1 is the root directory's.
        assert!(matches!(find_netns(1), Err(NftError::NetnsNotFound(1))));
    }
}
