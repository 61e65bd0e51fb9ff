//! Following: how far a filter's choice reaches beyond the hit it judged.

/// What a packet filter's match selects (`--follow`).
///
/// Filters judge headers, and NAT, encapsulation or a namespace crossing rewrite them
/// along a packet's path: judged hit by hit, a packet selected on its pre-NAT address
/// vanishes once translated. Following keeps what was selected.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[strum(serialize_all = "lowercase")]
pub enum Follow {
    /// Every hit is judged on its own.
    #[default]
    None,
    /// A packet selected at one hit is kept at every later hit, until it is freed (or
    /// unseen for as long as a packet's tracking id lasts).
    Packet,
    /// Besides, every packet of a selected packet's conntrack entry, both directions,
    /// before and after NAT.
    Conn,
}

impl Follow {
    /// Whether selected packets are followed at all.
    pub fn follows(self) -> bool {
        self != Follow::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use strum::IntoEnumIterator;

    #[test]
    fn names_round_trip_and_none_is_the_default() {
        for follow in Follow::iter() {
            assert_eq!(Follow::from_str(&follow.to_string()), Ok(follow));
        }
        assert_eq!(Follow::default(), Follow::None);
        assert_eq!(Follow::from_str("conn"), Ok(Follow::Conn));
        assert!(Follow::from_str("connection").is_err());
        assert!(!Follow::None.follows() && Follow::Conn.follows());
    }
}
