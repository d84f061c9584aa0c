//! Fault flags of `shutter demo` turned into a [`FaultPlan`], and the `--partition` syntax.
//!
//! `--partition START..END:A|B` cuts both directions between the node lists `A` and `B`
//! from `START` to `END` (offsets from the cluster start); `START..END:A>B` cuts only
//! `A -> B`. Node lists are comma-separated ids: `2s..4s:0,1|2,3`.

use std::time::Duration;

use serde::Serialize;
use shutter_transport::faults::{FaultPlan, LinkFaults, LossModel, Partition};
use shutter_vclock::NodeId;

use crate::args::{DemoArgs, parse_duration};

/// One parsed `--partition` flag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionSpec {
    /// Start, from the cluster start.
    pub start: Duration,
    /// End (exclusive).
    pub end: Duration,
    /// One side.
    pub side_a: Vec<u32>,
    /// The other side.
    pub side_b: Vec<u32>,
    /// Only `side_a -> side_b` is cut.
    pub one_way: bool,
}

impl PartitionSpec {
    /// Parses `START..END:A|B` or `START..END:A>B`.
    pub fn parse(text: &str) -> Result<PartitionSpec, String> {
        let form = "expected START..END:A|B or START..END:A>B, e.g. 2s..4s:0,1|2,3";
        let (window, sides) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?}: missing ':' ({form})"))?;
        let (start, end) = window
            .split_once("..")
            .ok_or_else(|| format!("{text:?}: missing '..' in the time window ({form})"))?;
        let start = parse_duration(start).map_err(|e| format!("{text:?}: start: {e}"))?;
        let end = parse_duration(end).map_err(|e| format!("{text:?}: end: {e}"))?;
        if end <= start {
            return Err(format!("{text:?}: the window ends before it starts"));
        }
        let (one_way, (a, b)) = if let Some(ab) = sides.split_once('|') {
            (false, ab)
        } else if let Some(ab) = sides.split_once('>') {
            (true, ab)
        } else {
            return Err(format!(
                "{text:?}: missing '|' or '>' between the sides ({form})"
            ));
        };
        let list = |s: &str| -> Result<Vec<u32>, String> {
            let ids: Result<Vec<u32>, _> = s.split(',').map(|x| x.trim().parse::<u32>()).collect();
            let ids = ids.map_err(|_| format!("{text:?}: {s:?} is not a list of node ids"))?;
            if ids.is_empty() {
                return Err(format!("{text:?}: a side is empty"));
            }
            Ok(ids)
        };
        let (side_a, side_b) = (list(a)?, list(b)?);
        if let Some(n) = side_a.iter().find(|n| side_b.contains(n)) {
            return Err(format!("{text:?}: node {n} is on both sides"));
        }
        Ok(PartitionSpec {
            start,
            end,
            side_a,
            side_b,
            one_way,
        })
    }

    /// The transport's partition.
    pub fn to_partition(&self) -> Partition {
        Partition {
            start: self.start,
            end: self.end,
            side_a: self.side_a.iter().map(|&n| NodeId(n)).collect(),
            side_b: self.side_b.iter().map(|&n| NodeId(n)).collect(),
            one_way: self.one_way,
        }
    }
}

/// The fault plan the demo flags describe (validated; node ids checked against `nodes`).
pub fn plan_from(args: &DemoArgs) -> Result<FaultPlan, String> {
    for p in &args.partition {
        if let Some(n) = p.side_a.iter().chain(&p.side_b).find(|&&n| n >= args.nodes) {
            return Err(format!(
                "--partition names node {n}, but the demo has nodes 0..{}",
                args.nodes - 1
            ));
        }
    }
    let plan = FaultPlan {
        seed: args.seed,
        default: LinkFaults {
            loss: if args.loss > 0.0 {
                LossModel::Bernoulli { p: args.loss }
            } else {
                LossModel::None
            },
            duplicate: args.dup,
            delay: args.delay,
            jitter: args.jitter,
            reorder: args.reorder,
            reorder_delay: args.reorder_delay,
            corrupt: args.corrupt,
            bandwidth_bytes_per_sec: None,
        },
        links: Vec::new(),
        partitions: args
            .partition
            .iter()
            .map(PartitionSpec::to_partition)
            .collect(),
    };
    plan.validate().map_err(|e| e.to_string())?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        let p = PartitionSpec::parse("2s..4s:0,1|2,3").unwrap();
        assert_eq!(p.start, Duration::from_secs(2));
        assert_eq!(p.end, Duration::from_secs(4));
        assert_eq!(
            (p.side_a, p.side_b, p.one_way),
            (vec![0, 1], vec![2, 3], false)
        );
        let p = PartitionSpec::parse("500ms..1s:0>1").unwrap();
        assert!(p.one_way);
    }

    #[test]
    fn errors_say_what() {
        assert!(
            PartitionSpec::parse("2s..4s")
                .unwrap_err()
                .contains("missing ':'")
        );
        assert!(
            PartitionSpec::parse("4s..2s:0|1")
                .unwrap_err()
                .contains("ends before")
        );
        assert!(
            PartitionSpec::parse("1s..2s:0|0")
                .unwrap_err()
                .contains("both sides")
        );
        assert!(
            PartitionSpec::parse("1s..2s:0,x|1")
                .unwrap_err()
                .contains("node ids")
        );
        assert!(
            PartitionSpec::parse("1s..2s:0 1")
                .unwrap_err()
                .contains("'|' or '>'")
        );
    }
}
