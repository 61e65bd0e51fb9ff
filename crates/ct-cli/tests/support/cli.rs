//! Running the `ct-cli` under test as a child process and reading what it said: shared by
//! every test file that runs it (kernel tests through `support`, the others with
//! `#[path = "support/cli.rs"] mod cli;`).
#![allow(dead_code)]

use std::process::{Command, Output};

/// The binary under test.
pub const CT_CLI: &str = env!("CARGO_BIN_EXE_ct-cli");

/// `ct-cli <args>`, run to its end.
pub fn ct_cli(args: &[&str]) -> Output {
    Command::new(CT_CLI)
        .args(args)
        .output()
        .expect("ct-cli runs")
}

/// `ct-cli <args>`, which must succeed: its stdout.
pub fn ct_cli_ok(args: &[&str]) -> String {
    stdout(&ct_cli(args))
}

/// The stdout of a run that must have succeeded (else its stderr is the failure).
pub fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "ct-cli failed: {}", stderr(out));
    String::from_utf8(out.stdout.clone()).expect("UTF-8 on stdout")
}

/// A run's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
