//! Event capture with the ct-bpf collector, limited (in the kernel) to one namespace.

use std::time::{Duration, Instant};

use ct_bpf::RawCtEvent;
use ct_bpf::{
    Collector, CollectorBuilder, DecodeError, Decoder, KernelFilters, ProbeSpec, RingRecord,
};
use ct_core::{CtConnEvent, CtEvent, Event};

/// The probes the lab attaches. Over veth, `netif_receive_skb` sees packets before
/// conntrack (crossing namespaces scrubs `_nfct`); the other three see their ct.
pub const LAB_PROBES: [&str; 4] = [
    "tp:net:net_dev_start_xmit",
    "tp:skb:kfree_skb",
    "tp:skb:consume_skb",
    "tp:net:netif_receive_skb",
];

/// One record: the bytes as the kernel wrote them, and their decoding.
#[derive(Debug, Clone)]
pub struct Captured {
    pub raw: RawCtEvent,
    pub event: Event,
}

impl Captured {
    /// The probe's event name (`net:net_dev_start_xmit`).
    pub fn probe(&self) -> &str {
        self.event.probe.as_ref().map_or("", |p| &p.name)
    }

    pub fn ct(&self) -> Option<&CtEvent> {
        self.event.ct.as_ref()
    }

    /// The packet's connection, when it has one.
    pub fn base(&self) -> Option<&CtConnEvent> {
        self.ct().and_then(|c| c.base.as_ref())
    }

    /// The device's name (`rc`, `rs`).
    pub fn ifname(&self) -> Option<&str> {
        self.event
            .packet
            .as_ref()
            .and_then(|p| p.ifname.as_ref())
            .map(|n| n.as_str())
    }
}

/// Attached probes reporting one namespace's packets.
#[derive(Debug)]
pub struct Capture {
    collector: Collector,
    decoder: Decoder,
    netns: u32,
    events: Vec<Captured>,
    errors: Vec<DecodeError>,
}

impl Capture {
    /// Attaches [`LAB_PROBES`], reporting only packets of namespace `netns` (inode).
    pub fn start(netns: u32) -> Result<Capture, ct_bpf::Error> {
        Self::start_with(netns, KernelFilters::default())
    }

    /// [`Capture::start`] with filters evaluated in the kernel.
    pub fn start_with(netns: u32, filters: KernelFilters) -> Result<Capture, ct_bpf::Error> {
        Self::start_configured(netns, |b| b.filters(filters))
    }

    /// [`Capture::start`] with any further collector settings.
    pub fn start_configured(
        netns: u32,
        configure: impl FnOnce(CollectorBuilder) -> CollectorBuilder,
    ) -> Result<Capture, ct_bpf::Error> {
        Self::start_probes(netns, &LAB_PROBES, configure)
    }

    /// [`Capture::start_configured`] with other probes than [`LAB_PROBES`].
    pub fn start_probes(
        netns: u32,
        probes: &[&str],
        configure: impl FnOnce(CollectorBuilder) -> CollectorBuilder,
    ) -> Result<Capture, ct_bpf::Error> {
        let probes = probes
            .iter()
            .map(|p| p.parse::<ProbeSpec>())
            .collect::<Result<Vec<_>, _>>()?;
        let collector = configure(
            CollectorBuilder::new()
                .probes(probes)
                .netns(netns)
                .ring_size(1 << 20),
        )
        .build()?;
        let decoder = Decoder::new(collector.probes().to_vec())
            .with_drop_reasons(collector.drop_reasons().cloned());
        Ok(Capture {
            collector,
            decoder,
            netns,
            events: Vec::new(),
            errors: Vec::new(),
        })
    }

    /// Reads what is in the ring buffer now, waiting at most `timeout`. Returns how many
    /// records arrived.
    pub fn pump(&mut self, timeout: Duration) -> Result<usize, ct_bpf::Error> {
        let Capture {
            collector,
            decoder,
            events,
            errors,
            ..
        } = self;
        collector.poll_raw(timeout, |record| match record {
            RingRecord::Complete(raw) => match record.decode(decoder) {
                Ok(event) => events.push(Captured { raw: *raw, event }),
                Err(e) => errors.push(e),
            },
            short => errors.extend(short.decode(decoder).err()),
        })
    }

    /// Reads until no record has arrived for `quiet` (at most 5 s), then returns every
    /// record captured, in timestamp order. Panics if a record did not decode or one was
    /// reported from another namespace, or if the kernel lost records.
    pub fn finish(mut self, quiet: Duration) -> Vec<Captured> {
        let stop = Instant::now() + Duration::from_secs(5);
        let mut last = Instant::now();
        while Instant::now() < stop && last.elapsed() < quiet {
            match self.pump(Duration::from_millis(50)) {
                Ok(0) => {}
                Ok(_) => last = Instant::now(),
                Err(e) => panic!("ring buffer poll failed: {e}"),
            }
        }
        assert!(
            self.errors.is_empty(),
            "records that did not decode: {:?}",
            self.errors
        );
        let lost = self.collector.lost().expect("lost counter");
        assert_eq!(lost, 0, "the kernel lost {lost} records");
        let mut events = std::mem::take(&mut self.events);
        for e in &events {
            assert_eq!(
                e.event.netns,
                Some(self.netns),
                "netns filter let through {e:?}"
            );
        }
        events.sort_by_key(|e| e.raw.ts);
        events
    }
}
