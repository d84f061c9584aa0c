//! Vector clocks for shutter.
//!
//! [`VClock`] is a dense vector of counters indexed by [`NodeId`]; entries that were never
//! set read as 0 and the vector grows on demand. Clocks form a join-semilattice under
//! [`VClock::merge`] and are partially ordered ([`PartialOrd`] returns `None` for
//! concurrent clocks).
//!
//! On the wire a clock is a postcard sequence of varints (serde). For large clusters the
//! [`compact`] module sends only the entries that differ from a baseline the receiver is
//! known to hold, and stays exact when messages are reordered, duplicated or lost.
//!
//! ```
//! use shutter_vclock::{NodeId, VClock};
//! let (a, b) = (NodeId(0), NodeId(1));
//! let mut x = VClock::new();
//! x.tick(a);
//! let mut y = x.clone();
//! y.tick(b);
//! assert!(x.happened_before(&y));
//! x.tick(a);
//! assert!(x.concurrent(&y));
//! y.merge(&x);
//! assert!(y.dominates(&x));
//! assert_eq!(y.to_string(), "[2,1]");
//! ```

mod clock;
pub mod compact;

pub use clock::{MAX_NODES, NodeId, VClock};
