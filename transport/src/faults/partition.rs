//! Partition checks over a plan's timed windows.
//!
//! The window type itself lives in [`super::config::Partition`]; this module answers
//! "is this datagram cut off right now?" for all of them.

use std::time::Duration;

use shutter_vclock::NodeId;

use super::config::Partition;

/// True if any partition in `partitions` drops `from -> to` at `since_epoch`.
pub(crate) fn partitioned(
    partitions: &[Partition],
    since_epoch: Duration,
    from: NodeId,
    to: NodeId,
) -> bool {
    partitions.iter().any(|p| p.blocks(since_epoch, from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn windows_and_directions() {
        let (a, b, c) = (NodeId(0), NodeId(1), NodeId(2));
        let parts = vec![
            Partition {
                start: ms(10),
                end: ms(20),
                side_a: vec![a],
                side_b: vec![b, c],
                one_way: true,
            },
            Partition {
                start: ms(30),
                end: ms(40),
                side_a: vec![b],
                side_b: vec![c],
                one_way: false,
            },
        ];
        assert!(!partitioned(&parts, ms(9), a, b));
        assert!(partitioned(&parts, ms(10), a, b));
        assert!(partitioned(&parts, ms(19), a, c));
        assert!(!partitioned(&parts, ms(20), a, b), "end is exclusive");
        assert!(
            !partitioned(&parts, ms(15), b, a),
            "one-way lets b -> a through"
        );
        assert!(
            !partitioned(&parts, ms(15), b, c),
            "b and c are on the same side"
        );
        assert!(partitioned(&parts, ms(35), b, c));
        assert!(
            partitioned(&parts, ms(35), c, b),
            "two-way cuts both directions"
        );
        assert!(!partitioned(&parts, ms(35), a, b));
    }
}
