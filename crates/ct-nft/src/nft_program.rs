//! Every run of the `nft` program goes through here. ct-cli runs as root, so the program is
//! taken from the system directories by absolute path (never from `PATH`, which the
//! invoking user controls), with an environment of our own (no `LD_PRELOAD`, no locale
//! that changes its output), in `/` (no relative `include` can reach the caller's
//! directory), and under a timeout: a hung `nft` (a held nftables lock, a huge ruleset)
//! is killed instead of hanging the trace reader with it.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The directories `nft` is looked for in, in this order (where distributions install it).
pub const NFT_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// The program's name in those directories.
pub const NFT_PROGRAM: &str = "nft";

/// The `PATH` the program runs with (it runs nothing itself; this is for what it may load).
pub const CLEAN_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// How long one run may take: nftables answers in milliseconds; seconds mean it is stuck.
pub const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the output of a finished run is waited for (its pipes close at its exit).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Why a run of `nft` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NftRunError {
    #[error(
        "no `nft` program in /usr/sbin, /sbin, /usr/bin or /bin: install the nftables package"
    )]
    NotFound,
    #[error("the nft program must be given by absolute path, not {0}")]
    NotAbsolute(PathBuf),
    #[error("cannot run {program}: {source} (install the nftables package)")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "`{program} {args}` did not finish within {timeout:?} and was killed; nftables may be \
         busy or stuck (look for other nft processes holding it), then try again"
    )]
    TimedOut {
        program: PathBuf,
        args: String,
        timeout: Duration,
    },
    #[error("`{program} {args}` failed ({status}): {stderr}")]
    Failed {
        program: PathBuf,
        args: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("nft rejected `{command}`: {errors}")]
    Rejected { command: String, errors: String },
    #[error("talking to {program}: {source}")]
    Io {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The `nft` program, by absolute path, with the timeout its runs get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftProgram {
    path: PathBuf,
    timeout: Duration,
}

impl NftProgram {
    /// The system's `nft`: the first of [`NFT_DIRS`] that has it (looked up once).
    pub fn system() -> Result<NftProgram, NftRunError> {
        static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
        FOUND
            .get_or_init(|| find_in(&NFT_DIRS))
            .clone()
            .map(|path| NftProgram {
                path,
                timeout: NFT_TIMEOUT,
            })
            .ok_or(NftRunError::NotFound)
    }

    /// The program at `path`, which must be absolute (tests run stand-ins this way).
    pub fn at(path: impl Into<PathBuf>) -> Result<NftProgram, NftRunError> {
        let path = path.into();
        if !path.is_absolute() {
            return Err(NftRunError::NotAbsolute(path));
        }
        Ok(NftProgram {
            path,
            timeout: NFT_TIMEOUT,
        })
    }

    /// The same program with another timeout per run.
    pub fn with_timeout(self, timeout: Duration) -> NftProgram {
        NftProgram { timeout, ..self }
    }

    /// Where the program is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long a run may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A command for the program with the clean environment, in `/`; standard streams are
    /// the caller's to set.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.path);
        command
            .env_clear()
            .env("PATH", CLEAN_PATH)
            .env("LC_ALL", "C")
            .current_dir("/");
        command
    }

    /// Runs the program with `args`, feeding it `stdin`; its standard output, or why it
    /// failed (its standard error in the error). Killed after the timeout.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NftRunError> {
        let mut child = self
            .command()
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| NftRunError::Spawn {
                program: self.path.clone(),
                source,
            })?;
        // Streams on threads of their own: a child that neither reads its input nor exits
        // must not block us before the timeout can act.
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            let text = text.to_owned();
            std::thread::spawn(move || input.write_all(text.as_bytes()));
        }
        let stdout = read_on_thread(child.stdout.take());
        let stderr = read_on_thread(child.stderr.take());
        let deadline = Instant::now() + self.timeout;
        let status = match wait_until(&mut child, deadline) {
            Ok(Some(status)) => status,
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NftRunError::TimedOut {
                    program: self.path.clone(),
                    args: args.join(" "),
                    timeout: self.timeout,
                });
            }
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NftRunError::Io {
                    program: self.path.clone(),
                    source,
                });
            }
        };
        let output_deadline = Instant::now() + OUTPUT_GRACE;
        let stdout = stdout.recv_deadline(output_deadline);
        let stderr = stderr.recv_deadline(output_deadline);
        if status.success() {
            Ok(String::from_utf8_lossy(&stdout).into_owned())
        } else {
            Err(NftRunError::Failed {
                program: self.path.clone(),
                args: args.join(" "),
                status,
                stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            })
        }
    }
}

/// The first `dir/nft` that is a file.
fn find_in(dirs: &[&str]) -> Option<PathBuf> {
    dirs.iter()
        .map(|dir| Path::new(dir).join(NFT_PROGRAM))
        .find(|path| path.is_file())
}

/// Waits for `child` to exit until `deadline`; `Ok(None)` when it has not by then.
pub(crate) fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    // Short naps first: nft usually exits within milliseconds.
    let mut nap = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// Everything a stream yields until it closes, read on a thread.
struct StreamText(mpsc::Receiver<Vec<u8>>);

impl StreamText {
    /// The text, or what was there by `deadline` (nothing) when it did not close by then.
    fn recv_deadline(self, deadline: Instant) -> Vec<u8> {
        self.0
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }
}

fn read_on_thread(stream: Option<impl Read + Send + 'static>) -> StreamText {
    let (tx, rx) = mpsc::channel();
    if let Some(mut stream) = stream {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stream.read_to_end(&mut text);
            let _ = tx.send(text);
        });
    }
    StreamText(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_nft::FakeNft;

    #[test]
    fn a_hung_nft_is_killed_at_the_timeout_and_says_so() {
        let fake = FakeNft::new();
        let program = fake
            .program("exec sleep 600")
            .with_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let err = program.run(&["list", "tables"], None).unwrap_err();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert!(matches!(err, NftRunError::TimedOut { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("did not finish within 300ms and was killed"),
            "{text}"
        );
        assert!(text.contains("list tables"), "{text}");
    }

    #[test]
    fn a_hung_nft_that_does_not_read_its_input_is_killed_too() {
        let fake = FakeNft::new();
        let program = fake
            .program("exec sleep 600")
            .with_timeout(Duration::from_millis(300));
        // More than a pipe holds: writing it would block without its own thread.
        let script = "x".repeat(1 << 20);
        let started = Instant::now();
        let err = program.run(&["-f", "-"], Some(&script)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(matches!(err, NftRunError::TimedOut { .. }), "{err:?}");
    }

    #[test]
    fn the_child_sees_only_the_clean_environment() {
        let fake = FakeNft::new();
        let program = fake.program("env");
        let out = program.run(&[], None).unwrap();
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort_unstable();
        // PWD is the shell's own, from the working directory it was given.
        assert_eq!(
            lines,
            ["LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "PWD=/"],
            "{out}"
        );
    }

    #[test]
    fn input_output_and_failures_are_passed_on() {
        let fake = FakeNft::new();
        let program = fake.program("cat; echo \"args: $*\"");
        let out = program.run(&["-f", "-"], Some("table inet t\n")).unwrap();
        assert_eq!(out, "table inet t\nargs: -f -\n");
        let failing = fake.program("echo 'Error: no such table' >&2; exit 1");
        let err = failing
            .run(&["list", "table", "inet", "t"], None)
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, NftRunError::Failed { .. }), "{err:?}");
        assert!(text.contains("Error: no such table"), "{text}");
        assert!(text.contains("list table inet t"), "{text}");
    }

    #[test]
    fn the_program_is_taken_by_absolute_path_only() {
        assert!(matches!(
            NftProgram::at("nft"),
            Err(NftRunError::NotAbsolute(_))
        ));
        let fake = FakeNft::new();
        let program = fake.program("true");
        let dir = program.path().parent().unwrap().to_str().unwrap();
        assert_eq!(
            find_in(&["/nonexistent-ct-nft-dir", dir]),
            Some(program.path().to_owned())
        );
        assert_eq!(find_in(&["/nonexistent-ct-nft-dir"]), None);
    }
}
