//! The `-o` output file: created safely, written in whole lines.
//!
//! Creation never follows a symbolic link and never replaces an existing file unless asked
//! (`--force`, which still refuses links and anything but a regular file). The file is
//! mode 0600: events show addresses and process names.
//!
//! Writes are buffered and reach the file in whole records: lines for JSON Lines, and for a
//! binary format (pcapng) whatever one `write` call gave, which its writer makes one whole
//! block ([`Framing`]). If the file system refuses a write (disk full, quota, file size
//! limit), what fits is kept up to the last complete record and the file is cut there, so
//! it always ends with a complete event.
//!
//! With a [`Rotation`], once the file holds `size` bytes (at the end of the record that
//! reached it) it is renamed FILE.1, FILE.1 to FILE.2 and so on, FILE.`count` is replaced,
//! and a new FILE is created the same way as the first: as tcpdump's `-C` and `-W`, with
//! the newest old file first. Each record goes to exactly one file, whole.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Buffered bytes that make a write reach the file even between two flushes: large
/// enough that the write call costs little per event, small enough that the buffer is
/// still in the CPU's cache when the kernel copies it (1 MiB buffers made that copy and
/// the line count the costliest part of `collect -o`, by a profile under `ping -f`).
const COMMIT_AT: usize = 128 << 10;

/// Where the records of an output file end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// JSON Lines: each record ends with `\n`.
    Lines,
    /// Binary blocks: each `write` call is one whole record.
    Writes,
}

/// `--rotate-size` and `--rotate-count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Bytes at which the file is rotated (at least 1).
    pub size: u64,
    /// Old files kept: FILE.1 (newest) to FILE.count (at least 1).
    pub count: u32,
}

/// `FILE.n`.
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// An events file being written. See the [module docs](self).
#[derive(Debug)]
pub struct OutputFile {
    file: File,
    path: PathBuf,
    /// Whether we created the file (so it may be removed if collection never starts).
    created: bool,
    buf: Vec<u8>,
    /// Bytes in the file: always whole lines.
    committed: u64,
    /// Records (lines, or blocks) in the file.
    lines: u64,
    /// With [`Framing::Lines`]: line ends in `buf`, counted as each write arrives (while
    /// its bytes are in the cache, rather than once more over the whole buffer).
    buffered_lines: u64,
    framing: Framing,
    /// With [`Framing::Writes`]: where each record in `buf` ends.
    record_ends: Vec<usize>,
    rotation: Option<Rotation>,
    /// With --force: old rotated files of an earlier run, removed by `start`.
    stale: Vec<PathBuf>,
    /// Rotations done.
    rotations: u64,
}

impl OutputFile {
    /// Creates `path` (mode 0600), or with `force` opens an existing regular file to be
    /// overwritten by [`start`](Self::start). Symbolic links are always refused.
    pub fn create(path: &Path, force: bool) -> anyhow::Result<Self> {
        let shown = path.display();
        let create = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path);
        let err = match create {
            Ok(file) => return Ok(Self::new(file, path, true)),
            Err(err) => err,
        };
        if err.kind() != io::ErrorKind::AlreadyExists {
            return Err(err).with_context(|| {
                format!("cannot create the output file {shown}; check the directory exists and is writable")
            });
        }
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("cannot inspect the output file {shown}"))?;
        if meta.file_type().is_symlink() {
            bail!(
                "the output file {shown} is a symbolic link; ct-cli never writes through links: \
                 give the path of a new file"
            );
        }
        if !meta.is_file() {
            bail!("the output file {shown} is not a regular file; give the path of a new file");
        }
        if !force {
            bail!(
                "the output file {shown} already exists; choose a new name, or pass --force to \
                 overwrite it"
            );
        }
        // O_NONBLOCK: opening a FIFO must not hang; it is refused just below.
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    anyhow::anyhow!(
                        "the output file {shown} is a symbolic link; ct-cli never writes \
                         through links: give the path of a new file"
                    )
                } else {
                    anyhow::Error::new(e)
                        .context(format!("cannot open the output file {shown} for writing"))
                }
            })?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot inspect the output file {shown}"))?;
        if !meta.is_file() {
            bail!("the output file {shown} is not a regular file; give the path of a new file");
        }
        // A hard link is another name of a file that may be anyone's (a link to a system
        // file in a directory others can write), and another user's file is not ours to
        // empty: --force overwrites only a file of ct-cli's user with no other name.
        if meta.nlink() != 1 {
            bail!(
                "the output file {shown} has {} names (hard links); --force overwrites only a \
                 file with no other name: remove it or give the path of a new file",
                meta.nlink()
            );
        }
        let user = effective_uid()
            .with_context(|| format!("cannot tell whose the output file {shown} may be"))?;
        if meta.uid() != user {
            bail!(
                "the output file {shown} belongs to user {}, not to the user ct-cli runs as \
                 ({user}); --force overwrites only the user's own files: give the path of a \
                 new file",
                meta.uid()
            );
        }
        Ok(Self::new(file, path, false))
    }

    /// Whether this file and `other` are one file (same device and inode), whatever their
    /// paths say.
    pub fn same_file(&self, other: &OutputFile) -> io::Result<bool> {
        let (a, b) = (self.file.metadata()?, other.file.metadata()?);
        Ok(a.dev() == b.dev() && a.ino() == b.ino())
    }

    fn new(file: File, path: &Path, created: bool) -> Self {
        OutputFile {
            file,
            path: path.to_owned(),
            created,
            buf: Vec::with_capacity(64 << 10),
            committed: 0,
            lines: 0,
            buffered_lines: 0,
            framing: Framing::Lines,
            record_ends: Vec::new(),
            rotation: None,
            stale: Vec::new(),
            rotations: 0,
        }
    }

    /// Rotates the file as it grows (see the [module docs](self)). FILE.1 to FILE.count
    /// left by an earlier run are refused, or with `force` removed when collection starts,
    /// so that the files of one run are never mixed with older ones. On error, a file this
    /// run created is removed again.
    pub fn with_rotation(mut self, rotation: Rotation, force: bool) -> anyhow::Result<Self> {
        for n in 1..=rotation.count {
            let old = rotated_path(&self.path, n);
            match std::fs::symlink_metadata(&old) {
                Ok(_) if force => self.stale.push(old),
                Ok(_) => {
                    let shown = old.display().to_string();
                    self.abandon();
                    bail!(
                        "{shown} already exists (an earlier rotation?) and rotation would \
                         replace it; move it away, or pass --force to remove it at the start"
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    let shown = old.display().to_string();
                    self.abandon();
                    return Err(e).with_context(|| format!("cannot inspect {shown}"));
                }
            }
        }
        self.rotation = Some(rotation);
        Ok(self)
    }

    pub fn rotation(&self) -> Option<Rotation> {
        self.rotation
    }

    /// How many times the file was rotated.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// Sets how records are told apart (lines unless set).
    pub fn with_framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Readies the file for events: an existing file (`--force`) is emptied and made 0600.
    pub fn start(&mut self) -> anyhow::Result<()> {
        for old in std::mem::take(&mut self.stale) {
            std::fs::remove_file(&old)
                .or_else(|e| match e.kind() {
                    io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })
                .with_context(|| format!("cannot remove {}", old.display()))?;
        }
        if !self.created {
            self.file
                .set_len(0)
                .and_then(|()| self.file.set_permissions(Permissions::from_mode(0o600)))
                .with_context(|| format!("cannot overwrite {}", self.path.display()))?;
        }
        Ok(())
    }

    /// Gives up before any event: removes the file if this run created it.
    pub fn abandon(self) {
        if self.created {
            // Best effort: the file is empty, and the caller is already reporting an error.
            let _ = std::fs::remove_file(&self.path);
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Complete lines (or, with [`Framing::Writes`], records) in the file.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// FILE.(count-1) to FILE.count, ..., FILE to FILE.1, and a new FILE (0600, never
    /// through a link). Called with nothing buffered.
    fn rotate(&mut self) -> io::Result<()> {
        let Some(rotation) = self.rotation else {
            return Ok(());
        };
        let context =
            |what: String| move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
        for n in (1..rotation.count).rev() {
            let (from, to) = (rotated_path(&self.path, n), rotated_path(&self.path, n + 1));
            match std::fs::rename(&from, &to) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(context(format!(
                        "rotating: cannot rename {} to {}",
                        from.display(),
                        to.display()
                    ))(e));
                }
                _ => {}
            }
        }
        let first = rotated_path(&self.path, 1);
        std::fs::rename(&self.path, &first).map_err(context(format!(
            "rotating: cannot rename {} to {}",
            self.path.display(),
            first.display()
        )))?;
        self.file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)
            .map_err(context(format!(
                "rotating: cannot create a new {}",
                self.path.display()
            )))?;
        self.committed = 0;
        self.rotations += 1;
        Ok(())
    }

    /// Writes the buffered bytes. On failure the file keeps what fit, cut after the last
    /// complete line, and the rest of the buffer is dropped.
    fn commit(&mut self) -> io::Result<()> {
        let mut done = 0;
        let result = loop {
            if done == self.buf.len() {
                break Ok(());
            }
            match self.file.write(&self.buf[done..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let (kept, records) = match self.framing {
            Framing::Lines => match result {
                Ok(()) => (done, self.buffered_lines as usize),
                Err(_) => {
                    let kept = self.buf[..done]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |i| i + 1);
                    (kept, count_lines(&self.buf[..kept]))
                }
            },
            Framing::Writes => {
                let records = self.record_ends.partition_point(|&end| end <= done);
                let kept = records
                    .checked_sub(1)
                    .map_or(0, |last| self.record_ends[last]);
                (kept, records)
            }
        };
        self.lines += records as u64;
        self.committed += kept as u64;
        self.buf.clear();
        self.buffered_lines = 0;
        self.record_ends.clear();
        if let Err(e) = result {
            if kept < done {
                // Cut the partial line; shrinking a file needs no space.
                self.file.set_len(self.committed)?;
            }
            return Err(e);
        }
        Ok(())
    }
}

/// Line ends in `bytes`. memchr's vector search: a line end per few hundred bytes
/// costs little more than scanning them (counting eight bytes at a time in plain code
/// was still ~8 % of the CPU of `collect -o` under `ping -f`; a byte at a time, a sixth).
/// The process's effective user id, from `/proc/self/status` (`Uid:` real, effective, ...).
fn effective_uid() -> io::Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| io::Error::other("no effective user id in /proc/self/status"))
}

fn count_lines(bytes: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', bytes).count()
}

impl Write for OutputFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        let record_ends = match self.framing {
            Framing::Lines => {
                self.buffered_lines += count_lines(data) as u64;
                self.buf.ends_with(b"\n")
            }
            Framing::Writes => {
                self.record_ends.push(self.buf.len());
                true
            }
        };
        if !record_ends {
            return Ok(data.len());
        }
        let full = self
            .rotation
            .is_some_and(|r| self.committed + self.buf.len() as u64 >= r.size);
        if full {
            self.commit()?;
            self.rotate()?;
        } else if self.buf.len() >= COMMIT_AT {
            self.commit()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ct-cli-output-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn counts_line_ends_in_any_bytes() {
        let mut bytes: Vec<u8> = (0..=255u8).collect();
        bytes.extend(b"\n\n\x0a\x8a\x0b\x09\xff\n");
        for start in 0..9 {
            for end in start..bytes.len() {
                let slice = &bytes[start..end];
                let want = slice.iter().filter(|&&b| b == b'\n').count();
                assert_eq!(count_lines(slice), want, "{start}..{end}");
            }
        }
    }

    #[test]
    fn creates_0600_and_counts_lines() {
        let dir = scratch("create");
        let path = dir.join("events.json");
        let mut out = OutputFile::create(&path, false).unwrap();
        out.start().unwrap();
        out.write_all(b"{}\n{}\n").unwrap();
        out.flush().unwrap();
        assert_eq!(out.lines(), 2);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"{}\n{}\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_existing_files_and_links() {
        let dir = scratch("refuse");
        let existing = dir.join("existing");
        std::fs::write(&existing, "keep").unwrap();
        let err = OutputFile::create(&existing, false).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");

        let link = dir.join("link");
        std::os::unix::fs::symlink(&existing, &link).unwrap();
        for force in [false, true] {
            let err = OutputFile::create(&link, force).unwrap_err();
            assert!(err.to_string().contains("symbolic link"), "{err}");
        }
        let dangling = dir.join("dangling");
        std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
        let err = OutputFile::create(&dangling, true).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!dir.join("nowhere").exists());
        assert_eq!(std::fs::read(&existing).unwrap(), b"keep");

        let err = OutputFile::create(&dir, true).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err:#}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn force_refuses_hard_links_and_others_files() {
        let dir = scratch("force-links");
        let target = dir.join("precious");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.join("out.json");
        std::fs::hard_link(&target, &link).unwrap();
        let err = OutputFile::create(&link, true).unwrap_err();
        assert!(err.to_string().contains("hard links"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");

        // Another user's file (only root can give one away; others skip this part).
        let theirs = dir.join("theirs.json");
        std::fs::write(&theirs, "theirs").unwrap();
        if std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).is_ok() {
            let err = OutputFile::create(&theirs, true).unwrap_err();
            assert!(err.to_string().contains("belongs to user 65534"), "{err}");
            assert_eq!(std::fs::read(&theirs).unwrap(), b"theirs");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn one_file_by_two_paths_is_the_same_file() {
        let dir = scratch("same");
        let path = dir.join("out");
        let first = OutputFile::create(&path, false).unwrap();
        let again = OutputFile::create(&dir.join(".").join("out"), true).unwrap();
        let other = OutputFile::create(&dir.join("other"), false).unwrap();
        assert!(first.same_file(&again).unwrap());
        assert!(!first.same_file(&other).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn force_overwrites_only_at_start() {
        let dir = scratch("force");
        let path = dir.join("old.json");
        std::fs::write(&path, "old\n").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let out = OutputFile::create(&path, true).unwrap();
        out.abandon();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"old\n",
            "abandon keeps others' files"
        );

        let mut out = OutputFile::create(&path, true).unwrap();
        out.start().unwrap();
        out.write_all(b"new\n").unwrap();
        out.flush().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new\n");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Lines of FILE.count ... FILE.1, FILE in that order, checking each file.
    fn read_rotated(path: &Path, count: u32) -> Vec<String> {
        let mut lines = Vec::new();
        for n in (0..=count).rev() {
            let file = if n == 0 {
                path.to_owned()
            } else {
                rotated_path(path, n)
            };
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{}",
                file.display()
            );
            assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
            lines.extend(text.lines().map(str::to_owned));
        }
        lines
    }

    #[test]
    fn rotation_keeps_every_line_once_in_order() {
        let dir = scratch("rotate");
        let path = dir.join("events.json");
        let rotation = Rotation {
            size: 100,
            count: 1000,
        };
        let mut out = OutputFile::create(&path, false)
            .unwrap()
            .with_rotation(rotation, false)
            .unwrap();
        out.start().unwrap();
        let written: Vec<String> = (0..500).map(|i| format!("{{\"n\":{i}}}")).collect();
        for (i, line) in written.iter().enumerate() {
            // Lines in pieces, as a writer of long lines gives them.
            let (a, b) = line.split_at(line.len() / 2);
            out.write_all(a.as_bytes()).unwrap();
            out.write_all(format!("{b}\n").as_bytes()).unwrap();
            if i % 7 == 0 {
                out.flush().unwrap();
            }
        }
        out.flush().unwrap();
        assert_eq!(out.lines(), 500);
        assert!(out.rotations() > 30, "{}", out.rotations());
        assert_eq!(read_rotated(&path, 1000), written);
        // Rotated files are the size, give or take one line.
        for n in 1..=out.rotations() as u32 {
            let len = std::fs::metadata(rotated_path(&path, n)).unwrap().len();
            assert!((100..100 + 12).contains(&len), "{n}: {len}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotation_keeps_count_old_files() {
        let dir = scratch("rotate-count");
        let path = dir.join("e.json");
        let rotation = Rotation { size: 10, count: 2 };
        let mut out = OutputFile::create(&path, false)
            .unwrap()
            .with_rotation(rotation, false)
            .unwrap();
        out.start().unwrap();
        for i in 0..20 {
            out.write_all(format!("line {i:04}\n").as_bytes()).unwrap();
        }
        out.flush().unwrap();
        // Each 10-byte line fills a file: the two newest old files hold the last two
        // lines, the current file is empty.
        assert_eq!(read_rotated(&path, 5), ["line 0018", "line 0019"]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert!(!rotated_path(&path, 3).exists());

        // A second run refuses to mix its files with these, or removes them with --force.
        std::fs::remove_file(&path).unwrap();
        let err = OutputFile::create(&path, false)
            .unwrap()
            .with_rotation(rotation, false)
            .unwrap_err();
        assert!(err.to_string().contains("e.json.1 already exists"), "{err}");
        assert!(!path.exists(), "the refused run leaves no file");
        let mut out = OutputFile::create(&path, false)
            .unwrap()
            .with_rotation(rotation, true)
            .unwrap();
        out.start().unwrap();
        assert!(!rotated_path(&path, 1).exists() && !rotated_path(&path, 2).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn abandon_removes_a_created_file() {
        let dir = scratch("abandon");
        let path = dir.join("x.json");
        OutputFile::create(&path, false).unwrap().abandon();
        assert!(!path.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
