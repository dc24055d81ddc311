//! Hybrid logical clock.
//!
//! An [`Hlc`] orders events across terminals whose wall clocks disagree: it is
//! the physical time in milliseconds, a logical counter that breaks ties and
//! absorbs clock skew, and a node id that makes two stamps from different
//! terminals never equal. `last-write-wins` compares these stamps.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A hybrid logical timestamp. Ordered by `(wall_ms, counter, node)`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Hlc {
    /// Physical component, milliseconds since the Unix epoch.
    pub wall_ms: u64,
    /// Logical component: events within the same `wall_ms`.
    pub counter: u32,
    /// The terminal that issued the stamp (a hash of its client id).
    pub node: u32,
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:013}-{:06}-{:08x}",
            self.wall_ms, self.counter, self.node
        )
    }
}

/// The clock state of one terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// A clock for `node` that resumes after `last` (persisted by the engine).
    pub fn new(node: u32, last: Hlc) -> Self {
        HlcClock {
            last: Hlc { node, ..last },
        }
    }

    /// The last stamp issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A new stamp, strictly greater than every stamp issued or observed
    /// before, given the physical time `now_ms`.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        let node = self.last.node;
        self.last = if now_ms > self.last.wall_ms {
            Hlc {
                wall_ms: now_ms,
                counter: 0,
                node,
            }
        } else {
            Hlc {
                wall_ms: self.last.wall_ms,
                counter: self.last.counter.saturating_add(1),
                node,
            }
        };
        self.last
    }

    /// Takes a remote stamp into account, so that the next [`tick`](Self::tick)
    /// is greater than it.
    pub fn observe(&mut self, remote: Hlc, now_ms: u64) {
        let node = self.last.node;
        let wall = now_ms.max(self.last.wall_ms).max(remote.wall_ms);
        let counter = if wall == self.last.wall_ms && wall == remote.wall_ms {
            self.last.counter.max(remote.counter)
        } else if wall == self.last.wall_ms {
            self.last.counter
        } else if wall == remote.wall_ms {
            remote.counter
        } else {
            0
        };
        self.last = Hlc {
            wall_ms: wall,
            counter,
            node,
        };
    }
}

/// A stable 32-bit node id for a client id.
pub fn node_id(client_id: &str) -> u32 {
    (crate::hash::fnv1a64(client_id.as_bytes()) >> 32) as u32
}

// Property tests run natively (proptest does not build for wasm32).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ticks_strictly_increase(steps in proptest::collection::vec((0u64..5_000, any::<bool>(), 0u64..5_000, 0u32..4), 1..200)) {
            let mut clock = HlcClock::new(7, Hlc::default());
            let mut prev = clock.last();
            for (now, observe, remote_wall, remote_counter) in steps {
                if observe {
                    let remote = Hlc { wall_ms: remote_wall, counter: remote_counter, node: 9 };
                    clock.observe(remote, now);
                    let next = clock.tick(now);
                    prop_assert!(next > remote, "{next} must exceed observed {remote}");
                    prop_assert!(next > prev);
                    prev = next;
                } else {
                    let next = clock.tick(now);
                    prop_assert!(next > prev, "{next} must exceed {prev}");
                    prop_assert!(next.wall_ms >= now);
                    prev = next;
                }
            }
        }

        #[test]
        fn wall_never_runs_far_ahead_of_inputs(nows in proptest::collection::vec(0u64..1_000_000, 1..100)) {
            let mut clock = HlcClock::new(1, Hlc::default());
            let mut max_seen = 0;
            for now in nows {
                max_seen = max_seen.max(now);
                let t = clock.tick(now);
                prop_assert_eq!(t.wall_ms, max_seen);
            }
        }
    }

    #[test]
    fn display_sorts_like_ord() {
        let a = Hlc {
            wall_ms: 5,
            counter: 10,
            node: 1,
        };
        let b = Hlc {
            wall_ms: 40,
            counter: 0,
            node: 0,
        };
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
    }
}
