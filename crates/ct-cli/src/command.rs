//! `collect --cmd`: the command traced, started once every probe is attached and stopped
//! with collection.

use std::io::{self, IsTerminal};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
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
    /// Runs `text` with `/bin/sh -c` in a process group of its own, so that stopping it
    /// reaches every process it started (a pipeline, a background job), not only the
    /// shell: Ctrl-C on a terminal reaches ct-cli alone, which stops the group. Its stdin
    /// is ct-cli's unless that is a terminal (a background group reading the terminal
    /// would be stopped by SIGTTIN), then `/dev/null`. Its stdout is ct-cli's, or, with
    /// `stdout_to_stderr` (events are written to stdout), ct-cli's stderr, so that its
    /// output never lands inside the event stream.
    pub fn start(text: &str, stdout_to_stderr: bool) -> anyhow::Result<Self> {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(text).process_group(0);
        if io::stdin().is_terminal() {
            command.stdin(Stdio::null());
        }
        if stdout_to_stderr {
            let stderr = io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .context("cannot hand stderr to the command")?;
            command.stdout(Stdio::from(stderr));
        }
        let child = command
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

    /// Stops whatever of the command still runs, the shell and every process left in its
    /// group (a pipeline's other members, a background job, even after the shell has
    /// exited): SIGTERM to the group, then SIGKILL after [`STOP_GRACE`]. Returns once the
    /// shell is reaped and the group is empty (or after the SIGKILL: a process that
    /// left the group with `setsid` is out of reach).
    pub fn stop(&mut self) -> io::Result<()> {
        let shell_ran = !self.exited()?;
        if !self.signal_group(libc::SIGTERM, shell_ran)? && !shell_ran {
            return Ok(());
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.exited()? && !self.group_alive()? {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let shell_runs = !self.exited()?;
        self.signal_group(libc::SIGKILL, shell_runs)?;
        if self.status.is_none() {
            self.status = Some(self.child.wait()?);
        }
        // What SIGKILL hit is gone once the kernel has torn it down: wait for that, so
        // that nothing of the command outlives ct-cli.
        let deadline = Instant::now() + STOP_GRACE;
        while self.group_alive()? && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// The command's process group: the shell's pid (it leads the group it started in).
    fn group(&self) -> io::Result<libc::pid_t> {
        libc::pid_t::try_from(self.child.id())
            .map_err(|_| io::Error::other("process id out of range"))
    }

    /// Sends `signal` to the command's process group; `to_shell` records it as what
    /// stopped the shell. False when no process was left in the group.
    fn signal_group(&mut self, signal: i32, to_shell: bool) -> io::Result<bool> {
        let group = self.group()?;
        // SAFETY: kill(2) with a negative pid signals a process group; the group is the one
        // our child leads. Its id cannot be reused for another group while any member
        // lives, nor while our child is not reaped.
        if unsafe { libc::kill(-group, signal) } != 0 {
            let err = io::Error::last_os_error();
            // Every member exited between the check and the signal: nothing to stop.
            if err.raw_os_error() == Some(libc::ESRCH) {
                return Ok(false);
            }
            return Err(err);
        }
        if to_shell {
            self.stopped_with = Some(signal);
        }
        Ok(true)
    }

    /// Whether a process is left in the command's group (signal 0 checks, sends nothing).
    fn group_alive(&self) -> io::Result<bool> {
        let group = self.group()?;
        // SAFETY: as in `signal_group`; signal 0 only checks that the group has a member.
        if unsafe { libc::kill(-group, 0) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ESRCH) => Ok(false),
            _ => Err(err),
        }
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
        let mut cmd = TracedCommand::start(text, false).unwrap();
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
        let mut cmd = TracedCommand::start("exec sleep 30", false).unwrap();
        let started = Instant::now();
        cmd.stop().unwrap();
        assert!(started.elapsed() < STOP_GRACE);
        assert_eq!(
            cmd.summary(),
            "command `exec sleep 30` was stopped by ct-cli (SIGTERM)"
        );

        let mut cmd =
            TracedCommand::start("trap '' TERM; while :; do sleep 0.1; done", false).unwrap();
        std::thread::sleep(Duration::from_millis(200)); // the trap is set
        cmd.stop().unwrap();
        assert!(
            cmd.summary().ends_with("was stopped by ct-cli (SIGKILL)"),
            "{}",
            cmd.summary()
        );
    }

    fn unique_marker(what: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("ct-cmd-{what}-{}-{nanos}", std::process::id())
    }

    #[test]
    fn stop_leaves_no_process_of_a_pipeline_behind() {
        let marker = unique_marker("pipeline");
        // `sleep` carries the marker in its environment, `cat` on its command line.
        let text = format!("CT_TEST_MARK={marker} sleep 60 | cat - {marker}");
        let mut cmd = TracedCommand::start(&text, false).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ct_lab::processes_holding(&marker).len() < 3 {
            assert!(Instant::now() < deadline, "the pipeline did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        cmd.stop().unwrap();
        assert_eq!(
            ct_lab::processes_holding(&marker),
            Vec::<String>::new(),
            "left running"
        );
        assert!(cmd.summary().ends_with("was stopped by ct-cli (SIGTERM)"));
    }

    #[test]
    fn a_background_job_is_stopped_after_the_shell_exited() {
        let marker = unique_marker("background");
        let text = format!("CT_TEST_MARK={marker} sleep 60 & exit 0");
        let mut cmd = finished(&text);
        assert!(
            !ct_lab::processes_holding(&marker).is_empty(),
            "the job runs on"
        );
        cmd.stop().unwrap();
        assert_eq!(
            ct_lab::processes_holding(&marker),
            Vec::<String>::new(),
            "left running"
        );
        assert_eq!(
            cmd.summary(),
            format!("command `{text}` exited with status 0")
        );
    }
}
