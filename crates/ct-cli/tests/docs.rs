//! `ct-cli completions` and `ct-cli man`: the scripts load in their shells and complete
//! commands and options; every man page renders with man(1) without a warning.

#[path = "support/cli.rs"]
mod cli;

use std::process::{Command, Stdio};

use std::io::Write;

use cli::*;

/// Runs `script` in bash (non-interactive, no rc files) and returns its stdout.
/// Runs `script` with `shell` (its name, then options) and returns what it printed; the
/// script must succeed.
fn run_shell(shell: &[&str], script: &str) -> String {
    let out = Command::new(shell[0])
        .args(&shell[1..])
        .args(["-c", script])
        .output()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", shell[0]));
    assert!(
        out.status.success(),
        "{}: {}\n{}",
        shell[0],
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn bash(script: &str) -> String {
    run_shell(&["bash", "--norc", "--noprofile"], script)
}

#[test]
fn bash_completion_registers_and_completes() {
    let scratch = ct_lab::Scratch::new("bash-completion");
    let dir = scratch.dir();
    let script = dir.join("ct-cli.bash");
    std::fs::write(&script, stdout(&ct_cli(&["completions", "bash"]))).unwrap();
    let source = format!("source {}", script.display());

    let registered = bash(&format!("{source} && complete -p ct-cli"));
    assert!(
        registered.trim_end().ends_with(" ct-cli") && registered.contains("-F "),
        "complete -p ct-cli: {registered}"
    );

    // What the function offers, as bash would ask it after `ct-cli <words>`.
    let complete = |words: &[&str]| -> Vec<String> {
        let line = format!("ct-cli {}", words.join(" "));
        let words_array = std::iter::once("ct-cli")
            .chain(words.iter().copied())
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let function = registered
            .split_whitespace()
            .skip_while(|w| *w != "-F")
            .nth(1)
            .unwrap()
            .to_owned();
        let out = bash(&format!(
            "{source}\nCOMP_WORDS=({words_array}); COMP_CWORD={}; COMP_LINE='{line}'; \
             COMP_POINT={}; {function} ct-cli '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            words.len(),
            line.len(),
            words.last().unwrap(),
            if words.len() > 1 {
                words[words.len() - 2]
            } else {
                "ct-cli"
            },
        ));
        out.lines().map(str::to_owned).collect()
    };
    let commands = complete(&["c"]);
    for name in ["collect", "conns", "check", "completions"] {
        assert!(commands.iter().any(|c| c == name), "{name} in {commands:?}");
    }
    assert!(!commands.iter().any(|c| c == "print"), "{commands:?}");
    let options = complete(&["collect", "--raw-h"]);
    assert_eq!(options, ["--raw-headers"]);
    let shells = complete(&["completions", ""]);
    let shells: Vec<&str> = shells
        .iter()
        .map(String::as_str)
        .filter(|w| !w.starts_with('-'))
        .collect();
    assert_eq!(shells, ["bash", "zsh", "fish"]);
    let pages = complete(&["man", "co"]);
    assert_eq!(pages, ["collect", "conns", "completions"]);
}

/// A folder for `shell`'s completion script when `shell` runs here; otherwise `None`, and
/// the test gate has decided (skip, or fail under CT_REQUIRE_KERNEL_TESTS=1 as CI sets it).
fn completion_scratch(shell: &str) -> Option<ct_lab::Scratch> {
    let ok = Command::new(shell)
        .args(["-c", "exit 0"])
        .status()
        .is_ok_and(|s| s.success());
    let available = ct_lab::run_or_skip(if ok {
        Ok(())
    } else {
        Err(format!("no {shell} (scripts/install-deps.sh installs it)"))
    });
    available.then(|| ct_lab::Scratch::new(&format!("{shell}-completion")))
}

#[test]
fn zsh_completion_registers() {
    let Some(scratch) = completion_scratch("zsh") else {
        return;
    };
    let dir = scratch.dir();
    let script = stdout(&ct_cli(&["completions", "zsh"]));
    assert!(script.starts_with("#compdef ct-cli"), "{}", &script[..80]);
    std::fs::write(dir.join("_ct-cli"), &script).unwrap();
    // As a user installs it: in a directory of $fpath, found by compinit.
    let registered = run_shell(
        &["zsh", "-f"],
        &format!(
            "fpath=({} $fpath); autoload -Uz compinit; compinit -u -D; print -r -- $_comps[ct-cli]",
            dir.display()
        ),
    );
    assert_eq!(registered.trim(), "_ct-cli");
}

#[test]
fn fish_completion_completes() {
    let Some(scratch) = completion_scratch("fish") else {
        return;
    };
    let dir = scratch.dir();
    let script = dir.join("ct-cli.fish");
    std::fs::write(&script, stdout(&ct_cli(&["completions", "fish"]))).unwrap();
    // What fish offers for a command line (complete -C), one candidate a line.
    let complete = |line: &str| -> Vec<String> {
        run_shell(
            &["fish", "--no-config"],
            &format!("source {}; complete -C '{line}'", script.display()),
        )
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect()
    };
    assert_eq!(complete("ct-cli co"), ["collect", "completions", "conns"]);
    assert_eq!(complete("ct-cli collect --raw-h"), ["--raw-headers"]);
    assert_eq!(complete("ct-cli collect --rotate-c"), ["--rotate-count"]);
}

#[test]
fn only_the_three_shells() {
    let out = ct_cli(&["completions", "powershell"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_man_page_renders_without_warnings() {
    for page in [
        None,
        Some("collect"),
        Some("print"),
        Some("sort"),
        Some("conns"),
        Some("pcap"),
        Some("check"),
        Some("completions"),
        Some("man"),
    ] {
        let roff = stdout(&ct_cli(
            &["man"].into_iter().chain(page).collect::<Vec<_>>(),
        ));
        let mut man = Command::new("man")
            .args(["--warnings=w", "-l", "-"])
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("man runs (scripts/install-deps.sh installs man-db)");
        man.stdin
            .take()
            .unwrap()
            .write_all(roff.as_bytes())
            .unwrap();
        let out = man.wait_with_output().unwrap();
        let name = page.map_or("ct-cli".to_owned(), |p| format!("ct-cli-{p}"));
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && warnings.is_empty(),
            "{name}: {warnings}"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("NAME") && text.contains(&name),
            "{name}:\n{text}"
        );
        assert!(
            text.contains("Exit codes:")
                || page.is_some_and(|p| ["completions", "man"].contains(&p)),
            "{name}"
        );
    }
    let out = ct_cli(&["man", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}
