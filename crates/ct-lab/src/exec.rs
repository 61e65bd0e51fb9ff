//! Running commands with a deadline: one-shot (`run`) and in the background (`Bg`).

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What went wrong in the lab: which command, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabError(pub String);

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LabError {}

impl LabError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        LabError(msg.into())
    }
}

/// A finished command.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub cmd: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// `Ok(self)` when the command exited 0, else an error with its output.
    pub fn ok(self) -> Result<Output, LabError> {
        if self.success() {
            Ok(self)
        } else {
            Err(LabError::new(format!(
                "`{}` failed ({}):\nstdout: {}\nstderr: {}",
                self.cmd,
                self.status,
                self.stdout.trim_end(),
                self.stderr.trim_end()
            )))
        }
    }
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.len() > 60 || a.contains('\n') {
            s.push_str("<script>");
        } else {
            s.push_str(&a);
        }
    }
    s
}

fn reader_thread<R: Read + Send + 'static>(r: Option<R>) -> Option<JoinHandle<String>> {
    r.map(|mut r| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
}

/// Set to a whole number N to give every lab command N times its time limit: the kernel
/// matrix sets it, whose emulated VMs run commands several times slower than a host and
/// sometimes stall for seconds.
pub const TIME_SCALE_ENV: &str = "CT_LAB_TIME_SCALE";

/// `limit` times [`TIME_SCALE_ENV`] (1 when unset or not a whole number from 1 to 100).
pub fn scaled(limit: Duration) -> Duration {
    static SCALE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let scale = *SCALE.get_or_init(|| time_scale(std::env::var(TIME_SCALE_ENV).ok().as_deref()));
    limit * scale
}

fn time_scale(value: Option<&str>) -> u32 {
    value
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| (1..=100).contains(n))
        .unwrap_or(1)
}

/// Waits for `child` until `deadline`; kills it past that. `None` on timeout.
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Runs `cmd` to completion, feeding it `stdin`, killing it after `timeout`.
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output, LabError> {
    let timeout = scaled(timeout);
    let line = describe(cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| LabError::new(format!("cannot start `{line}`: {e}")))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Small inputs (rulesets): the pipe buffer holds them, so this does not block.
        let _ = pipe.write_all(data);
    }
    let out = reader_thread(child.stdout.take());
    let err = reader_thread(child.stderr.take());
    let status = wait_until(&mut child, Instant::now() + timeout)
        .map_err(|e| LabError::new(format!("waiting for `{line}`: {e}")))?;
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            cmd: line,
            status,
            stdout,
            stderr,
        }),
        None => Err(LabError::new(format!(
            "`{line}` timed out after {timeout:?} (killed)\nstdout: {}\nstderr: {}",
            stdout.trim_end(),
            stderr.trim_end()
        ))),
    }
}

/// A command running in the background (a server). Killed when dropped.
#[derive(Debug)]
pub struct Bg {
    cmd: String,
    child: Option<Child>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Bg {
    pub(crate) fn spawn(cmd: &mut Command) -> Result<Bg, LabError> {
        let line = describe(cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| LabError::new(format!("cannot start `{line}`: {e}")))?;
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            thread::spawn(move || {
                for l in BufReader::new(out).lines() {
                    let Ok(l) = l else { break };
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = reader_thread(child.stderr.take());
        Ok(Bg {
            cmd: line,
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
            stderr,
        })
    }

    /// Waits until the process prints a line starting with `prefix` (e.g. `ready`) and
    /// returns that line.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Result<String, LabError> {
        let timeout = scaled(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return Ok(l);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(LabError::new(format!(
                        "`{}` printed no `{prefix}` line within {timeout:?}; it printed: {:?}",
                        self.cmd, self.seen
                    )))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let out = self.finish(Duration::from_secs(1));
                    return Err(LabError::new(format!(
                        "`{}` ended before printing `{prefix}`: {}",
                        self.cmd,
                        match out {
                            Ok(o) =>
                                format!("{} stdout {:?} stderr {}", o.status, self.seen, o.stderr),
                            Err(e) => e.0,
                        }
                    )));
                }
            }
        }
    }

    /// Waits for the process to exit (killing it after `timeout`) and returns everything
    /// it printed.
    pub fn finish(&mut self, timeout: Duration) -> Result<Output, LabError> {
        let timeout = scaled(timeout);
        let mut child = self
            .child
            .take()
            .ok_or_else(|| LabError::new(format!("`{}` already finished", self.cmd)))?;
        let status = wait_until(&mut child, Instant::now() + timeout)
            .map_err(|e| LabError::new(format!("waiting for `{}`: {e}", self.cmd)))?;
        // The reader thread ends at EOF, once the process is gone.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(l);
        }
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stdout = self.seen.join("\n");
        match status {
            Some(status) => Ok(Output {
                cmd: self.cmd.clone(),
                status,
                stdout,
                stderr,
            }),
            None => Err(LabError::new(format!(
                "`{}` timed out after {timeout:?} (killed)\nstdout: {stdout}\nstderr: {stderr}",
                self.cmd
            ))),
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_scale_is_a_whole_number_from_1_to_100() {
        assert_eq!(time_scale(None), 1);
        assert_eq!(time_scale(Some("3")), 3);
        assert_eq!(time_scale(Some(" 7 ")), 7);
        for bad in ["0", "101", "-2", "1.5", "x", ""] {
            assert_eq!(time_scale(Some(bad)), 1, "{bad}");
        }
    }
}
