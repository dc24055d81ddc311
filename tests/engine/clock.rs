//! The hybrid logical clock's contract, through its public API (mutation
//! testing found these cases unchecked).

use crate::common::*;
use tidesync::hlc::node_id;

fn at(wall_ms: u64, counter: u32) -> Hlc {
    Hlc {
        wall_ms,
        counter,
        node: 9,
    }
}

#[test]
fn observe_takes_a_counter_only_from_stamps_at_the_new_wall_time() {
    // The remote stamp is older: its counter means nothing at our wall time.
    let mut clock = HlcClock::new(1, at(100, 0));
    clock.observe(at(50, 7), 10);
    assert_eq!((clock.last().wall_ms, clock.last().counter), (100, 0));
    assert_eq!(clock.tick(10).counter, 1);
    // The remote stamp is newer: our counter means nothing at its wall time.
    let mut clock = HlcClock::new(1, at(100, 9));
    clock.observe(at(200, 2), 0);
    assert_eq!((clock.last().wall_ms, clock.last().counter), (200, 2));
    assert_eq!(
        clock.tick(0),
        Hlc {
            wall_ms: 200,
            counter: 3,
            node: 1
        }
    );
    // The same wall time: the larger counter.
    let mut clock = HlcClock::new(1, at(300, 4));
    clock.observe(at(300, 6), 0);
    assert_eq!(clock.last().counter, 6);
    // The physical clock is ahead of both: a fresh counter.
    let mut clock = HlcClock::new(1, at(300, 4));
    clock.observe(at(200, 6), 400);
    assert_eq!((clock.last().wall_ms, clock.last().counter), (400, 0));
}

#[test]
fn terminals_get_distinct_stable_node_ids() {
    let ids: std::collections::BTreeSet<u32> =
        (0..1000).map(|k| node_id(&format!("client-{k}"))).collect();
    assert_eq!(ids.len(), 1000, "two terminals' stamps must never be equal");
    assert_eq!(node_id("client-t1"), node_id("client-t1"));
    // Two terminals stamping in the same millisecond still order strictly.
    let mut a = HlcClock::new(node_id("client-t1"), Hlc::default());
    let mut b = HlcClock::new(node_id("client-t2"), Hlc::default());
    assert_ne!(a.tick(5), b.tick(5));
}
