//! Rule texts, as `nft -a list chain` prints them, looked up by handle.

use std::collections::HashMap;
use std::sync::Arc;

use ct_core::NftFamily;

use crate::nft_program::NftProgram;

/// A chain's rule texts by handle; `None` for a handle the chain no longer has.
type ChainRules = HashMap<u64, Option<Arc<str>>>;

/// Texts of the rules of the chains seen so far, re-read when a handle is not known yet
/// (a rule added after the chain was first read). A handle still unknown after that (a
/// rule deleted since) is remembered as such: its steps do not run `nft` again each.
#[derive(Debug, Default)]
pub struct RuleTexts {
    chains: HashMap<(NftFamily, String, String), ChainRules>,
}

impl RuleTexts {
    /// The text of rule `handle` in `family table chain`, or `None` when `nft` cannot tell
    /// (not installed, the rule deleted since).
    pub fn get(
        &mut self,
        family: NftFamily,
        table: &str,
        chain: &str,
        handle: u64,
    ) -> Option<Arc<str>> {
        let key = (family, table.to_owned(), chain.to_owned());
        if let Some(known) = self.chains.get(&key).and_then(|rules| rules.get(&handle)) {
            return known.clone();
        }
        let mut rules: ChainRules = list_chain(family, table, chain)
            .unwrap_or_default()
            .into_iter()
            .map(|(h, text)| (h, Some(text)))
            .collect();
        let text = rules.entry(handle).or_insert(None).clone();
        self.chains.insert(key, rules);
        text
    }
}

/// Runs `nft -a list chain` (in the calling thread's network namespace).
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
    use super::*;

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
