//! The fault mix the real-socket driver tests run through: heavy loss, duplication,
//! jitter, reordering and corruption on every link, from a seed.

use std::time::Duration;

use shutter_transport::faults::{FaultPlan, LinkFaults, LossModel};

/// 20% loss, 10% duplication, 1 ms jitter, 20% reordered by 3 ms, 2% corrupted.
pub(crate) fn faulty(seed: u64) -> FaultPlan {
    FaultPlan::uniform(
        seed,
        LinkFaults {
            loss: LossModel::Bernoulli { p: 0.2 },
            duplicate: 0.1,
            jitter: Duration::from_millis(1),
            reorder: 0.2,
            reorder_delay: Duration::from_millis(3),
            corrupt: 0.02,
            ..LinkFaults::default()
        },
    )
}
