//! Rule texts, as `nft -a list chain` prints them, looked up by handle.
//!
//! The table and chain names come from trace messages, which the owner of the traced
//! namespace controls (any name the kernel accepts). `nft` joins its arguments into one
//! script, so a name is put on its command line only when it is a plain nftables
//! identifier; the look-ups are rate-limited and the cache is bounded, so that a ruleset
//! built to defeat them costs a bounded amount of work and memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ct_core::NftFamily;

use crate::bucket::TokenBucket;
use crate::nft_program::NftProgram;

/// Longest table or chain name nftables has (`NFT_NAME_MAXLEN`, 256 with the NUL).
const NFT_NAME_MAX_BYTES: usize = 255;
/// `nft` runs allowed at once (a new ruleset's chains seen for the first time)...
const LOOKUP_BURST: u32 = 16;
/// ...and then one per this interval: 8 a second.
const LOOKUP_EVERY: Duration = Duration::from_millis(125);
/// Chains kept; beyond, the cache starts over (a ruleset churning through chain names
/// costs `nft` runs, which the rate limit bounds, not memory).
const MAX_CHAINS: usize = 256;
/// Rule texts and unknown handles kept over all chains, likewise.
const MAX_RULES: usize = 65_536;

/// A chain's rule texts by handle; `None` for a handle the chain no longer has.
type ChainRules = HashMap<u64, Option<Arc<str>>>;

/// Lists one chain's rules by handle (`None` when it cannot); [`list_chain`] outside tests.
type Lister = Box<dyn FnMut(NftFamily, &str, &str) -> Option<HashMap<u64, Arc<str>>> + Send>;

/// Texts of the rules of the chains seen so far, re-read when a handle is not known yet
/// (a rule added after the chain was first read). A handle still unknown after that (a
/// rule deleted since) is remembered as such: its steps do not run `nft` again each.
pub struct RuleTexts {
    chains: HashMap<(NftFamily, String, String), ChainRules>,
    /// Entries in `chains`, all chains together.
    rules: usize,
    lister: Lister,
    runs: TokenBucket,
    names_refused: u64,
    lookups_limited: u64,
}

impl std::fmt::Debug for RuleTexts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleTexts")
            .field("chains", &self.chains.len())
            .field("rules", &self.rules)
            .field("names_refused", &self.names_refused)
            .field("lookups_limited", &self.lookups_limited)
            .finish_non_exhaustive()
    }
}

impl Default for RuleTexts {
    fn default() -> Self {
        RuleTexts::with_lister(Box::new(list_chain))
    }
}

impl RuleTexts {
    fn with_lister(lister: Lister) -> Self {
        RuleTexts {
            chains: HashMap::new(),
            rules: 0,
            lister,
            runs: TokenBucket::new(LOOKUP_BURST, LOOKUP_EVERY),
            names_refused: 0,
            lookups_limited: 0,
        }
    }

    /// The text of rule `handle` in `family table chain`, or `None` when `nft` cannot tell
    /// (not installed, the rule deleted since), when a name is no plain identifier, or
    /// when `nft` ran as often as allowed lately.
    pub fn get(
        &mut self,
        family: NftFamily,
        table: &str,
        chain: &str,
        handle: u64,
    ) -> Option<Arc<str>> {
        self.get_at(family, table, chain, handle, Instant::now())
    }

    /// How many look-ups were skipped so far: names refused, and runs over the rate limit.
    pub fn skipped(&self) -> (u64, u64) {
        (self.names_refused, self.lookups_limited)
    }

    fn get_at(
        &mut self,
        family: NftFamily,
        table: &str,
        chain: &str,
        handle: u64,
        now: Instant,
    ) -> Option<Arc<str>> {
        let key = (family, table.to_owned(), chain.to_owned());
        if let Some(known) = self.chains.get(&key).and_then(|rules| rules.get(&handle)) {
            return known.clone();
        }
        if !is_plain_identifier(table) || !is_plain_identifier(chain) {
            self.names_refused += 1;
            return None;
        }
        if !self.runs.take(now) {
            // Not remembered: a later step of the rule tries again.
            self.lookups_limited += 1;
            return None;
        }
        let mut rules: ChainRules = (self.lister)(family, table, chain)
            .unwrap_or_default()
            .into_iter()
            .map(|(h, text)| (h, Some(text)))
            .collect();
        let text = rules.entry(handle).or_insert(None).clone();
        self.keep(key, rules);
        text
    }

    /// Caches a chain's listing within the bounds: over them, everything cached so far is
    /// dropped; a listing alone over them is not cached.
    fn keep(&mut self, key: (NftFamily, String, String), rules: ChainRules) {
        if let Some(old) = self.chains.remove(&key) {
            self.rules -= old.len();
        }
        if rules.len() > MAX_RULES {
            return;
        }
        if self.chains.len() >= MAX_CHAINS || self.rules + rules.len() > MAX_RULES {
            self.chains.clear();
            self.rules = 0;
        }
        self.rules += rules.len();
        self.chains.insert(key, rules);
    }
}

/// Whether `name` is an identifier as nftables' scanner reads one without quotes (a
/// letter or `_`, then letters, digits, `/`, `-`, `_` and `.`): one word on `nft`'s
/// command line that cannot end the command, start another (`;`, a line end), quote,
/// include a file, name a variable (`$`) or be taken for an option (a leading `-`).
pub fn is_plain_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    first_ok
        && name.len() <= NFT_NAME_MAX_BYTES
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
}

/// Runs `nft -a list chain` (in the calling thread's network namespace). The one place
/// that runs `nft` for rule texts; `table` and `chain` are plain identifiers
/// ([`is_plain_identifier`]).
fn list_chain(family: NftFamily, table: &str, chain: &str) -> Option<HashMap<u64, Arc<str>>> {
    // -s: without counter values, which would make one rule read differently each time.
    let listing = NftProgram::system()
        .ok()?
        .run(
            &["-s", "-a", "list", "chain", family.into(), table, chain],
            None,
        )
        .ok()?;
    Some(parse_listing(&listing))
}

/// Rule lines of an `nft -a list` listing: `TEXT # handle N`. Chain and table lines carry
/// handles too but end with `{ # handle N`.
pub fn parse_listing(listing: &str) -> HashMap<u64, Arc<str>> {
    listing
        .lines()
        .filter_map(|line| {
            let (text, handle) = line.trim().rsplit_once(" # handle ")?;
            let text = text.trim_end();
            if text.ends_with('{') || text.is_empty() {
                return None;
            }
            Some((handle.trim().parse().ok()?, Arc::from(text)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Rule texts whose lister counts its runs and lists `rules` rules (handles 1..=rules)
    /// for any chain.
    fn counting(rules: u64) -> (RuleTexts, Arc<AtomicUsize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let texts = RuleTexts::with_lister(Box::new(move |_, _, _| {
            counter.fetch_add(1, Ordering::Relaxed);
            Some(
                (1..=rules)
                    .map(|h| (h, Arc::from(format!("rule {h}"))))
                    .collect(),
            )
        }));
        (texts, runs)
    }

    #[test]
    fn plain_identifiers_only() {
        for name in [
            "filter",
            "f",
            "ct_trace_123",
            "my-chain",
            "a/b.c",
            "_x",
            "Lab2",
        ] {
            assert!(is_plain_identifier(name), "{name}");
        }
        let long = "a".repeat(NFT_NAME_MAX_BYTES + 1);
        for name in [
            "",
            "x;y",
            "a b",
            "\"q\"",
            "include \"/etc/shadow\"",
            "x; flush ruleset",
            "-f",
            "1abc",
            ".x",
            "a$b",
            "a#b",
            "a\nb",
            "a'b",
            "a{b",
            "tab\u{e9}",
            &long,
        ] {
            assert!(!is_plain_identifier(name), "{name:?}");
        }
    }

    #[test]
    fn a_hostile_name_never_runs_nft() {
        let (mut texts, runs) = counting(3);
        let now = Instant::now();
        for (table, chain) in [
            ("f", "in; flush ruleset"),
            ("include \"/root/x\"", "in"),
            ("f", "in out"),
            ("f\"", "in"),
            ("-f", "in"),
        ] {
            assert_eq!(texts.get_at(NftFamily::Inet, table, chain, 3, now), None);
        }
        assert_eq!(runs.load(Ordering::Relaxed), 0);
        assert_eq!(texts.skipped(), (5, 0));
        // A plain name is looked up, once.
        let text = texts.get_at(NftFamily::Inet, "f", "in", 3, now);
        assert_eq!(text.as_deref(), Some("rule 3"));
        assert_eq!(
            texts.get_at(NftFamily::Inet, "f", "in", 2, now).as_deref(),
            Some("rule 2")
        );
        assert_eq!(runs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn nft_runs_at_most_at_the_rate() {
        let (mut texts, runs) = counting(1);
        let t0 = Instant::now();
        let chain = |n: u64| format!("c{n}");
        // A new chain per step, all at once: the burst runs, the rest are refused.
        for n in 0..100 {
            texts.get_at(NftFamily::Ip, "t", &chain(n), 1, t0);
        }
        assert_eq!(runs.load(Ordering::Relaxed), LOOKUP_BURST as usize);
        assert_eq!(texts.skipped(), (0, 100 - u64::from(LOOKUP_BURST)));
        // Refused look-ups are not remembered: the chain is read once the rate allows.
        assert_eq!(
            texts
                .get_at(NftFamily::Ip, "t", &chain(99), 1, t0 + LOOKUP_EVERY)
                .as_deref(),
            Some("rule 1")
        );
        // Then one step a millisecond for ten seconds, each a new chain: 8 runs a second.
        let before = runs.load(Ordering::Relaxed);
        for ms in 0..10_000u64 {
            let now = t0 + LOOKUP_EVERY + Duration::from_millis(ms + 1);
            texts.get_at(NftFamily::Ip, "t", &chain(1000 + ms), 1, now);
        }
        let ran = runs.load(Ordering::Relaxed) - before;
        assert!((79..=80).contains(&ran), "{ran} runs in 10 s");
    }

    #[test]
    fn the_cache_is_bounded() {
        let (mut texts, runs) = counting(100);
        let mut now = Instant::now();
        for n in 0..(MAX_CHAINS as u64 * 3) {
            now += LOOKUP_EVERY;
            assert!(texts
                .get_at(NftFamily::Ip, "t", &format!("c{n}"), 1, now)
                .is_some());
            assert!(texts.chains.len() <= MAX_CHAINS);
            assert!(texts.rules <= MAX_RULES);
            let counted: usize = texts.chains.values().map(HashMap::len).sum();
            assert_eq!(counted, texts.rules);
        }
        assert_eq!(runs.load(Ordering::Relaxed), MAX_CHAINS * 3);
        // Unknown handles are entries too: asking for ever new ones stays within bounds.
        for handle in 1000..2000 {
            now += LOOKUP_EVERY;
            assert_eq!(texts.get_at(NftFamily::Ip, "t", "c0", handle, now), None);
            assert!(texts.rules <= MAX_RULES);
        }
        // A chain longer than the bound is answered but not kept.
        let (mut big, _) = counting(MAX_RULES as u64 + 1);
        assert!(big.get_at(NftFamily::Ip, "t", "big", 7, now).is_some());
        assert!(big.chains.is_empty() && big.rules == 0);
    }

    #[test]
    fn listing_rules_by_handle() {
        let listing = "table inet f { # handle 7\n\
            \tchain in { # handle 1\n\
            \t\ttype filter hook input priority filter; policy accept;\n\
            \t\ttcp dport 81 counter packets 2 bytes 120 drop # handle 3\n\
            \t\tct state invalid drop comment \"no # handle here\" # handle 12\n\
            \t}\n\
            }\n";
        let rules = parse_listing(listing);
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert_eq!(&*rules[&3], "tcp dport 81 counter packets 2 bytes 120 drop");
        assert_eq!(
            &*rules[&12],
            "ct state invalid drop comment \"no # handle here\""
        );
    }
}
