//! The embedding example from the README: attach two probes, print N events (default 10).
use std::time::Duration;

use ct_bpf::{CollectorBuilder, ProbeSpec};
use ct_core::{Layout, Render};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut collector = CollectorBuilder::new()
        .probe("tp:net:net_dev_start_xmit".parse::<ProbeSpec>()?)
        .probe("tp:skb:consume_skb".parse::<ProbeSpec>()?)
        .build()?;
    let wanted: usize = std::env::args().nth(1).map_or(Ok(10), |n| n.parse())?;
    let mut seen = 0;
    while seen < wanted {
        seen += collector.poll(Duration::from_millis(100), |event| match event {
            Ok(event) => println!("{}\n", event.display(Layout::MultiLine)),
            Err(e) => eprintln!("bad event: {e}"),
        })?;
    }
    eprintln!("lost: {}", collector.lost()?);
    Ok(())
}
