//! The `-m` meta filter: parsing arbitrary text never panics, errors point inside the
//! text, and what parses is well formed (a struct and at most five fields, each a C
//! identifier) and parses again to the same filter.
#![no_main]

use ct_bpf::{CmpOp, MetaFilter, MetaValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match MetaFilter::parse(text) {
        Ok(filter) => {
            assert!((2..=6).contains(&filter.path.len()), "{filter:?}");
            for part in &filter.path {
                assert!(!part.is_empty());
                assert!(part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
                assert!(!part.as_bytes()[0].is_ascii_digit());
            }
            if let MetaValue::Str(_) = filter.value {
                assert!(matches!(filter.op, CmpOp::Eq | CmpOp::Ne));
                assert!(filter.mask.is_none());
            }
            assert_eq!(filter.to_string(), text);
            assert_eq!(text.parse::<MetaFilter>().as_ref(), Ok(&filter));
        }
        Err(err) => {
            assert!(
                err.column >= 1 && err.column <= text.chars().count() + 1,
                "{err:?}"
            );
            let _ = err.to_string();
        }
    }
});
