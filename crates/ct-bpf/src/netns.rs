//! Naming a network namespace the way users do (`/var/run/netns/NAME`, `/proc/PID/ns/net`,
//! an `ip netns` name or an inode number) and turning it into the inode number that
//! [`CollectorBuilder::netns`](crate::CollectorBuilder::netns) filters on.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// Why a network namespace could not be named.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    /// Nothing was given.
    #[error("network namespace {0:?}: give a path, an `ip netns` name or an inode number")]
    Empty(String),
    #[error(
        "network namespace {path}: {source}; give /var/run/netns/NAME, /proc/PID/ns/net, an \
         `ip netns` name or an inode number"
    )]
    /// The namespace file could not be opened.
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not a namespace file; give /var/run/netns/NAME, /proc/PID/ns/net, an `ip \
         netns` name or an inode number"
    )]
    /// The file is no namespace file.
    NotNamespace {
        /// The file.
        path: PathBuf,
    },
    #[error("{path} is a namespace of another kind, not a network namespace (use .../ns/net)")]
    /// The file is a namespace of another kind (mount, pid, ...).
    OtherKind {
        /// The file.
        path: PathBuf,
    },
    /// An inode number too large to be a namespace's.
    #[error("network namespace inode {0} is out of range (namespace inodes fit in 32 bits)")]
    InodeRange(u64),
}

/// The inode number of a network namespace named by `spec`:
///
/// - a decimal number is taken as the inode itself (as `stat -L -c %i /proc/PID/ns/net`
///   prints it; `0` is refused);
/// - a word without `/` that is not a number is an `ip netns` name
///   (`/var/run/netns/NAME`);
/// - anything else is a path to a namespace file (`/proc/PID/ns/net`, a bind mount), which
///   must be a network namespace.
pub fn netns_inode(spec: &str) -> Result<u32, NetnsError> {
    let spec_trim = spec.trim();
    if spec_trim.is_empty() {
        return Err(NetnsError::Empty(spec.to_owned()));
    }
    if spec_trim.bytes().all(|b| b.is_ascii_digit()) {
        let inode: u64 = spec_trim
            .parse()
            .map_err(|_| NetnsError::InodeRange(u64::MAX))?;
        return match u32::try_from(inode) {
            Ok(0) | Err(_) => Err(NetnsError::InodeRange(inode)),
            Ok(inode) => Ok(inode),
        };
    }
    match netns_spec_path(spec_trim) {
        Some(path) => netns_inode_of_path(&path),
        None => Err(NetnsError::Empty(spec.to_owned())),
    }
}

/// The namespace file `spec` names (see [`netns_inode`]): the path itself, or
/// `/var/run/netns/NAME` for an `ip netns` name; `None` for an inode number or nothing.
pub fn netns_spec_path(spec: &str) -> Option<PathBuf> {
    let spec = spec.trim();
    if spec.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        Path::new(NETNS_RUN_DIR).join(spec)
    })
}

/// The inode number of the network namespace file at `path`.
pub fn netns_inode_of_path(path: &Path) -> Result<u32, NetnsError> {
    let open_err = |source| NetnsError::Open {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(open_err)?;
    // The one system call here without a safe wrapper: /proc/self/fd/N names a namespace
    // opened through /proc (`net:[N]`) but not one bind-mounted under /run/netns.
    // SAFETY: `file` is an open descriptor for the whole call; NS_GET_NSTYPE takes no
    // argument and only returns a value.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), libc::NS_GET_NSTYPE as _) };
    if kind < 0 {
        return Err(NetnsError::NotNamespace {
            path: path.to_owned(),
        });
    }
    if kind != libc::CLONE_NEWNET {
        return Err(NetnsError::OtherKind {
            path: path.to_owned(),
        });
    }
    let inode = file.metadata().map_err(open_err)?.ino();
    u32::try_from(inode).map_err(|_| NetnsError::InodeRange(inode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_inodes() {
        assert_eq!(netns_inode("4026531840").unwrap(), 4026531840);
        assert_eq!(netns_inode(" 42 ").unwrap(), 42);
        assert!(matches!(netns_inode("0"), Err(NetnsError::InodeRange(0))));
        assert!(matches!(
            netns_inode("99999999999"),
            Err(NetnsError::InodeRange(_))
        ));
        assert!(matches!(netns_inode(" "), Err(NetnsError::Empty(_))));
    }

    #[test]
    fn own_namespace_resolves_like_stat() {
        let expected = std::fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
        assert_eq!(netns_inode("/proc/self/ns/net").unwrap(), expected);
    }

    #[test]
    fn other_files_are_refused() {
        assert!(matches!(
            netns_inode("/proc/self/ns/uts"),
            Err(NetnsError::OtherKind { .. })
        ));
        assert!(matches!(
            netns_inode("/proc/self/status"),
            Err(NetnsError::NotNamespace { .. })
        ));
        let err = netns_inode("no-such-namespace-ctcli").unwrap_err();
        assert!(
            err.to_string()
                .contains("/var/run/netns/no-such-namespace-ctcli"),
            "{err}"
        );
    }
}
