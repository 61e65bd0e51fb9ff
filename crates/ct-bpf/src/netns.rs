//! Naming a network namespace the way users do (`/var/run/netns/NAME`, `/proc/PID/ns/net`,
//! an `ip netns` name or an inode number) and turning it into the inode number that
//! [`CollectorBuilder::netns`](crate::CollectorBuilder::netns) filters on.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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

/// A network namespace as the user named it: its inode number, and the namespace file
/// held open when it was named by path or `ip netns` name.
#[derive(Debug)]
pub struct NamedNetns {
    /// What [`CollectorBuilder::netns`](crate::CollectorBuilder::netns) filters on.
    pub inode: u32,
    /// The namespace itself, opened once: `None` for a bare inode number.
    pub file: Option<NetnsFile>,
}

/// The network namespace named by `spec`:
///
/// - a decimal number is taken as the inode itself (as `stat -L -c %i /proc/PID/ns/net`
///   prints it; `0` is refused);
/// - a word without `/` that is not a number is an `ip netns` name
///   (`/var/run/netns/NAME`);
/// - anything else is a path to a namespace file (`/proc/PID/ns/net`, a bind mount), which
///   must be a network namespace.
///
/// A named file is opened once ([`NetnsFile::open`]) and kept: whatever later enters the
/// namespace uses that descriptor, so a process that exits and whose PID is reused in
/// between cannot put the caller into another namespace.
pub fn resolve_netns(spec: &str) -> Result<NamedNetns, NetnsError> {
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
            Ok(inode) => Ok(NamedNetns { inode, file: None }),
        };
    }
    match netns_spec_path(spec_trim) {
        Some(path) => {
            let file = NetnsFile::open(&path)?;
            Ok(NamedNetns {
                inode: file.inode(),
                file: Some(file),
            })
        }
        None => Err(NetnsError::Empty(spec.to_owned())),
    }
}

/// The inode number of the network namespace named by `spec` (see [`resolve_netns`]).
pub fn netns_inode(spec: &str) -> Result<u32, NetnsError> {
    resolve_netns(spec).map(|named| named.inode)
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
    NetnsFile::open(path).map(|file| file.inode())
}

/// `NSFS_MAGIC` from `<linux/magic.h>`: the file system of namespace files.
const NSFS_MAGIC: libc::c_long = 0x6e73_6673;

/// An open network namespace file, checked to be one; its inode is the descriptor's.
#[derive(Debug)]
pub struct NetnsFile {
    file: File,
    inode: u32,
    path: PathBuf,
}

impl NetnsFile {
    /// Opens the namespace file at `path` and checks that it is a network namespace.
    ///
    /// Opened without blocking (`O_NONBLOCK`), so that a FIFO or a device given by mistake
    /// or malice is refused at once instead of hanging the open; then it must be on the
    /// namespace file system and answer `NS_GET_NSTYPE` with `CLONE_NEWNET`.
    pub fn open(path: &Path) -> Result<NetnsFile, NetnsError> {
        let open_err = |source| NetnsError::Open {
            path: path.to_owned(),
            source,
        };
        // std adds O_CLOEXEC itself.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(open_err)?;
        let not_namespace = || NetnsError::NotNamespace {
            path: path.to_owned(),
        };
        if !on_nsfs(&file).map_err(open_err)? {
            return Err(not_namespace());
        }
        // The one system call here without a safe wrapper: /proc/self/fd/N names a
        // namespace opened through /proc (`net:[N]`) but not one bind-mounted under
        // /run/netns.
        // SAFETY: `file` is an open descriptor for the whole call; NS_GET_NSTYPE takes no
        // argument and only returns a value.
        let kind = unsafe { libc::ioctl(file.as_raw_fd(), libc::NS_GET_NSTYPE as _) };
        if kind < 0 {
            return Err(not_namespace());
        }
        if kind != libc::CLONE_NEWNET {
            return Err(NetnsError::OtherKind {
                path: path.to_owned(),
            });
        }
        let inode = file.metadata().map_err(open_err)?.ino();
        let inode = u32::try_from(inode).map_err(|_| NetnsError::InodeRange(inode))?;
        Ok(NetnsFile {
            file,
            inode,
            path: path.to_owned(),
        })
    }

    /// The namespace's inode number, from the open descriptor.
    pub fn inode(&self) -> u32 {
        self.inode
    }

    /// The path it was opened by (for messages only: never opened again).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open namespace, e.g. for `setns`.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// A second descriptor of the same namespace (for another thread to keep).
    pub fn try_clone(&self) -> io::Result<NetnsFile> {
        Ok(NetnsFile {
            file: self.file.try_clone()?,
            inode: self.inode,
            path: self.path.clone(),
        })
    }
}

/// Whether `file` lies on the namespace file system (`fstatfs`).
fn on_nsfs(file: &File) -> io::Result<bool> {
    // SAFETY: statfs is plain data; all-zero is a valid value.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is open for the call and `fs` is valid for writes.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fs.f_type as libc::c_long == NSFS_MAGIC)
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

    /// A scratch directory of this test process, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("ct-bpf-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = Scratch::new("fifo");
        let fifo = dir.0.join("netns");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        // Opening a FIFO for reading blocks until a writer comes, unless O_NONBLOCK: on
        // another thread, so that a hang fails the test instead of stalling it.
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(NetnsFile::open(&path).map(|file| file.inode()));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("opening a FIFO as a namespace returns at once");
        match result {
            Err(err @ NetnsError::NotNamespace { .. }) => {
                assert!(err.to_string().contains("is not a namespace file"), "{err}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_regular_file_is_refused() {
        let dir = Scratch::new("regular");
        let file = dir.0.join("netns");
        std::fs::write(&file, b"4026531840").unwrap();
        assert!(matches!(
            NetnsFile::open(&file),
            Err(NetnsError::NotNamespace { .. })
        ));
        assert!(matches!(
            resolve_netns(file.to_str().unwrap()),
            Err(NetnsError::NotNamespace { .. })
        ));
    }

    #[test]
    fn the_inode_is_the_kept_descriptors() {
        let named = resolve_netns("/proc/self/ns/net").unwrap();
        let file = named.file.expect("a path keeps its file open");
        let of_descriptor = file.file().metadata().unwrap().ino();
        assert_eq!(u64::from(named.inode), of_descriptor);
        assert_eq!(file.inode(), named.inode);
        assert_eq!(file.try_clone().unwrap().inode(), named.inode);
        // A bare inode number opens nothing.
        let number = resolve_netns(&named.inode.to_string()).unwrap();
        assert_eq!(number.inode, named.inode);
        assert!(number.file.is_none());
    }
}
