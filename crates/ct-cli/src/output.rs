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

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Buffered bytes that make a write reach the file even between two flushes.
const COMMIT_AT: usize = 1 << 20;

/// Where the records of an output file end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// JSON Lines: each record ends with `\n`.
    Lines,
    /// Binary blocks: each `write` call is one whole record.
    Writes,
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
    framing: Framing,
    /// With [`Framing::Writes`]: where each record in `buf` ends.
    record_ends: Vec<usize>,
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
        Ok(Self::new(file, path, false))
    }

    fn new(file: File, path: &Path, created: bool) -> Self {
        OutputFile {
            file,
            path: path.to_owned(),
            created,
            buf: Vec::with_capacity(64 << 10),
            committed: 0,
            lines: 0,
            framing: Framing::Lines,
            record_ends: Vec::new(),
        }
    }

    /// Sets how records are told apart (lines unless set).
    pub fn with_framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Readies the file for events: an existing file (`--force`) is emptied and made 0600.
    pub fn start(&mut self) -> anyhow::Result<()> {
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
            Framing::Lines => {
                let kept = match result {
                    Ok(()) => done,
                    Err(_) => self.buf[..done]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |i| i + 1),
                };
                let lines = self.buf[..kept].iter().filter(|&&b| b == b'\n').count();
                (kept, lines)
            }
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

impl Write for OutputFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        let record_ends = match self.framing {
            Framing::Lines => self.buf.ends_with(b"\n"),
            Framing::Writes => {
                self.record_ends.push(self.buf.len());
                true
            }
        };
        if self.buf.len() >= COMMIT_AT && record_ends {
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
    use std::os::unix::fs::MetadataExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ct-cli-output-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
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

    #[test]
    fn abandon_removes_a_created_file() {
        let dir = scratch("abandon");
        let path = dir.join("x.json");
        OutputFile::create(&path, false).unwrap().abandon();
        assert!(!path.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
