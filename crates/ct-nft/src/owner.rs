//! A long-lived `nft -i` (commands on its standard input) that owns the trace table.
//!
//! A table created with `flags owner` (`NFT_TABLE_F_OWNER`, Linux 5.12+) belongs to the
//! netlink socket that created it: only that socket may change it, and the kernel deletes
//! it when the socket closes. A one-shot `nft` closes its socket when it exits, so the
//! owner here is an interactive `nft` that lives as long as the trace reader thread: it
//! is killed when that thread ends however it ends (a panic, ct-cli killed, SIGHUP), and
//! the table goes with it.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Stdio};
use std::time::Instant;

use crate::nft_program::{wait_until, NftProgram, NftRunError};
use crate::socket::kill_with_calling_thread;

/// Sent after each command: its output is one known line on standard output, so that what
/// came before it (errors) belongs to the command.
const SENTINEL: &str = "describe meta nftrace";
/// How the sentinel's answer starts (`meta expression, datatype integer ...`).
const SENTINEL_ANSWER: &str = "meta expression";

/// The `HOME` of the interactive `nft`: a path below which nothing can be created.
pub(crate) const NO_HOME: &str = "/dev/null";

/// The interactive `nft`, in the network namespace of the thread that started it.
#[derive(Debug)]
pub(crate) struct OwnerSession {
    program: NftProgram,
    child: Child,
    input: ChildStdin,
    /// Its standard output and standard error, merged so that errors come in order.
    output: BufReader<UnixStream>,
}

impl OwnerSession {
    /// Starts `nft -i`; it gets SIGKILL when the calling thread ends.
    pub(crate) fn start(program: &NftProgram) -> Result<OwnerSession, NftRunError> {
        let io_error = |source| NftRunError::Io {
            program: program.path().to_owned(),
            source,
        };
        let (ours, theirs) = UnixStream::pair().map_err(io_error)?;
        let theirs_too = theirs.try_clone().map_err(io_error)?;
        let mut command = program.command();
        command
            .arg("-i")
            // Interactive nft keeps a history in $HOME/.nft.history (`/` without HOME):
            // below a file, there is none to read or write.
            .env("HOME", NO_HOME)
            // Its own process group: a Ctrl-C or hang-up at the terminal is for ct-cli, which
            // then stops in order; the table stays until the reader has finished with it.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(OwnedFd::from(theirs)))
            .stderr(Stdio::from(OwnedFd::from(theirs_too)));
        kill_with_calling_thread(&mut command);
        let mut child = command.spawn().map_err(|source| NftRunError::Spawn {
            program: program.path().to_owned(),
            source,
        })?;
        // The command holds our copies of the child's ends: without them, the stream ends
        // when the child does.
        drop(command);
        let input = child.stdin.take().ok_or_else(|| {
            io_error(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "no standard input",
            ))
        })?;
        Ok(OwnerSession {
            program: program.clone(),
            child,
            input,
            output: BufReader::new(ours),
        })
    }

    /// Runs one line of nft commands (one transaction); `Err` with nft's error lines when
    /// it failed. The session is unusable after a timeout or an I/O error.
    pub(crate) fn run(&mut self, line: &str) -> Result<(), NftRunError> {
        let program = self.program.path().to_owned();
        let io_error = |source| NftRunError::Io {
            program: program.clone(),
            source,
        };
        if line.contains('\n') {
            return Err(io_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a command for nft -i must be one line",
            )));
        }
        self.input
            .write_all(format!("{line}\n{SENTINEL}\n").as_bytes())
            .and_then(|()| self.input.flush())
            .map_err(io_error)?;
        let deadline = Instant::now() + self.program.timeout();
        let mut errors = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NftRunError::TimedOut {
                    program,
                    args: format!("-i: {line}"),
                    timeout: self.program.timeout(),
                });
            }
            self.output
                .get_ref()
                .set_read_timeout(Some(left))
                .map_err(io_error)?;
            let mut text = String::new();
            match self.output.read_line(&mut text) {
                Ok(0) => {
                    return Err(io_error(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("nft -i ended; it said: {}", errors.join(" | ")),
                    )))
                }
                Ok(_) if text.starts_with(SENTINEL_ANSWER) => break,
                Ok(_) => errors.push(text.trim_end().to_owned()),
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(io_error(err)),
            }
        }
        if errors.is_empty() {
            return Ok(());
        }
        Err(NftRunError::Rejected {
            command: line.to_owned(),
            errors: errors.join("\n"),
        })
    }

    /// Ends the session: its socket closes, and with it go the tables it owns. Killed
    /// when it does not exit within the timeout once its input is closed.
    pub(crate) fn end(self) -> Result<(), NftRunError> {
        let OwnerSession {
            program,
            mut child,
            input,
            output,
        } = self;
        drop(input);
        drop(output);
        let deadline = Instant::now() + program.timeout();
        match wait_until(&mut child, deadline) {
            Ok(Some(_)) => Ok(()),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                child.wait().map(drop).map_err(|source| NftRunError::Io {
                    program: program.path().to_owned(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fake_nft::FakeNft;

    /// A stand-in for `nft -i` that prints its environment as errors of the first
    /// command, and answers the sentinel.
    const ENV_THEN_ANSWER: &str = "env >&2\n\
        while read -r line; do\n\
          case \"$line\" in\n\
            describe*) echo 'meta expression, datatype integer (integer), 1 bits' ;;\n\
          esac\n\
        done";

    #[test]
    fn the_session_runs_nft_dash_i_in_a_clean_environment_without_history() {
        let fake = FakeNft::new();
        let program = fake.program(&format!("[ \"$1\" = -i ] || exit 3\n{ENV_THEN_ANSWER}"));
        let mut session = OwnerSession::start(&program).unwrap();
        let Err(NftRunError::Rejected { errors, .. }) = session.run("list tables") else {
            panic!("the environment comes back as errors");
        };
        let mut env: Vec<&str> = errors.lines().collect();
        env.sort_unstable();
        assert_eq!(
            env,
            [
                "HOME=/dev/null",
                "LC_ALL=C",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "PWD=/"
            ]
        );
        // Nothing more said: the next command succeeds.
        session.run("list tables").unwrap();
        session.end().unwrap();
    }

    #[test]
    fn a_hung_session_times_out_and_is_killed_at_the_end() {
        let fake = FakeNft::new();
        let program = fake
            .program("exec sleep 600")
            .with_timeout(Duration::from_millis(300));
        let mut session = OwnerSession::start(&program).unwrap();
        let started = Instant::now();
        let err = session.run("list tables").unwrap_err();
        assert!(matches!(err, NftRunError::TimedOut { .. }), "{err:?}");
        // sleep does not exit when its input closes: killed after the timeout.
        session.end().unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }
}
