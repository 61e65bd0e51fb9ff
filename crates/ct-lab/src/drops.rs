//! Drops the lab's tests provoke, and what the kernel under test says about them.

use std::fmt;

use crate::{Lab, LabError, Node};

/// Echo requests to the server dropped (and counted) in the router's forward chain.
pub const NFT_DROP_ECHO: &str = r#"
table ip lab {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ip daddr 10.0.2.2 icmp type echo-request counter drop
    }
}
"#;

/// What the router's `inet lab forward` chain drops (and counts) in
/// [`Lab::router_drops_invalid`].
pub const NFT_DROP_INVALID: &str = r#"
table inet lab {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state invalid counter drop
    }
}
"#;

impl Lab {
    /// Makes the router drop what conntrack finds invalid ([`NFT_DROP_INVALID`]), with TCP
    /// tracking strict (`nf_conntrack_tcp_loose=0`): an ACK of no connection is invalid.
    pub fn router_drops_invalid(&self) -> Result<(), LabError> {
        self.sysctl(Node::Router, &["net.netfilter.nf_conntrack_tcp_loose=0"])?;
        self.router_nft(NFT_DROP_INVALID)
    }
}

/// What the kernel under test should say about a drop for reason `name`: its BTF's
/// `enum skb_drop_reason` decides, since kernels differ in which reasons they have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedReason {
    /// The kernel has drop reasons, `name` among them.
    Named(String),
    /// The kernel has drop reasons but none called `name`: some reason, not checked.
    Unnamed,
    /// No drop reasons in this kernel: drops come without one.
    None,
}

impl ExpectedReason {
    /// What the running kernel says for a drop for reason `name` at `skb:kfree_skb`.
    pub fn of(name: &str) -> Self {
        let btf = ct_bpf::KernelBtf::load().expect("kernel BTF");
        let tp_has_reason = btf
            .resolve(&"tp:skb:kfree_skb".parse().unwrap())
            .expect("skb:kfree_skb")
            .reason_arg
            .is_some();
        match btf.drop_reasons() {
            Some(reasons) if tp_has_reason => match reasons.value(name) {
                Some(_) => ExpectedReason::Named(name.to_owned()),
                None => ExpectedReason::Unnamed,
            },
            _ => ExpectedReason::None,
        }
    }

    /// Asserts that `reason`, a drop's reason as reported, is what this kernel says.
    pub fn check(&self, reason: Option<&str>, what: &str) {
        match self {
            ExpectedReason::Named(name) => assert_eq!(reason, Some(name.as_str()), "{what}"),
            ExpectedReason::Unnamed => assert!(reason.is_some(), "{what}: no reason"),
            ExpectedReason::None => assert_eq!(reason, None, "{what}"),
        }
    }
}

impl fmt::Display for ExpectedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedReason::Named(name) => f.write_str(name),
            ExpectedReason::Unnamed => {
                f.write_str("some reason (the kernel does not name this one)")
            }
            ExpectedReason::None => f.write_str("none (the kernel has no drop reasons)"),
        }
    }
}
