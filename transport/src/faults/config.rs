//! Fault-plan configuration: what can go wrong on each directed link, and when.
//!
//! Everything here is plain data with serde derives so a plan can be read from TOML, JSON
//! or built from CLI flags. Durations are written as milliseconds in fields ending in
//! `_ms` (fractions allowed: `delay_ms = 0.5` is 500 µs); every field has a default, so a
//! file only names what it changes:
//!
//! ```toml
//! seed = 7
//! [default]
//! loss = { model = "bernoulli", p = 0.1 }
//! duplicate = 0.05
//! delay_ms = 2
//! jitter_ms = 1
//! [[links]]           # per directed link override, replaces `default` for n0 -> n1
//! from = 0
//! to = 1
//! faults.loss = { model = "gilbert_elliott", p_good_to_bad = 0.01, p_bad_to_good = 0.3, loss_in_good = 0.0, loss_in_bad = 1.0 }
//! [[partitions]]      # times are offsets from the fault epoch (see `Faults::with_epoch`)
//! start_ms = 1000
//! end_ms = 3000
//! side_a = [0]
//! side_b = [1, 2]
//! one_way = true      # only side_a -> side_b is cut
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shutter_vclock::NodeId;

/// How datagrams are lost on a link (before any other fault applies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum LossModel {
    /// Nothing is lost.
    #[default]
    None,
    /// Each datagram is lost independently with probability `p`.
    Bernoulli {
        /// Loss probability in `[0, 1]`.
        p: f64,
    },
    /// Two-state Markov chain producing bursts of loss (netem `gemodel p r 1-h 1-k`).
    ///
    /// The state is updated after every datagram; in the bad state with `loss_in_bad = 1`
    /// bursts have mean length `1 / p_bad_to_good`.
    GilbertElliott {
        /// Probability of moving from the good to the bad state, per datagram.
        p_good_to_bad: f64,
        /// Probability of moving from the bad to the good state, per datagram.
        p_bad_to_good: f64,
        /// Loss probability while in the good state.
        loss_in_good: f64,
        /// Loss probability while in the bad state.
        loss_in_bad: f64,
    },
}

/// The faults of one directed link.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkFaults {
    /// Loss model, applied first.
    pub loss: LossModel,
    /// Probability that a surviving datagram is delivered twice (each copy gets its own
    /// jitter, reordering and corruption).
    pub duplicate: f64,
    /// Fixed one-way delay added to every datagram.
    #[serde(rename = "delay_ms", with = "millis")]
    pub delay: Duration,
    /// Uniform extra delay in `[0, jitter]` per copy; enough jitter reorders datagrams.
    #[serde(rename = "jitter_ms", with = "millis")]
    pub jitter: Duration,
    /// Probability that a copy is held back by `reorder_delay` so later ones overtake it.
    pub reorder: f64,
    /// How long a reordered copy is held back.
    #[serde(rename = "reorder_delay_ms", with = "millis")]
    pub reorder_delay: Duration,
    /// Probability that a copy has 1 to 3 distinct bits flipped (the transport's checksum
    /// must catch it).
    pub corrupt: f64,
    /// Link capacity: datagrams queue behind each other for `len / rate` seconds.
    /// `None` is unlimited.
    pub bandwidth_bytes_per_sec: Option<u64>,
}

impl LinkFaults {
    /// A link that only loses datagrams, independently with probability `p`.
    pub fn lossy(p: f64) -> LinkFaults {
        LinkFaults {
            loss: LossModel::Bernoulli { p },
            ..LinkFaults::default()
        }
    }

    /// True if this link changes nothing (no loss, delay, duplication, ... ).
    pub fn is_perfect(&self) -> bool {
        *self == LinkFaults::default()
    }

    fn validate(&self, at: &str) -> Result<(), FaultConfigError> {
        let prob = |name: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(FaultConfigError::Probability {
                    field: format!("{at}.{name}"),
                    value,
                })
            }
        };
        match self.loss {
            LossModel::None => {}
            LossModel::Bernoulli { p } => prob("loss.p", p)?,
            LossModel::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_in_good,
                loss_in_bad,
            } => {
                prob("loss.p_good_to_bad", p_good_to_bad)?;
                prob("loss.p_bad_to_good", p_bad_to_good)?;
                prob("loss.loss_in_good", loss_in_good)?;
                prob("loss.loss_in_bad", loss_in_bad)?;
            }
        }
        prob("duplicate", self.duplicate)?;
        prob("reorder", self.reorder)?;
        prob("corrupt", self.corrupt)?;
        if self.reorder > 0.0 && self.reorder_delay.is_zero() {
            return Err(FaultConfigError::Invalid {
                field: format!("{at}.reorder_delay_ms"),
                reason: "must be > 0 when reorder > 0, or nothing is reordered".into(),
            });
        }
        if self.bandwidth_bytes_per_sec == Some(0) {
            return Err(FaultConfigError::Invalid {
                field: format!("{at}.bandwidth_bytes_per_sec"),
                reason: "must be > 0 (omit it for an unlimited link)".into(),
            });
        }
        Ok(())
    }
}

/// Override of the default faults for one directed link `from -> to`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkOverride {
    /// Sending node.
    pub from: NodeId,
    /// Receiving node.
    pub to: NodeId,
    /// Faults of this link; they replace (not add to) the plan's default.
    // Nested rather than flattened: serde ignores unknown fields of a flattened struct,
    // and a misspelt fault must be an error, not a silently perfect link.
    pub faults: LinkFaults,
}

/// A timed network partition between two groups of nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Start of the window, as an offset from the fault epoch (inclusive).
    #[serde(rename = "start_ms", with = "millis")]
    pub start: Duration,
    /// End of the window, as an offset from the fault epoch (exclusive).
    #[serde(rename = "end_ms", with = "millis")]
    pub end: Duration,
    /// One side of the cut.
    pub side_a: Vec<NodeId>,
    /// The other side of the cut.
    pub side_b: Vec<NodeId>,
    /// If true only datagrams from `side_a` to `side_b` are dropped; otherwise both ways.
    #[serde(default)]
    pub one_way: bool,
}

impl Partition {
    /// True if this partition drops a datagram `from -> to` sent `since_epoch` after the
    /// fault epoch.
    pub fn blocks(&self, since_epoch: Duration, from: NodeId, to: NodeId) -> bool {
        if since_epoch < self.start || since_epoch >= self.end {
            return false;
        }
        let a_to_b = self.side_a.contains(&from) && self.side_b.contains(&to);
        let b_to_a = self.side_b.contains(&from) && self.side_a.contains(&to);
        a_to_b || (!self.one_way && b_to_a)
    }

    fn validate(&self, index: usize) -> Result<(), FaultConfigError> {
        let field = |name: &str| format!("partitions[{index}].{name}");
        if self.end <= self.start {
            return Err(FaultConfigError::Invalid {
                field: field("end_ms"),
                reason: format!(
                    "must be after start_ms ({} ms <= {} ms)",
                    self.end.as_secs_f64() * 1e3,
                    self.start.as_secs_f64() * 1e3
                ),
            });
        }
        for (name, side) in [("side_a", &self.side_a), ("side_b", &self.side_b)] {
            if side.is_empty() {
                return Err(FaultConfigError::Invalid {
                    field: field(name),
                    reason: "must name at least one node".into(),
                });
            }
        }
        if let Some(node) = self.side_a.iter().find(|n| self.side_b.contains(n)) {
            return Err(FaultConfigError::Invalid {
                field: field("side_b"),
                reason: format!("node {node} is on both sides"),
            });
        }
        Ok(())
    }
}

/// Everything that goes wrong, on every link, derived from one seed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultPlan {
    /// Seed of every random choice (mixed with the link's endpoints per directed link).
    pub seed: u64,
    /// Faults of every link without an override.
    pub default: LinkFaults,
    /// Per directed link overrides; at most one per `(from, to)`.
    pub links: Vec<LinkOverride>,
    /// Timed partitions, checked before any other fault.
    pub partitions: Vec<Partition>,
}

impl FaultPlan {
    /// The same faults on every link.
    pub fn uniform(seed: u64, faults: LinkFaults) -> FaultPlan {
        FaultPlan {
            seed,
            default: faults,
            ..FaultPlan::default()
        }
    }

    /// Checks every probability is in `[0, 1]`, windows are non-empty, sides are disjoint
    /// and links are not overridden twice. The error names the offending field.
    pub fn validate(&self) -> Result<(), FaultConfigError> {
        self.default.validate("default")?;
        let mut seen = BTreeSet::new();
        for o in &self.links {
            let at = format!("links[{}->{}]", o.from, o.to);
            if !seen.insert((o.from, o.to)) {
                return Err(FaultConfigError::Invalid {
                    field: at,
                    reason: "link is overridden more than once".into(),
                });
            }
            o.faults.validate(&at)?;
        }
        for (i, p) in self.partitions.iter().enumerate() {
            p.validate(i)?;
        }
        Ok(())
    }

    /// The faults that apply to `from -> to`.
    pub fn link(&self, from: NodeId, to: NodeId) -> &LinkFaults {
        self.links
            .iter()
            .find(|o| o.from == from && o.to == to)
            .map_or(&self.default, |o| &o.faults)
    }
}

/// A fault plan that cannot be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FaultConfigError {
    /// A probability outside `[0, 1]` (or NaN).
    #[error("fault plan: {field} = {value} is not a probability in [0, 1]")]
    Probability {
        /// Path of the field, e.g. `default.loss.p`.
        field: String,
        /// The rejected value.
        value: f64,
    },
    /// Any other invalid field.
    #[error("fault plan: {field} {reason}")]
    Invalid {
        /// Path of the field, e.g. `partitions[0].end_ms`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Serde for `Duration` as (possibly fractional) milliseconds, the unit of every `_ms` field.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        // Whole milliseconds stay integers so a round-tripped TOML file looks as written.
        if d.as_micros() % 1000 == 0 {
            s.serialize_u64(d.as_millis() as u64)
        } else {
            s.serialize_f64(d.as_secs_f64() * 1e3)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        if !ms.is_finite() || ms < 0.0 {
            return Err(D::Error::custom(format!(
                "duration {ms} ms must be a finite number >= 0"
            )));
        }
        // Microsecond resolution is what `Time` carries.
        Ok(Duration::from_micros((ms * 1e3).round() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(plan: &FaultPlan) -> String {
        plan.validate().unwrap_err().to_string()
    }

    #[test]
    fn validation_names_the_field() {
        let mut plan = FaultPlan::uniform(1, LinkFaults::lossy(1.5));
        assert_eq!(
            err(&plan),
            "fault plan: default.loss.p = 1.5 is not a probability in [0, 1]"
        );
        plan.default = LinkFaults {
            duplicate: f64::NAN,
            ..LinkFaults::default()
        };
        assert!(err(&plan).contains("default.duplicate = NaN"));
        plan.default = LinkFaults {
            reorder: 0.5,
            ..LinkFaults::default()
        };
        assert!(err(&plan).contains("default.reorder_delay_ms must be > 0"));
        plan.default = LinkFaults {
            bandwidth_bytes_per_sec: Some(0),
            ..LinkFaults::default()
        };
        assert!(err(&plan).contains("default.bandwidth_bytes_per_sec"));

        let mut plan = FaultPlan::default();
        plan.links.push(LinkOverride {
            from: NodeId(0),
            to: NodeId(1),
            faults: LinkFaults {
                loss: LossModel::GilbertElliott {
                    p_good_to_bad: 0.1,
                    p_bad_to_good: -0.1,
                    loss_in_good: 0.0,
                    loss_in_bad: 1.0,
                },
                ..LinkFaults::default()
            },
        });
        assert!(err(&plan).contains("links[n0->n1].loss.p_bad_to_good = -0.1"));
        plan.links[0].faults = LinkFaults::default();
        plan.links.push(plan.links[0].clone());
        assert!(err(&plan).contains("links[n0->n1] link is overridden more than once"));
    }

    #[test]
    fn partition_validation() {
        let mut plan = FaultPlan::default();
        plan.partitions.push(Partition {
            start: Duration::from_millis(20),
            end: Duration::from_millis(10),
            side_a: vec![NodeId(0)],
            side_b: vec![NodeId(1)],
            one_way: false,
        });
        assert!(err(&plan).contains("partitions[0].end_ms must be after start_ms"));
        plan.partitions[0].end = Duration::from_millis(30);
        assert_eq!(plan.validate(), Ok(()));
        plan.partitions[0].side_b.push(NodeId(0));
        assert!(err(&plan).contains("partitions[0].side_b node n0 is on both sides"));
        plan.partitions[0].side_b.clear();
        assert!(err(&plan).contains("partitions[0].side_b must name at least one node"));
    }

    #[test]
    fn serde_round_trip_in_milliseconds() {
        let mut plan = FaultPlan::uniform(
            7,
            LinkFaults {
                loss: LossModel::Bernoulli { p: 0.25 },
                delay: Duration::from_millis(3),
                jitter: Duration::from_micros(500),
                ..LinkFaults::default()
            },
        );
        plan.links.push(LinkOverride {
            from: NodeId(1),
            to: NodeId(0),
            faults: LinkFaults::lossy(0.5),
        });
        let json = serde_json::to_string(&plan).unwrap();
        assert!(json.contains(r#""delay_ms":3"#), "{json}");
        assert!(json.contains(r#""jitter_ms":0.5"#), "{json}");
        assert!(json.contains(r#""model":"bernoulli""#), "{json}");
        let back: FaultPlan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);

        let sparse: FaultPlan =
            serde_json::from_str(r#"{"seed":3,"default":{"duplicate":0.1,"delay_ms":1.25}}"#)
                .unwrap();
        assert_eq!(sparse.default.delay, Duration::from_micros(1250));
        assert_eq!(sparse.default.loss, LossModel::None);
        assert!(serde_json::from_str::<FaultPlan>(r#"{"default":{"delay_ms":-1}}"#).is_err());
        assert!(serde_json::from_str::<FaultPlan>(r#"{"default":{"dely_ms":1}}"#).is_err());
    }
}
