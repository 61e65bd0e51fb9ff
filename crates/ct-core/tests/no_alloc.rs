//! The text writers allocate nothing: printing an event into a sink with room for it makes
//! no heap allocation. Counted with a global allocator, per thread (tests run in parallel).

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::io::Write as _;

use ct_core::Event;
use ct_core::{write_io, Layout, Render};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: `ptr` came from `alloc` above, i.e. from the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// An event with every section and every optional connection field set.
fn full_event() -> Event {
    let line = r#"{"timestamp":202389123456789,"task":{"pid":6790,"tgid":6789,"comm":"ftpd"},
        "probe":{"type":"tp","name":"net:netif_receive_skb"},"netns":4026531840,
        "tracking":{"skb":1,"conn":2,"parent_conn":3},
        "packet":{"ifindex":2,"ifname":"eth0","len":74,
          "ip":{"src":"2001:db8::2","dst":"2001:db8::1","version":"v6","ttl":64,"tos":0,
                "id":12345,"len":60,"proto":6},
          "l4":{"tcp":{"sport":54322,"dport":20,"flags":18}}},
        "ct":{"state":"related",
          "base":{"zone_id":3,"zone_dir":"default",
            "orig":{"ip":{"src":"2001:db8::2","dst":"2001:db8::1","version":"v6"},
                    "proto":{"tcp":{"sport":54322,"dport":20}}},
            "reply":{"ip":{"src":"2001:db8::1","dst":"2001:db8::2","version":"v6"},
                    "proto":{"tcp":{"sport":20,"dport":54322}}},
            "tcp_state":"SYN_SENT","mark":7,"labels":"0x00000000000000010000000000000001",
            "ct_status":8,"helper":"ftp","timeout":119},
          "parent":{"zone_id":3,"zone_dir":"original",
            "orig":{"ip":{"src":"10.0.0.1","dst":"10.0.0.2","version":"v4"},
                    "proto":{"sctp":{"sport":1,"dport":2,"vtag":3}}},
            "reply":{"ip":{"src":"10.0.0.2","dst":"10.0.0.1","version":"v4"},
                    "proto":{"sctp":{"sport":2,"dport":1,"vtag":4}}},
            "tcp_state":null,"mark":null,"labels":null,"ct_status":394,
            "sctp_state":"ESTABLISHED"}}}"#
        .replace('\n', "");
    serde_json::from_str(&line).unwrap()
}

#[test]
fn rendering_allocates_nothing() {
    let event = full_event();
    let ct = event.ct.clone().unwrap();
    let mut text = String::with_capacity(4096);
    let mut bytes = Vec::with_capacity(4096);
    for layout in [Layout::SingleLine, Layout::MultiLine] {
        text.clear();
        bytes.clear();
        let n = allocations_during(|| {
            event.render(&mut text, layout, 2).unwrap();
            text.push('\n');
            ct.render(&mut text, layout, 0).unwrap();
            write!(text, "{}", event.display(layout)).unwrap();
            write_io(&mut bytes, &event, layout, 4).unwrap();
            bytes.write_all(b"\n").unwrap();
        });
        assert_eq!(n, 0, "{layout} layout allocated:\n{text}");
        // It did print everything.
        assert!(text.contains("2001:db8::2.54322 > 2001:db8::1.20"));
        assert!(text.contains("labels 0x10000000000000001 helper ftp timeout 119s"));
        assert!(text.contains("sctp (ESTABLISHED)"));
        assert!(String::from_utf8_lossy(&bytes).contains("flags [S.]"));
    }
}

#[test]
fn the_counter_sees_allocations() {
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 10]))) > 0);
}
