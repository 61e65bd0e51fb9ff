use std::io::{BufReader, Cursor, Read};

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::testing::{self, seed_event, seed_text, SEEDS};
use crate::{CtEvent, CtState};

/// Adds to `seed` every key that `written` has as `null` and `seed` lacks.
fn add_absent_nulls(seed: &mut Value, written: &Value) {
    match (seed, written) {
        (Value::Object(seed), Value::Object(written)) => {
            for (key, value) in written {
                match seed.get_mut(key) {
                    Some(inner) => add_absent_nulls(inner, value),
                    None if value.is_null() => {
                        seed.insert(key.clone(), Value::Null);
                    }
                    None => {}
                }
            }
        }
        (Value::Array(seed), Value::Array(written)) => {
            for (s, w) in seed.iter_mut().zip(written) {
                add_absent_nulls(s, w);
            }
        }
        _ => {}
    }
}

fn read_all(input: &[u8]) -> Vec<Result<Event, LineError>> {
    read_events(input).collect()
}

fn ct_line(state: &str) -> String {
    format!(r#"{{"ct":{{"state":"{state}","base":null,"parent":null}}}}"#)
}

// ---------------------------------------------------------------------------------------
// The seed examples

#[test]
fn seeds_round_trip_to_the_same_value() {
    for name in SEEDS {
        let text = seed_text(name);
        let event = seed_event(name);
        assert!(event.ct.is_some(), "{name}");

        let written = serde_json::to_string(&event).unwrap();
        let again: Event = serde_json::from_str(&written).unwrap();
        assert_eq!(again, event, "{name}");

        let mut seed_value: Value = serde_json::from_str(&text).unwrap();
        let written_value: Value = serde_json::from_str(&written).unwrap();
        add_absent_nulls(&mut seed_value, &written_value);
        assert_eq!(written_value, seed_value, "{name}");
    }
}

/// Every file under fixtures/seed is one of the known seeds and reads as an event.
#[test]
fn every_seed_file_is_covered() {
    let mut names: Vec<String> = std::fs::read_dir(testing::fixtures_dir().join("seed"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = SEEDS.iter().map(|n| format!("{n}.json")).collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn seeds_as_json_lines() {
    let mut file = Vec::new();
    for name in SEEDS {
        write_event_json(&seed_event(name), &mut file).unwrap();
    }
    let text = String::from_utf8(file.clone()).unwrap();
    assert_eq!(text.lines().count(), SEEDS.len());
    assert!(text.lines().all(|l| l.starts_with(r#"{"ct":{"state":"#)));
    let read: Vec<Event> = read_events(&file[..]).map(Result::unwrap).collect();
    let expected: Vec<Event> = SEEDS.iter().map(|n| seed_event(n)).collect();
    assert_eq!(read, expected);
}

#[test]
fn seed_json_shape() {
    let event = seed_event("udp_zone");
    let mut line = Vec::new();
    write_event_json(&event, &mut line).unwrap();
    insta::assert_snapshot!(String::from_utf8(line).unwrap());
}

// ---------------------------------------------------------------------------------------
// Reading

#[test]
fn blank_lines_are_skipped_and_lines_counted() {
    let input = format!(
        "\n{}\n   \n\t\r\n{}\r\n\n{}",
        ct_line("new"),
        ct_line("reply"),
        ct_line("untracked")
    );
    let mut reader = read_events(input.as_bytes());
    let mut seen = Vec::new();
    for result in reader.by_ref() {
        let event = result.unwrap();
        seen.push(event.ct.unwrap().state);
    }
    assert_eq!(seen, [CtState::New, CtState::Reply, CtState::Untracked]);
    assert_eq!(reader.line_number(), 7);
}

#[test]
fn byte_order_mark_on_the_first_line_is_ignored() {
    let input = format!("\u{feff}{}\n", ct_line("new"));
    let events = read_all(input.as_bytes());
    assert_eq!(events.len(), 1);
    assert!(events[0].is_ok());
}

#[test]
fn bad_lines_are_reported_and_the_rest_is_read() {
    let input = [
        ct_line("new"),
        "{not json".into(),
        r#"{"ct":{"state":"bogus","base":null}}"#.into(),
        "42".into(),
        ct_line("established"),
        r#"{"ct":{"state":"new","base":{"zone_id":0}}}"#.into(),
        r#"{"ct":{"state":"new"}} trailing"#.into(),
        r#"{"ct":{"state":"new""#.into(),
        ct_line("reply"),
    ]
    .join("\n");
    let results = read_all(input.as_bytes());
    let summary: Vec<String> = results
        .iter()
        .map(|r| match r {
            Ok(e) => format!("ok {}", e.ct.as_ref().unwrap().state),
            Err(e) => e.to_string(),
        })
        .collect();
    insta::assert_snapshot!(summary.join("\n"));
    assert_eq!(results.len(), 9);
    let lines: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.line))
        .collect();
    assert_eq!(lines, [2, 3, 4, 6, 7, 8]);
    assert!(matches!(
        results[1].as_ref().unwrap_err().kind,
        LineErrorKind::Syntax { column: 2, .. }
    ));
    assert!(matches!(
        results[2].as_ref().unwrap_err().kind,
        LineErrorKind::Invalid { .. }
    ));
    assert!(matches!(
        results[7].as_ref().unwrap_err().kind,
        LineErrorKind::Truncated { .. }
    ));
}

#[test]
fn unknown_keys_are_ignored_and_optional_keys_default() {
    let line = r#"{"future":{"a":[1,2,{"b":null}]},"ct":{"state":"new","extra":1,
        "base":{"orig":{"ip":{"src":"10.0.0.1","dst":"10.0.0.2","version":"v4"},
        "proto":{"udp":{"sport":1,"dport":2}}},"reply":{"ip":{"src":"10.0.0.2",
        "dst":"10.0.0.1","version":"v4"},"proto":{"udp":{"sport":2,"dport":1}}},
        "new_field":"x"}},"timestamp":9}"#
        .replace('\n', "");
    let event = parse_event_line(&line).unwrap();
    assert_eq!(event.timestamp, Some(9));
    let ct = event.ct.unwrap();
    assert_eq!(ct.parent, None);
    let base = ct.base.unwrap();
    assert_eq!(base.zone_id, 0);
    assert_eq!(base.zone_dir, crate::ZoneDir::None);
    assert_eq!(base.mark, None);
    assert_eq!(base.labels, None);
    assert_eq!(base.tcp_state, None);
    assert_eq!(base.ct_status, crate::CtStatus::empty());
    assert_eq!(base.helper, None);
}

#[test]
fn an_empty_object_is_an_empty_event() {
    assert_eq!(parse_event_line("{}").unwrap(), Event::default());
}

#[test]
fn drops_read_and_write_as_documented() {
    let line =
        r#"{"probe":{"type":"tp","name":"skb:kfree_skb"},"drop":{"reason":"NETFILTER_DROP"}}"#;
    let event = parse_event_line(line).unwrap();
    assert_eq!(event.drop, Some(crate::DropInfo::reason("NETFILTER_DROP")));
    let mut out = Vec::new();
    write_event_json(&event, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), format!("{line}\n"));
    // Without a reason (kernels before 5.17): an empty object.
    let bare = parse_event_line(r#"{"drop":{}}"#).unwrap();
    assert_eq!(bare.drop, Some(crate::DropInfo::default()));
    let mut out = Vec::new();
    write_event_json(&bare, &mut out).unwrap();
    assert_eq!(out, b"{\"drop\":{}}\n");
    // No drop section: none written.
    let mut out = Vec::new();
    write_event_json(&Event::default(), &mut out).unwrap();
    assert_eq!(out, b"{}\n");
}

#[test]
fn too_long_lines_are_skipped_without_being_kept() {
    let long = format!(r#"{{"pad":"{}"}}"#, "x".repeat(3 << 20));
    let input = format!("{}\n{long}\n{}\n{long}", ct_line("new"), ct_line("reply"));
    let mut reader = read_events(input.as_bytes());
    assert!(reader.next().unwrap().is_ok());
    let err = reader.next().unwrap().unwrap_err();
    assert_eq!(err.line, 2);
    assert!(matches!(
        err.kind,
        LineErrorKind::TooLong {
            limit: DEFAULT_MAX_LINE_BYTES
        }
    ));
    assert!(err
        .to_string()
        .starts_with("line 2: longer than 1048576 bytes"));
    assert!(reader.buf.capacity() <= 2 * DEFAULT_MAX_LINE_BYTES);
    let event = reader.next().unwrap().unwrap();
    assert_eq!(event.ct.unwrap().state, CtState::Reply);
    // The last line has no line end.
    assert_eq!(reader.next().unwrap().unwrap_err().line, 4);
    assert!(reader.next().is_none());
}

#[test]
fn the_limit_is_configurable_and_exact() {
    let line = ct_line("new");
    let input = format!("{line}\n{line}\r\n");
    let exact: Vec<_> = read_events(input.as_bytes())
        .with_max_line_bytes(line.len())
        .collect();
    // The second line is one byte over: its `\r` counts.
    assert!(exact[0].is_ok());
    assert!(matches!(
        exact[1].as_ref().unwrap_err().kind,
        LineErrorKind::TooLong { .. }
    ));
    let small: Vec<_> = read_events(input.as_bytes())
        .with_max_line_bytes(10)
        .collect();
    assert_eq!(small.len(), 2);
    assert!(small.iter().all(Result::is_err));
}

#[test]
fn invalid_utf8_fails_only_its_line() {
    let mut input = ct_line("new").into_bytes();
    input.extend_from_slice(b"\n{\"ct\":\xff}\n");
    input.extend_from_slice(ct_line("reply").as_bytes());
    let results = read_all(&input);
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok());
    let err = results[1].as_ref().unwrap_err();
    assert_eq!(err.line, 2);
    assert!(matches!(err.kind, LineErrorKind::NotUtf8 { column: 7 }));
    assert!(err.to_string().starts_with("line 2: not valid UTF-8"));
    assert!(results[2].is_ok());
}

/// Numbers that do not fit their field (negative, past the integer's width, past f64,
/// fractional) fail only their own line, with a message naming the value and the type
/// expected; the lines around them are read.
#[test]
fn numbers_out_of_range_fail_only_their_line() {
    let cases: [(&str, &str); 12] = [
        (r#"{"timestamp":-1}"#, "integer `-1`, expected u64"),
        (
            r#"{"timestamp":18446744073709551616}"#,
            "floating point `1.8446744073709552e+19`, expected u64",
        ),
        (r#"{"timestamp":1e400}"#, "number out of range"),
        (r#"{"timestamp":1.5}"#, "floating point `1.5`, expected u64"),
        (
            r#"{"netns":4294967296}"#,
            "integer `4294967296`, expected u32",
        ),
        (
            r#"{"task":{"pid":-2147483649,"tgid":0,"comm":"x"}}"#,
            "expected u32",
        ),
        (
            r#"{"packet":{"len":1,"ip":{"src":"10.0.0.1","dst":"10.0.0.2","version":"v4","ttl":256,"tos":0,"id":0,"frag_off":0,"df":false,"mf":false,"len":0,"proto":6}}}"#,
            "integer `256`, expected u8",
        ),
        (
            r#"{"ct":{"state":"new","base":{"zone_id":65536}}}"#,
            "integer `65536`, expected u16",
        ),
        (
            r#"{"ct":{"state":"new","base":{"mark":4294967296}}}"#,
            "integer `4294967296`, expected u32",
        ),
        (
            r#"{"ct":{"state":"new","base":{"orig":{"ip":{"src":"10.0.0.1","dst":"10.0.0.2","version":"v4"},"proto":{"udp":{"sport":70000,"dport":53}}}}}}"#,
            "integer `70000`, expected u16",
        ),
        (
            r#"{"ct":{"state":"new","base":{"labels":"0x1ffffffffffffffffffffffffffffffff"}}}"#,
            "do not fit in 128 bits",
        ),
        (
            r#"{"ct":{"state":"new","base":{"orig":{"ip":{"src":"10.0.0.256","dst":"10.0.0.2","version":"v4"},"proto":{"generic":{"proto":1}}}}}}"#,
            "invalid IP address",
        ),
    ];
    let mut input = String::new();
    for (line, _) in &cases {
        input.push_str(line);
        input.push('\n');
        input.push_str(&ct_line("new"));
        input.push('\n');
    }
    let results = read_all(input.as_bytes());
    assert_eq!(results.len(), 2 * cases.len());
    for (i, (line, expected)) in cases.iter().enumerate() {
        let err = results[2 * i]
            .as_ref()
            .expect_err(&format!("{line} must not read"));
        assert_eq!(err.line, 2 * i as u64 + 1);
        let text = err.to_string();
        assert!(text.contains(expected), "{line}: {text}");
        assert!(
            matches!(
                err.kind,
                LineErrorKind::Invalid { .. } | LineErrorKind::Syntax { .. }
            ),
            "{line}: {:?}",
            err.kind
        );
        assert!(results[2 * i + 1].is_ok(), "the line after {line} reads");
    }
    // The edges of each range still read.
    let edges = [
        r#"{"timestamp":18446744073709551615,"netns":4294967295}"#,
        r#"{"ct":{"state":"new","base":{"zone_id":65535,"mark":4294967295,
            "labels":"0xffffffffffffffffffffffffffffffff",
            "orig":{"ip":{"src":"10.0.0.1","dst":"10.0.0.2","version":"v4"},
            "proto":{"udp":{"sport":65535,"dport":0}}},
            "reply":{"ip":{"src":"10.0.0.2","dst":"10.0.0.1","version":"v4"},
            "proto":{"udp":{"sport":0,"dport":65535}}}}}}"#,
    ];
    for line in edges {
        let line = line.replace('\n', "");
        assert!(
            parse_event_line(&line).is_ok(),
            "{line}: {:?}",
            parse_event_line(&line)
        );
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 200_000;
    let cases = [
        "[".repeat(depth),
        format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
        format!(r#"{{"unknown":{}}}"#, "[".repeat(depth)),
        format!(r#"{{"unknown":{}}}"#, r#"{"a":"#.repeat(depth)),
        format!(
            r#"{{"ct":{{"state":"new","base":{{"tcp_state":{}}}}}}}"#,
            "[".repeat(depth)
        ),
    ];
    // None of our types nests, so every level fails fast or is skipped without recursion
    // (serde_json walks skipped values iteratively and limits recursion to 128 otherwise).
    for case in cases {
        let results = read_all(case.as_bytes());
        assert_eq!(results.len(), 1);
        let err = results[0].as_ref().unwrap_err();
        assert!(
            matches!(
                err.kind,
                LineErrorKind::Syntax { .. } | LineErrorKind::Invalid { .. }
            ),
            "{err}"
        );
    }
}

/// A reader that fails after some bytes.
struct FailAfter<'a> {
    data: &'a [u8],
    interrupted: bool,
}

impl Read for FailAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.interrupted {
            self.interrupted = true;
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        if self.data.is_empty() {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe closed"));
        }
        let n = self.data.read(buf)?;
        self.interrupted = false;
        Ok(n)
    }
}

#[test]
fn io_errors_end_the_stream_and_interrupts_are_retried() {
    let input = format!("{}\n{}", ct_line("new"), ct_line("reply"));
    let reader = BufReader::with_capacity(
        7,
        FailAfter {
            data: input.as_bytes(),
            interrupted: false,
        },
    );
    let results: Vec<_> = read_events(reader).collect();
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    let err = results[1].as_ref().unwrap_err();
    assert_eq!(err.line, 2);
    assert!(matches!(err.kind, LineErrorKind::Io(_)));
    assert_eq!(
        err.to_string(),
        "line 2: could not read the input: pipe closed"
    );
}

// ---------------------------------------------------------------------------------------
// Properties

/// Ok/Err and line number of every item: what must not depend on how input arrives.
fn outline<R: BufRead>(reader: EventReader<R>) -> Vec<Result<Event, u64>> {
    reader.map(|r| r.map_err(|e| e.line)).collect()
}

proptest! {
    #[test]
    fn ct_event_json_round_trip(ct in testing::ct_event()) {
        let json = serde_json::to_string(&ct).unwrap();
        let back: CtEvent = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, ct);
    }

    #[test]
    fn event_json_round_trip(event in testing::event()) {
        let json = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, event);
    }

    #[test]
    fn json_lines_round_trip(events in proptest::collection::vec(testing::event(), 0..8)) {
        let mut file = Vec::new();
        for event in &events {
            write_event_json(event, &mut file).unwrap();
        }
        prop_assert_eq!(file.iter().filter(|&&b| b == b'\n').count(), events.len());
        let back: Vec<Event> = read_events(&file[..]).map(Result::unwrap).collect();
        prop_assert_eq!(back, events);
    }

    #[test]
    fn reader_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        limit in 0usize..512,
        capacity in 1usize..64,
    ) {
        let lines = bytes.split(|&b| b == b'\n').count() as u64;
        let whole = outline(read_events(&bytes[..]).with_max_line_bytes(limit));
        let trickled = outline(
            read_events(BufReader::with_capacity(capacity, Cursor::new(&bytes)))
                .with_max_line_bytes(limit),
        );
        prop_assert_eq!(&whole, &trickled);
        let numbers: Vec<u64> = whole.iter().filter_map(|r| r.as_ref().err().copied()).collect();
        prop_assert!(numbers.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(numbers.iter().all(|&n| n >= 1 && n <= lines));
    }

    /// Valid lines broken at arbitrary places: every piece is an error or an event, and
    /// reading never panics.
    #[test]
    fn reader_survives_damaged_event_lines(
        events in proptest::collection::vec(testing::event(), 1..4),
        cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        let mut file = Vec::new();
        for event in &events {
            write_event_json(event, &mut file).unwrap();
        }
        for (at, byte) in cuts {
            let i = at.index(file.len());
            file[i] = byte;
        }
        for result in read_events(BufReader::with_capacity(5, &file[..])) {
            if let Err(e) = result {
                let prefix = format!("line {}: ", e.line);
                prop_assert!(e.to_string().starts_with(&prefix));
            }
        }
    }
}

#[test]
fn nft_sections_write_as_documented_and_read_back() {
    let event = Event {
        nft: Some(testing::nft(
            "in",
            crate::NftTraceKind::Rule,
            Some(3),
            Some("tcp dport 81 drop"),
            crate::NftVerdict::Drop,
        )),
        ..Event::default()
    };
    let mut out = Vec::new();
    write_event_json(&event, &mut out).unwrap();
    let line = String::from_utf8(out).unwrap();
    assert_eq!(
        line,
        "{\"nft\":{\"family\":\"inet\",\"table\":\"f\",\"chain\":\"in\",\"type\":\"rule\",\
         \"handle\":3,\"rule\":\"tcp dport 81 drop\",\"verdict\":\"drop\"}}\n"
    );
    assert_eq!(parse_event_line(line.trim_end()).unwrap(), event);
}

#[test]
fn nft_scenario_as_json_lines() {
    let events = testing::nft_scenario();
    let mut out = Vec::new();
    for event in &events {
        write_event_json(event, &mut out).unwrap();
    }
    let read: Vec<Event> = read_events(&out[..]).map(Result::unwrap).collect();
    assert_eq!(read, events);
    // The ct-cli tests read the same events from the fixture file.
    let fixture = testing::fixtures_dir().join("events/nft.jsonl");
    let fixture = std::fs::read(&fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
    assert_eq!(
        String::from_utf8_lossy(&fixture),
        String::from_utf8_lossy(&out),
        "fixtures/events/nft.jsonl is not nft_scenario(): rewrite it from the snapshot"
    );
    insta::assert_snapshot!(String::from_utf8(out).unwrap());
}

// ---------------------------------------------------------------------------------------
// The schema reader against the serde model

/// Both readers on `line`: the schema reader must either give the line to serde or read
/// exactly what serde reads; and what [`parse_event_line`] returns is serde's answer.
fn check_against_serde(line: &str) -> Result<Option<Event>, TestCaseError> {
    let serde = parse_with_serde(line);
    let fast = read::SchemaReader::default().parse(line);
    if let Some(event) = &fast {
        match &serde {
            Ok(expected) => prop_assert_eq!(event, expected, "line {}", line),
            Err(e) => prop_assert!(
                false,
                "schema reader took a line serde refuses ({e}): {line}"
            ),
        }
    }
    match (parse_event_line(line), serde) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
        (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
        (a, b) => prop_assert!(false, "{a:?} against serde's {b:?}"),
    }
    Ok(fast)
}

/// A byte that often matters to JSON.
fn json_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        proptest::sample::select(b"{}[],:\"\\ 0123456789-.eEntrufals".to_vec()),
        any::<u8>().prop_filter("ASCII", u8::is_ascii),
    ]
}

#[test]
fn schema_reader_takes_the_seeds_and_refuses_what_it_does_not_know() {
    for name in SEEDS {
        let line = serde_json::to_string(&seed_event(name)).unwrap();
        assert!(
            read::SchemaReader::default().parse(&line).is_some(),
            "{name}"
        );
    }
    for line in [
        r#"{"timestamp":1,"timestamp":2}"#,
        r#"{"timestamp":01}"#,
        r#"{"timestamp":1.0}"#,
        r#"{"timestamp":-1}"#,
        r#"{"timestamp":18446744073709551616}"#,
        r#"{"future":1}"#,
        r#"{"task":{"pid":1,"tgid":2,"comm":"a\"b"}}"#,
        r#"{"task":{"pid":1,"tgid":2}}"#,
        r#"{"netns":4294967296}"#,
        r#"{"timestamp":1} x"#,
        r#"{"packet":{"len":null}}"#,
    ] {
        assert!(
            read::SchemaReader::default().parse(line).is_none(),
            "{line}"
        );
    }
    let spaced = " { \"timestamp\" : 7 ,\t\"netns\":null } ";
    assert_eq!(
        read::SchemaReader::default().parse(spaced),
        Some(Event {
            timestamp: Some(7),
            ..Event::default()
        })
    );
}

proptest! {
    #[test]
    fn schema_reader_reads_every_written_event_as_serde_does(event in testing::event()) {
        let mut line = Vec::new();
        write_event_json(&event, &mut line).unwrap();
        let line = String::from_utf8(line).unwrap();
        let fast = check_against_serde(line.trim_end())?;
        // Strings with escapes are serde's to read.
        if !line.contains('\\') {
            prop_assert_eq!(fast, Some(event.clone()), "the schema reader gave up on {}", line);
        }
        // Whitespace and key order are JSON's, not the writer's.
        let pretty = serde_json::to_string_pretty(&event).unwrap();
        prop_assert_eq!(check_against_serde(&pretty)?.is_some(), !line.contains('\\'));
        let mut value = serde_json::to_value(&event).unwrap();
        if let Value::Object(map) = &mut value {
            let reversed: serde_json::Map<String, Value> =
                std::mem::take(map).into_iter().rev().collect();
            *map = reversed;
        }
        check_against_serde(&value.to_string())?;
    }

    #[test]
    fn schema_reader_agrees_with_serde_on_damaged_lines(
        event in testing::event(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, json_byte()), 1..4),
    ) {
        let mut line = serde_json::to_string(&event).unwrap().into_bytes();
        for (at, op, byte) in edits {
            let i = at.index(line.len() + 1);
            match op {
                0 => line.insert(i, byte),
                1 if i < line.len() => { line.remove(i); }
                _ if i < line.len() => line[i] = byte,
                _ => line.push(byte),
            }
        }
        if let Ok(line) = String::from_utf8(line) {
            check_against_serde(&line)?;
        }
    }

    #[test]
    fn schema_reader_agrees_with_serde_on_nulls_and_odd_values(
        event in testing::event(),
        path in any::<prop::sample::Index>(),
        replacement in prop_oneof![
            Just(Value::Null),
            Just(Value::from(0)),
            Just(Value::from(256)),
            Just(Value::from(70000)),
            Just(Value::from(u64::MAX)),
            Just(Value::from(-1)),
            Just(Value::from(1.5)),
            Just(Value::from("")),
            Just(Value::from("x")),
            Just(Value::from(true)),
            Just(Value::Array(vec![])),
            Just(serde_json::json!({})),
        ],
    ) {
        // Replace one value somewhere in the event.
        let mut value = serde_json::to_value(&event).unwrap();
        let mut counting = usize::MAX;
        let count = nodes(&mut value, &mut counting, &Value::Null);
        let mut nth = path.index(count);
        nodes(&mut value, &mut nth, &replacement);
        check_against_serde(&value.to_string())?;
    }
}

/// Counts the values in `v` (itself included), replacing the `n`th one (0-based, in
/// depth-first order) with `with`.
fn nodes(v: &mut Value, n: &mut usize, with: &Value) -> usize {
    if *n == 0 {
        *v = with.clone();
        *n = usize::MAX;
    } else if *n != usize::MAX {
        *n -= 1;
    }
    1 + match v {
        Value::Object(map) => map.values_mut().map(|v| nodes(v, n, with)).sum(),
        Value::Array(items) => items.iter_mut().map(|v| nodes(v, n, with)).sum(),
        _ => 0,
    }
}

#[test]
fn error_messages_escape_what_they_quote_from_the_line() {
    // serde quotes an unknown variant and a wrong string as they are in the file.
    for line in [
        r#"{"probe":{"type":"x\u001b[2J\u202e","name":"p"}}"#,
        r#"{"timestamp":"\u2066evil\n\u2069"}"#,
    ] {
        let err = parse_event_line(line).unwrap_err().to_string();
        assert!(
            !err.contains(|c: char| c.is_control()
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')),
            "{err:?}"
        );
        assert!(err.contains(r"\u{"), "{err}");
    }
}
