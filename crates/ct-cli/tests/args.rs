//! Bad arguments give one clear message and exit code 2; the output file is never written
//! through a link or over an existing file. None of these needs the kernel.

#[path = "support/cli.rs"]
mod cli;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

use cli::*;
use ct_lab::Scratch;

/// Runs `ct-cli <command line>` (words split at spaces) and asserts a usage error whose
/// message holds `needle`.
fn usage_error(command_line: &str, needle: &str) {
    usage_error_args(&command_line.split_whitespace().collect::<Vec<_>>(), needle);
}

/// [`usage_error`] with the arguments given one by one (for an argument with a space).
fn usage_error_args(args: &[&str], needle: &str) {
    let out = ct_cli(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in:\n{err}"
    );
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn unknown_format() {
    usage_error(
        "print --format yaml x.json",
        "possible values: multiline, singleline, json",
    );
    usage_error("collect --format xml", "invalid value 'xml'");
}

#[test]
fn bad_probe_specs() {
    usage_error(
        "collect -p net_dev_start_xmit",
        "probe \"net_dev_start_xmit\": expected tp:<category>:<name>, kp:<function> or \
         kr:<function>",
    );
    usage_error(
        "collect --probe fentry:ip_rcv",
        "unknown probe type \"fentry\"",
    );
    usage_error_args(&["collect", "-p", "tp:net:a b"], "names may hold only");
}

#[test]
fn bad_limits() {
    usage_error("collect --duration 10x", "use e.g. 10s, 500ms or 2m");
    usage_error("collect --duration 0s", "more than 0");
    usage_error("collect -n 0", "invalid value '0'");
    usage_error("collect -n many", "invalid value 'many'");
    usage_error("collect --ring-size big", "not a size in bytes");
}

#[test]
fn bad_netns() {
    usage_error(
        "collect --netns /nonexistent/netns",
        "network namespace /nonexistent/netns",
    );
    usage_error(
        "collect --netns /proc/self/status",
        "is not a namespace file",
    );
    usage_error(
        "collect --netns /proc/self/ns/uts",
        "not a network namespace",
    );
}

/// `--netns` naming a FIFO or a regular file: refused at once (a FIFO opened for reading
/// would wait for a writer forever), with the message for a file that is no namespace.
#[test]
fn netns_files_that_are_no_namespace_are_refused_at_once() {
    let dir = Scratch::new("netns-fifo");
    let fifo = dir.path("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let regular = dir.path("regular");
    std::fs::write(&regular, "4026531840\n").unwrap();
    for file in [&fifo, &regular] {
        let mut child = std::process::Command::new(CT_CLI)
            .args(["collect", "--netns", s(file), "--duration", "1s"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ct-cli runs");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ct-cli still opening --netns {} after 10 s", file.display());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("is not a namespace file"), "{err}");
    }
}

#[test]
fn options_that_need_an_output_file() {
    usage_error("collect --print", "--out <FILE>");
    usage_error("collect --force", "--out <FILE>");
}

#[test]
fn no_command_shows_usage() {
    let out = ct_cli(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Usage: ct-cli <COMMAND>"));
    usage_error("frobnicate", "unrecognized subcommand");
}

#[test]
fn help_and_version() {
    let out = ct_cli(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ct-cli {}", env!("CARGO_PKG_VERSION"))
    );
    let out = ct_cli(&["collect", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Exit codes:",
        "3  insufficient privileges",
        "4  prerequisites missing",
        "tp:net:net_dev_start_xmit",
        "--ct-only",
    ] {
        assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
    }
}

#[test]
fn unknown_probe_is_a_usage_error_where_there_is_btf() {
    let out = ct_cli(&["collect", "-p", "tp:net:no_such_tracepoint_ctcli"]);
    let err = stderr(&out);
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.starts_with("ct-cli: probe tp:net:no_such_tracepoint_ctcli: no such tracepoint"),
            "{err}"
        );
    } else {
        assert_eq!(out.status.code(), Some(4), "{err}");
    }
    assert_eq!(err.lines().count(), 1, "one line, no backtrace: {err}");
}

#[test]
fn an_existing_output_file_is_refused() {
    let dir = Scratch::new("existing");
    let file = dir.path("events.json");
    std::fs::write(&file, "keep me\n").unwrap();
    let out = ct_cli(&["collect", "-o", s(&file), "-n", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me\n");
}

#[test]
fn a_symlink_is_never_followed() {
    let dir = Scratch::new("symlink");
    let target = dir.path("target.json");
    std::fs::write(&target, "keep me\n").unwrap();
    let link = dir.path("link.json");
    symlink(&target, &link).unwrap();
    let dangling = dir.path("dangling.json");
    let nowhere = dir.path("nowhere.json");
    symlink(&nowhere, &dangling).unwrap();

    for path in [&link, &dangling] {
        for force in [false, true] {
            let mut args = vec!["collect", "-o", s(path), "-n", "1"];
            if force {
                args.push("--force");
            }
            let out = ct_cli(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.contains("is a symbolic link"), "{args:?}: {err}");
        }
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me\n");
    assert!(!nowhere.exists(), "the link's target was not created");
}

/// As root the file is created 0600 when collection starts; without the rights to collect,
/// the file made for it is removed again.
#[test]
fn output_file_is_0600_or_removed() {
    let dir = Scratch::new("mode");
    let file = dir.path("events.json");
    let out = ct_cli(&[
        "collect",
        "-o",
        s(&file),
        "-p",
        "tp:net:net_dev_start_xmit",
        "--netns",
        "/proc/self/ns/net",
        "--duration",
        "300ms",
    ]);
    let err = stderr(&out);
    match out.status.code() {
        Some(0) => {
            let meta = std::fs::symlink_metadata(&file).unwrap();
            assert!(meta.is_file());
            assert_eq!(meta.mode() & 0o777, 0o600);
            assert!(err.contains("; collecting"), "{err}");
            assert!(err.contains(" lost"), "summary: {err}");
        }
        Some(3) => {
            assert!(err.contains("privileges"), "{err}");
            assert!(!file.exists(), "file removed when collection cannot start");
        }
        Some(4) => assert!(!file.exists(), "file removed: {err}"),
        other => panic!("unexpected exit {other:?}: {err}"),
    }
}

#[test]
fn capture_tool_arguments() {
    usage_error("collect --rotate-size 8k", "--rotate-count");
    usage_error("collect -o x.json --rotate-size 8k", "--rotate-count");
    usage_error("collect --rotate-count 3", "--rotate-size");
    usage_error(
        "collect -w x.pcapng --rotate-size 8k --rotate-count 2",
        "--out",
    );
    usage_error(
        "collect -o x.json --rotate-size 0 --rotate-count 2",
        "at least 1 byte",
    );
    usage_error(
        "collect -o x.json --rotate-size 8q --rotate-count 2",
        "is not a size",
    );
    usage_error(
        "collect -o x.json --rotate-size 8k --rotate-count 0",
        "--rotate-count",
    );
    usage_error("collect --force", "--out");
    usage_error("pcap x.json", "--out");
    usage_error("pcap -o x.pcapng", "FILE");
    usage_error("print", "FILE");
    usage_error("completions tcsh", "possible values: bash, zsh, fish");

    let scratch = Scratch::new("capture-args");
    let same = scratch.path("same");
    let out = ct_cli(&["collect", "-o", s(&same), "-w", s(&same)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("-o and -w name the same file"),
        "{}",
        stderr(&out)
    );
    assert!(!same.exists());
    // Two spellings of one path, with --force over an existing file: still one file.
    std::fs::write(&same, "").unwrap();
    let dir_name = same.parent().and_then(|d| d.file_name()).unwrap();
    let dotted = scratch.path("..").join(dir_name).join("same");
    let out = ct_cli(&[
        "collect",
        "-o",
        s(&same),
        "-w",
        s(&dotted),
        "--force",
        "--duration",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("-o and -w name the same file"),
        "{}",
        stderr(&out)
    );
    let out = ct_cli(&["print", "-", "-"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("can be read only once"),
        "{}",
        stderr(&out)
    );
}
