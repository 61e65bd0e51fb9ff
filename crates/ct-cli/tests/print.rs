//! `ct-cli print` against the fixture events files: every format, bad lines, stdin.

#[path = "support/cli.rs"]
mod cli;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use cli::*;
use ct_core::{read_events, Event};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/events")
        .join(name)
}

/// `ct-cli print` run in the fixtures directory, so messages name the file the same way
/// wherever the checkout is.
fn print(format: &str, file: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ct-cli"))
        .args(["print", "--format", format, file])
        .current_dir(fixture(""))
        .output()
        .expect("ct-cli runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

fn events(bytes: &[u8]) -> Vec<Event> {
    read_events(bytes)
        .collect::<Result<_, _>>()
        .expect("every line is an event")
}

fn assert_clean(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr), "", "nothing on stderr");
}

#[test]
fn multiline() {
    let out = print("multiline", "sample.jsonl");
    assert_clean(&out);
    insta::assert_snapshot!("sample_multiline", text(&out.stdout));
}

#[test]
fn multiline_is_the_default() {
    let path = fixture("sample.jsonl");
    let default = ct_cli(&["print", path.to_str().unwrap()]);
    assert_clean(&default);
    assert_eq!(default.stdout, print("multiline", "sample.jsonl").stdout);
}

#[test]
fn singleline() {
    let out = print("singleline", "sample.jsonl");
    assert_clean(&out);
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 6, "one line per event");
    insta::assert_snapshot!("sample_singleline", stdout);
}

#[test]
fn json_re_emits_the_same_events() {
    let out = print("json", "sample.jsonl");
    assert_clean(&out);
    insta::assert_snapshot!("sample_json", text(&out.stdout));
    let original = std::fs::read(fixture("sample.jsonl")).unwrap();
    assert_eq!(events(&out.stdout), events(&original));
}

#[test]
fn format_names_ignore_case() {
    let out = print("SingleLine", "sample.jsonl");
    assert_clean(&out);
    assert_eq!(out.stdout, print("singleline", "sample.jsonl").stdout);
}

#[test]
fn stdin_is_read_with_a_dash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ct-cli"))
        .args(["print", "--format", "singleline", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = std::fs::read(fixture("sample.jsonl")).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_clean(&out);
    assert_eq!(out.stdout, print("singleline", "sample.jsonl").stdout);
}

#[test]
fn bad_lines_are_reported_and_the_rest_printed() {
    let out = print("singleline", "bad_lines.jsonl");
    assert_eq!(out.status.code(), Some(1), "bad lines make the exit code 1");
    let stderr = text(&out.stderr);
    let reported: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.split("line ").nth(1))
        .filter_map(|rest| rest.split(':').next())
        .collect();
    assert_eq!(reported, ["2", "4", "6", "7"], "stderr:\n{stderr}");
    assert!(stderr.contains("line 2: not valid JSON"), "{stderr}");
    assert!(stderr.contains("line 4: JSON ends early"), "{stderr}");
    assert!(stderr.contains("4 bad lines, 3 events printed"), "{stderr}");

    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        3,
        "good lines still print:\n{stdout}"
    );
    insta::assert_snapshot!("bad_lines_stdout", stdout);
    insta::assert_snapshot!("bad_lines_stderr", stderr);
}

#[test]
fn bad_lines_in_json_keep_the_good_events() {
    let out = print("json", "bad_lines.jsonl");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(events(&out.stdout).len(), 3);
}

#[test]
fn a_missing_file_is_one_clear_error() {
    let out = ct_cli(&["print", "/nonexistent/ct-cli/events.json"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("ct-cli: cannot open /nonexistent/ct-cli/events.json: "),
        "{stderr}"
    );
}

#[test]
fn a_directory_is_refused() {
    let dir = fixture("");
    let out = ct_cli(&["print", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is a directory"));
}

/// A tcpdump expression beyond the address/port language runs libpcap's program on the
/// header bytes of events collected with --raw-headers; events without bytes do not
/// match, and the note says how many; a file with none is refused.
#[test]
fn tcpdump_expressions_filter_events_with_header_bytes() {
    let file = fixture("raw_headers.jsonl");
    let file = file.to_str().unwrap();
    let skbs = |out: &Output| -> Vec<u64> {
        events(&out.stdout)
            .iter()
            .map(|e| e.tracking.unwrap().skb)
            .collect()
    };
    let syn = ct_cli(&[
        "print",
        file,
        "--format",
        "json",
        "-f",
        "tcp[tcpflags] & tcp-syn != 0",
    ]);
    assert!(syn.status.success(), "{}", text(&syn.stderr));
    assert_eq!(skbs(&syn), [1], "the SYN with bytes");
    assert!(
        text(&syn.stderr).contains("1 events not matched: events collected without --raw-headers"),
        "{}",
        text(&syn.stderr)
    );
    let ack = ct_cli(&[
        "print",
        file,
        "--format",
        "json",
        "-f",
        "tcp[13] & 0x10 != 0",
    ]);
    assert_eq!(skbs(&ack), [2], "the ACK");
    // The address/port language still works on every event, bytes or not.
    let port = ct_cli(&["print", file, "--format", "json", "-f", "tcp dst port 81"]);
    assert_eq!(skbs(&port), [1, 2, 3]);

    let none = fixture("sample.jsonl");
    let refused = ct_cli(&["print", none.to_str().unwrap(), "-f", "tcp[13] & 2 != 0"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("keep no packet bytes"),
        "{}",
        text(&refused.stderr)
    );
}
