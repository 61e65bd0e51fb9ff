//! Steps of the probe program that a bench can leave out, to measure what each costs.

use crate::skel::types as c;

/// One step of a reported probe hit. A program loaded with a step left out
/// ([`CollectorBuilder::omit_step`](crate::CollectorBuilder::omit_step)) writes incomplete
/// or garbled events: only the kernel cost bench uses it, timing each such program
/// beside the complete one and the empty one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OmitStep {
    /// Everything after the filters: no ring buffer record at all.
    Report,
    /// Zeroing the reserved record.
    Zero,
    /// Reading the clock (`bpf_ktime_get_ns`).
    Time,
    /// The task: pid, tgid and command name.
    Task,
    /// The device and network namespace.
    Dev,
    /// Copying the packet header.
    Header,
    /// The whole conntrack extraction.
    Conntrack,
    /// Conntrack: the connection is copied but no field is picked out of it (no
    /// extensions, no parent).
    ConntrackFields,
    /// Packet tracking: fingerprint and first-seen table.
    Track,
    /// The two ring buffer queries that decide whether to wake the reader (the record is
    /// submitted with the kernel's default wakeup instead).
    Wakeup,
}

impl OmitStep {
    /// Every step, in program order.
    pub const ALL: [OmitStep; 10] = [
        OmitStep::Report,
        OmitStep::Zero,
        OmitStep::Time,
        OmitStep::Task,
        OmitStep::Dev,
        OmitStep::Header,
        OmitStep::Conntrack,
        OmitStep::ConntrackFields,
        OmitStep::Track,
        OmitStep::Wakeup,
    ];

    /// The step's bit in the program's `ct_omit`.
    pub(crate) fn bit(self) -> u32 {
        use c::ct_omit_step as s;
        match self {
            OmitStep::Report => s::CT_OMIT_REPORT.0,
            OmitStep::Zero => s::CT_OMIT_ZERO.0,
            OmitStep::Time => s::CT_OMIT_TIME.0,
            OmitStep::Task => s::CT_OMIT_TASK.0,
            OmitStep::Dev => s::CT_OMIT_DEV.0,
            OmitStep::Header => s::CT_OMIT_HDR.0,
            OmitStep::Conntrack => s::CT_OMIT_CT.0,
            OmitStep::ConntrackFields => s::CT_OMIT_CT_FIELDS.0,
            OmitStep::Track => s::CT_OMIT_TRACK.0,
            OmitStep::Wakeup => s::CT_OMIT_WAKEUP.0,
        }
    }
}

impl std::fmt::Display for OmitStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OmitStep::Report => "the whole report (reserve, fill, submit)",
            OmitStep::Zero => "zeroing the record",
            OmitStep::Time => "clock",
            OmitStep::Task => "task (pid, comm)",
            OmitStep::Dev => "device and netns",
            OmitStep::Header => "header copy",
            OmitStep::Conntrack => "conntrack (all)",
            OmitStep::ConntrackFields => "conntrack fields, extensions, parent",
            OmitStep::Track => "packet tracking",
            OmitStep::Wakeup => "wakeup queries",
        })
    }
}
