//! Exit codes and how an error is told to the user: one line, no backtrace.

use std::fmt::Write;
use std::process::ExitCode;

use ct_bpf::ErrorCategory;

/// Success.
pub const SUCCESS: u8 = 0;
/// Something failed (I/O, output file, a bad line in `print` input, ...).
pub const GENERIC: u8 = 1;
/// Bad arguments (clap uses the same code for what it rejects).
pub const USAGE: u8 = 2;
/// Not allowed to load BPF programs.
pub const PRIVILEGES: u8 = 3;
/// The kernel lacks what collection needs.
pub const PREREQUISITES: u8 = 4;

/// The `Exit codes:` section of a help text: one line per code and what it means.
pub fn help(codes: &[(u8, &str)]) -> String {
    let mut text = String::from("Exit codes:");
    for (code, meaning) in codes {
        write!(text, "\n  {code}  {meaning}").expect("writing to a String cannot fail");
    }
    text
}

/// The exit code for an error: from the first `ct_bpf::Error` in its chain, else generic.
pub fn code(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<ct_bpf::Error>())
        .map_or(GENERIC, |e| match e.category() {
            ErrorCategory::Usage => USAGE,
            ErrorCategory::Privileges => PRIVILEGES,
            ErrorCategory::Prerequisite => PREREQUISITES,
            ErrorCategory::Runtime => GENERIC,
        })
}

/// The error as one line: its context and causes joined by `: `, leaving out a cause whose
/// text the line already holds (library errors often print their source themselves).
pub fn message(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Prints `ct-cli: <message>` on stderr and returns the exit code for it.
pub fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("ct-cli: {}", message(err));
    ExitCode::from(code(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn codes_follow_the_bpf_error_category() {
        let e = anyhow::Error::from(ct_bpf::Error::Privileges);
        assert_eq!(code(&e), PRIVILEGES);
        let e = anyhow::Error::from(ct_bpf::Error::NoBtf).context("starting");
        assert_eq!(code(&e), PREREQUISITES);
        let e = anyhow::Error::from(ct_bpf::Error::NoProbes);
        assert_eq!(code(&e), USAGE);
        assert_eq!(code(&anyhow::anyhow!("other")), GENERIC);
    }

    #[test]
    fn repeated_causes_are_left_out() {
        let inner = std::io::Error::other("disk full");
        let e = Err::<(), _>(inner)
            .context("writing out.json failed: disk full")
            .unwrap_err();
        assert_eq!(message(&e), "writing out.json failed: disk full");
        let e = Err::<(), _>(std::io::Error::other("denied"))
            .context("cannot open x")
            .unwrap_err();
        assert_eq!(message(&e), "cannot open x: denied");
    }
}
