//! Which packets the trace table marks: a packet filter written as nftables rules.
//!
//! nftables rules are conjunctions; a filter becomes one rule per term of its disjunctive
//! normal form. Negations follow pcap's meaning (`not host A` holds for IPv6 packets,
//! `not port 80` for ICMP), so they become a disjunction of "the test does not apply" and
//! "the test applies and fails".

use ct_core::filter::{Dir, Expr, Test};
use ct_core::IpVersion;
use ipnet::IpNet;

/// More rules than this and the table marks every packet instead (the events are still
/// filtered in user space).
pub const MAX_MARK_RULES: usize = 32;

/// A conjunction of nftables match expressions, in rule syntax.
pub type Conjunction = Vec<String>;

/// The match part of each marking rule for `expr`, or `None` when it would take more than
/// [`MAX_MARK_RULES`] rules.
pub fn mark_rules(expr: &Expr) -> Option<Vec<Conjunction>> {
    let rules = dnf(expr, false)?;
    (rules.len() <= MAX_MARK_RULES).then_some(rules)
}

fn dnf(expr: &Expr, negated: bool) -> Option<Vec<Conjunction>> {
    match (expr, negated) {
        (Expr::Test(test), _) => Some(test_terms(test, negated)),
        (Expr::Not(inner), _) => dnf(inner, !negated),
        (Expr::And(a, b), false) | (Expr::Or(a, b), true) => {
            and(dnf(a, negated)?, dnf(b, negated)?)
        }
        (Expr::Or(a, b), false) | (Expr::And(a, b), true) => {
            let mut terms = dnf(a, negated)?;
            terms.extend(dnf(b, negated)?);
            (terms.len() <= MAX_MARK_RULES).then_some(terms)
        }
    }
}

fn and(left: Vec<Conjunction>, right: Vec<Conjunction>) -> Option<Vec<Conjunction>> {
    if left.len().saturating_mul(right.len()) > MAX_MARK_RULES {
        return None;
    }
    Some(
        left.iter()
            .flat_map(|l| {
                right.iter().map(move |r| {
                    let mut both = l.clone();
                    both.extend(r.iter().cloned());
                    both
                })
            })
            .collect(),
    )
}

const PORT_PROTOCOLS: &str = "{ tcp, udp, sctp }";

fn test_terms(test: &Test, negated: bool) -> Vec<Conjunction> {
    let one = |s: String| vec![vec![s]];
    match *test {
        Test::L3(version) => {
            let op = if negated { "!= " } else { "" };
            one(format!("meta nfproto {op}{}", nfproto(version)))
        }
        Test::Proto(proto) => {
            let op = if negated { "!= " } else { "" };
            one(format!("meta l4proto {op}{proto}"))
        }
        Test::Net { dir, net } => {
            let (version, family) = match net {
                IpNet::V4(_) => (IpVersion::V4, "ip"),
                IpNet::V6(_) => (IpVersion::V6, "ip6"),
            };
            let field = |side: &str, op: &str| format!("{family} {side}addr {op}{net}");
            let applies = format!("meta nfproto != {}", nfproto(version));
            sides(dir, negated, field, applies)
        }
        Test::Port { dir, lo, hi } => {
            let ports = if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            };
            let field = |side: &str, op: &str| format!("th {side}port {op}{ports}");
            let applies = format!("meta l4proto != {PORT_PROTOCOLS}");
            let mut terms = sides(dir, negated, field, applies);
            // `th` reads the transport header of any protocol: say which ones have ports.
            for term in terms.iter_mut().filter(|t| t[0].starts_with("th ")) {
                term.insert(0, format!("meta l4proto {PORT_PROTOCOLS}"));
            }
            terms
        }
    }
}

/// The terms of a test on the source and/or destination `field`; `not_applicable` is what
/// holds for packets the test does not apply to (other IP version, no ports), which pass a
/// negated test.
fn sides(
    dir: Dir,
    negated: bool,
    field: impl Fn(&str, &str) -> String,
    not_applicable: String,
) -> Vec<Conjunction> {
    if !negated {
        return match dir {
            Dir::Src => vec![vec![field("s", "")]],
            Dir::Dst => vec![vec![field("d", "")]],
            Dir::Either => vec![vec![field("s", "")], vec![field("d", "")]],
            Dir::Both => vec![vec![field("s", ""), field("d", "")]],
        };
    }
    let mut terms = vec![vec![not_applicable]];
    match dir {
        Dir::Src => terms.push(vec![field("s", "!= ")]),
        Dir::Dst => terms.push(vec![field("d", "!= ")]),
        Dir::Either => terms.push(vec![field("s", "!= "), field("d", "!= ")]),
        Dir::Both => {
            terms.push(vec![field("s", "!= ")]);
            terms.push(vec![field("d", "!= ")]);
        }
    }
    terms
}

fn nfproto(version: IpVersion) -> &'static str {
    match version {
        IpVersion::V4 => "ipv4",
        IpVersion::V6 => "ipv6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ct_core::filter::PacketFilter;

    fn rules(filter: &str) -> Vec<String> {
        let f = PacketFilter::parse(filter).unwrap();
        mark_rules(&f.expr)
            .unwrap()
            .into_iter()
            .map(|t| t.join(" "))
            .collect()
    }

    #[test]
    fn conjunctions_are_one_rule() {
        assert_eq!(
            rules("tcp and dst port 81"),
            ["meta l4proto 6 meta l4proto { tcp, udp, sctp } th dport 81"]
        );
        assert_eq!(
            rules("src host 10.0.0.1 and dst net 10.1.0.0/16"),
            ["ip saddr 10.0.0.1/32 ip daddr 10.1.0.0/16"]
        );
    }

    #[test]
    fn either_side_is_two_rules() {
        assert_eq!(
            rules("host fd00::1"),
            ["ip6 saddr fd00::1/128", "ip6 daddr fd00::1/128"]
        );
    }

    #[test]
    fn negations_keep_pcap_meaning() {
        assert_eq!(
            rules("not host 10.0.0.1"),
            [
                "meta nfproto != ipv4",
                "ip saddr != 10.0.0.1/32 ip daddr != 10.0.0.1/32"
            ]
        );
        assert_eq!(
            rules("not (tcp or udp)"),
            ["meta l4proto != 6 meta l4proto != 17"]
        );
        assert_eq!(
            rules("not portrange 80-90"),
            [
                "meta l4proto != { tcp, udp, sctp }",
                "meta l4proto { tcp, udp, sctp } th sport != 80-90 th dport != 80-90"
            ]
        );
    }

    #[test]
    fn too_many_terms_mark_everything() {
        let wide = (0..6)
            .map(|i| format!("(port {i} or host 10.0.0.{i})"))
            .collect::<Vec<_>>()
            .join(" and ");
        let f = PacketFilter::parse(&wide).unwrap();
        assert_eq!(mark_rules(&f.expr), None);
    }
}
