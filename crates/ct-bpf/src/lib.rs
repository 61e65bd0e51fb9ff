//! The kernel side of ct-trace: the BPF program that reads `skb->_nfct`, the raw event
//! layout it shares with user space, decoding into `ct_core` events, probe attachment and
//! the ring buffer.

#[allow(dead_code, clippy::all, missing_debug_implementations, unused_imports)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/ct.skel.rs"));
}

pub mod decode;
pub mod packet;
pub mod raw;

pub use decode::{decode, decode_ct, DecodeError, Decoder};
