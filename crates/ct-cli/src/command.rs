//! `collect --cmd`: the command traced, started once every probe is attached and stopped
//! with collection.

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How long a command told to stop (SIGTERM) has before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A running (or finished) `--cmd` command.
#[derive(Debug)]
pub struct TracedCommand {
    text: String,
    child: Child,
    status: Option<ExitStatus>,
    /// The signal ct-cli sent to stop it, if it did.
    stopped_with: Option<i32>,
}

impl TracedCommand {
    /// Runs `text` with `/bin/sh -c`, in ct-cli's process group (so that Ctrl-C on a
    /// terminal reaches it as it reaches ct-cli), with ct-cli's stdin, stdout and stderr.
    pub fn start(text: &str) -> anyhow::Result<Self> {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(text)
            .spawn()
            .with_context(|| format!("cannot start the command `{text}` with /bin/sh"))?;
        Ok(TracedCommand {
            text: text.to_owned(),
            child,
            status: None,
            stopped_with: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the command has exited (reaping it if so).
    pub fn exited(&mut self) -> io::Result<bool> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status.is_some())
    }

    /// Stops the command if it still runs: SIGTERM, then SIGKILL after [`STOP_GRACE`].
    pub fn stop(&mut self) -> io::Result<()> {
        if self.exited()? {
            return Ok(());
        }
        self.signal(libc::SIGTERM)?;
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.exited()? {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal(libc::SIGKILL)?;
        self.status = Some(self.child.wait()?);
        Ok(())
    }

    fn signal(&mut self, signal: i32) -> io::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id())
            .map_err(|_| io::Error::other("process id out of range"))?;
        // SAFETY: kill(2) on our own child, which is not reaped yet (so the pid is still
        // its own).
        if unsafe { libc::kill(pid, signal) } != 0 {
            let err = io::Error::last_os_error();
            // Exited between the check and the signal: nothing to stop.
            if err.raw_os_error() != Some(libc::ESRCH) {
                return Err(err);
            }
        }
        self.stopped_with = Some(signal);
        Ok(())
    }

    /// `command `ping -c 3 x` exited with status 0`, `... stopped by ct-cli (SIGTERM)`,
    /// `... ended by signal 2 (SIGINT)`.
    pub fn summary(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        let what = match self.status {
            None => "still running".to_owned(),
            Some(status) => match (status.code(), status.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(signal)) if self.stopped_with == Some(signal) => {
                    format!("was stopped by ct-cli ({})", signal_name(signal))
                }
                (None, Some(signal)) => {
                    format!("ended by signal {signal} ({})", signal_name(signal))
                }
                (None, None) => format!("ended ({status})"),
            },
        };
        format!("command `{}` {what}", self.text)
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(text: &str) -> TracedCommand {
        let mut cmd = TracedCommand::start(text).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cmd.exited().unwrap() {
            assert!(Instant::now() < deadline, "{text} did not end");
            std::thread::sleep(Duration::from_millis(10));
        }
        cmd
    }

    #[test]
    fn exit_status_and_signals_are_told() {
        assert_eq!(
            finished("exit 3").summary(),
            "command `exit 3` exited with status 3"
        );
        assert_eq!(
            finished("kill -SEGV $$").summary(),
            "command `kill -SEGV $$` ended by signal 11 (SIGSEGV)"
        );
        assert_eq!(
            finished("no-such-command-here 2>/dev/null").summary(),
            "command `no-such-command-here 2>/dev/null` exited with status 127"
        );
    }

    #[test]
    fn stop_terminates_then_kills() {
        let mut cmd = TracedCommand::start("exec sleep 30").unwrap();
        let started = Instant::now();
        cmd.stop().unwrap();
        assert!(started.elapsed() < STOP_GRACE);
        assert_eq!(
            cmd.summary(),
            "command `exec sleep 30` was stopped by ct-cli (SIGTERM)"
        );

        let mut cmd = TracedCommand::start("trap '' TERM; while :; do sleep 0.1; done").unwrap();
        std::thread::sleep(Duration::from_millis(200)); // the trap is set
        cmd.stop().unwrap();
        assert!(
            cmd.summary().ends_with("was stopped by ct-cli (SIGKILL)"),
            "{}",
            cmd.summary()
        );
    }
}
