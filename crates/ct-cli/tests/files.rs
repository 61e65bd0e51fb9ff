//! Events files from elsewhere, read by `ct-cli print`, `sort` and `conns`: whatever the
//! input, one clear error per bad line, no panic, and memory bounded by the line limit, not
//! by the input.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// A small valid event (one connection, one packet).
const EVENT: &str = r#"{"timestamp":1000,"tracking":{"skb":7,"conn":9},"ct":{"state":"new","base":{"orig":{"ip":{"src":"10.0.0.1","dst":"10.0.0.2","version":"v4"},"proto":{"udp":{"sport":1000,"dport":53}}},"reply":{"ip":{"src":"10.0.0.2","dst":"10.0.0.1","version":"v4"},"proto":{"udp":{"sport":53,"dport":1000}}}}}}"#;

/// What a finished child left: exit code, stdout, stderr, and its peak resident set in KiB.
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    peak_rss_kib: u64,
}

/// `VmHWM` of a live process: the peak of its resident set since it started its program.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in:\n{status}"))
}

/// Runs `ct-cli <args> -` with `input` streamed to its stdin by a thread (never held in
/// memory whole: `input` yields chunks). The peak RSS is read from /proc once the child has
/// taken all the input but before it sees the end of it (`ru_maxrss` would not do: it
/// starts from the RSS of this test process when it forked).
fn run_streamed(args: &[&str], input: impl Iterator<Item = Vec<u8>> + Send + 'static) -> Finished {
    let mut child = ct_lab::spawn_reading_stdin(Path::new(env!("CARGO_BIN_EXE_ct-cli")), args)
        .expect("ct-cli starts");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for chunk in input {
            stdin.write_all(&chunk).expect("ct-cli reads all its input");
        }
        stdin
    });
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let stdin = writer.join().unwrap();
    // What is left in the pipe (at most its 64 KiB buffer) is read in well under this.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let peak_rss_kib = peak_rss_kib(child.id());
    drop(stdin);
    let status = child.wait().unwrap();
    Finished {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        peak_rss_kib,
    }
}

/// `n` bytes of one JSON string value in 1 MiB chunks, with no line end.
fn huge_line(n: usize) -> impl Iterator<Item = Vec<u8>> {
    const CHUNK: usize = 1 << 20;
    let head = br#"{"pad":""#.to_vec();
    std::iter::once(head).chain((0..n / CHUNK).map(|_| vec![b'x'; CHUNK]))
}

/// A 100 MB line with no newline (at the end of the input, and once more in the middle
/// followed by good events): each command reports it as one `line N: longer than ...`
/// error, goes on with the next line, exits 1, and its peak RSS stays far below the line.
#[test]
fn a_100_mb_line_is_skipped_with_bounded_memory() {
    const LINE: usize = 100 << 20;
    for command in ["print", "sort", "conns"] {
        let started = Instant::now();
        let input = std::iter::once(format!("{EVENT}\n").into_bytes())
            .chain(huge_line(LINE))
            .chain(std::iter::once(format!("\n{EVENT}\n").into_bytes()))
            .chain(huge_line(LINE));
        let out = run_streamed(&[command, "--format", "singleline"], input);
        let elapsed = started.elapsed();
        assert_eq!(out.code, Some(1), "{command}: stderr:\n{}", out.stderr);
        let errors: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(
            errors,
            [
                "ct-cli: stdin: line 2: longer than 1048576 bytes, skipped: an event is a few \
                 hundred bytes, so this is not an events file or it is corrupt",
                "ct-cli: stdin: line 4: longer than 1048576 bytes, skipped: an event is a few \
                 hundred bytes, so this is not an events file or it is corrupt",
                &format!(
                    "ct-cli: stdin: 2 bad lines, 2 events {}",
                    match command {
                        "print" => "printed",
                        "sort" => "sorted",
                        _ => "read",
                    }
                ),
            ],
            "{command}"
        );
        assert!(
            !out.stdout.is_empty(),
            "{command}: the good events are shown"
        );
        eprintln!(
            "measured: ct-cli {command} over 2 x {} MiB lines: peak RSS {} KiB, {:.2} s",
            LINE >> 20,
            out.peak_rss_kib,
            elapsed.as_secs_f64()
        );
        assert!(
            out.peak_rss_kib < 24 * 1024,
            "{command}: peak RSS {} KiB for a {} MiB line",
            out.peak_rss_kib,
            LINE >> 20
        );
    }
}

/// Garbage of every kind from elsewhere through `print`: each bad line is one error line
/// naming its number and what was wrong, nothing panics, good lines still print, unknown
/// keys (however deeply nested) are skipped and missing keys take their defaults.
#[test]
fn bad_input_of_every_kind_is_one_error_per_line() {
    let depth = 100_000;
    let deep_unknown = format!(
        r#"{{"x":{}{},"timestamp":3}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let lines: Vec<Vec<u8>> = vec![
        EVENT.as_bytes().to_vec(),
        b"{\"ct\":\xff\xfe}".to_vec(),
        deep_unknown.into_bytes(),
        "[".repeat(depth).into_bytes(),
        br#"{"timestamp":1e999}"#.to_vec(),
        br#"{"timestamp":18446744073709551616}"#.to_vec(),
        br#"{"ct":{"state":"new","base":{"zone_id":65536}}}"#.to_vec(),
        br#"{"unknown":{"nested":[1,{"x":null}]},"timestamp":5}"#.to_vec(),
        b"\x00\x01\x02binary".to_vec(),
        br#"{"ct":{"state":"new","#.to_vec(),
        EVENT.as_bytes().to_vec(),
    ];
    let mut input = lines.join(&b'\n');
    input.push(b'\n');
    let out = run_streamed(&["print", "--format", "json"], std::iter::once(input));
    assert_eq!(out.code, Some(1), "stderr:\n{}", out.stderr);
    let errors: Vec<&str> = out.stderr.lines().collect();
    let expected = [
        "line 2: not valid UTF-8 (bad byte at column 7)",
        "line 4: not a valid event at column 1: invalid type: sequence",
        "line 5: not valid JSON at column 18: number out of range",
        "line 6: not a valid event at column ",
        "line 7: not a valid event at column ",
        "line 9: not valid JSON at column 1",
        "line 10: JSON ends early at column ",
    ];
    assert_eq!(errors.len(), expected.len() + 1, "{}", out.stderr);
    for (line, want) in errors.iter().zip(expected) {
        assert!(
            line.starts_with(&format!("ct-cli: stdin: {want}")),
            "{line:?} should start with {want:?}"
        );
    }
    assert!(errors[3].contains("expected u64"), "{}", errors[3]);
    assert!(errors[4].contains("expected u16"), "{}", errors[4]);
    assert_eq!(errors[7], "ct-cli: stdin: 7 bad lines, 4 events printed");
    let printed: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(printed.len(), 4, "{}", out.stdout);
    assert_eq!(printed[1], r#"{"timestamp":3}"#);
    assert_eq!(printed[2], r#"{"timestamp":5}"#);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}
