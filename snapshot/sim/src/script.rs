//! Scripted workloads: an exact schedule of sends, snapshots, crashes, partitions and
//! ticks, written as text (or built in Rust), applied to a [`Sim`] with
//! [`Sim::script`].
//!
//! A [`Script`] is a list of steps on a script clock that starts at 0 and only moves
//! when a step says so. Each step happens at the clock's current value, in virtual time
//! from the start of the run.
//!
//! # The text format
//!
//! One step per line; everything from `#` to the end of a line is a comment; blank lines
//! are ignored; words are separated by spaces or tabs. Keywords are lower case. A node
//! is written `n3` or `3`; a duration is a decimal number and a unit, `us`, `ms` or `s`
//! (`300us`, `5ms`, `1.5s`), at most [`MAX_TIME`] and a whole number of microseconds
//! (the simulator's resolution).
//!
//! - `run <duration>`: advance the clock by `<duration>`.
//! - `at <duration>`: set the clock to `<duration>`; it must not go backwards.
//! - `<node> sends <node> <n>`: the command `send <to> <n>` to the first node's process
//!   (see below).
//! - `<node> command <text>`: the command `<text>` (its bytes, as written) to the node's
//!   process.
//! - `snapshot from <node>`: the node initiates a snapshot ([`Sim::snapshot_at`]).
//! - `crash <node> for <duration>`: a real crash; a new process comes back `<duration>`
//!   later with its disk ([`Sim::crash`]).
//! - `crash <node> for <duration> losing disk`: the same, and it comes back with nothing
//!   ([`Sim::crash_losing_disk`]).
//! - `partition <nodes> | <nodes>` (nodes separated by spaces): drop every datagram sent
//!   between the two groups, both ways, until the next `heal`.
//! - `heal`: end every open partition.
//! - `tick`: one extra [`Process::on_tick`] of every process that is up
//!   ([`Sim::tick_at`]).
//!
//! The checks a line gets, each reported as a [`ScriptError`] naming the line: `sends`
//! needs two different nodes; `command` needs text (it cannot contain `#`, which starts
//! the comment); a partition names at least one node on each side and no node twice;
//! `heal` needs an open partition, and not one opened at the same instant (it would
//! block nothing: advance the clock first). A partition never healed lasts for the
//! whole run, the settling after the traffic included.
//!
//! # What a send means
//!
//! The simulator does not know what your messages are, so `n0 sends n1 5` is an operator
//! command to `n0`'s [`Process::on_command`] with the bytes `send 1 5` ([`send_command`]);
//! your process decides what sending 5 means (an amount of money, five messages, ...).
//! [`parse_send`] decodes it. `n0 command <text>` is the escape hatch for anything else.
//!
//! # Timing
//!
//! Steps run in the run's traffic time only (as [`Sim::command`] and
//! [`Sim::snapshot_at`] do), so run the simulation for longer than the script:
//! `run_for(script.duration() + settle)`. Steps at the same instant happen in the
//! simulator's order, not the order written: crashes, then ticks, then commands (by
//! node, in written order for one node), then snapshots. Put a `run 1ms` between two
//! steps to order them. A command or snapshot for a node that is down at its time is
//! dropped (a snapshot counts in [`Report::initiations_skipped`]), and a crash of a node
//! already down does nothing: the simulator's rules, not the script's.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use shutter_sim::script::{Script, parse_send};
//! use shutter_sim::{Context, NodeId, Process, Sim, Topology};
//!
//! /// Holds coins; `send <to> <n>` gives `n` of them to `to` if it has them.
//! struct Coins(u64);
//! #[derive(Serialize, Deserialize)]
//! struct State(u64);
//!
//! impl Process for Coins {
//!     type State = State;
//!     fn on_command(&mut self, ctx: &mut Context, command: &[u8]) {
//!         if let Some((to, n)) = parse_send(command).filter(|&(_, n)| n <= self.0) {
//!             self.0 -= n;
//!             ctx.send(to, n.to_le_bytes().to_vec());
//!         }
//!     }
//!     fn on_message(&mut self, _: &mut Context, _: NodeId, payload: &[u8]) {
//!         self.0 += payload.try_into().map_or(0, u64::from_le_bytes);
//!     }
//!     fn snapshot(&self) -> State { State(self.0) }
//!     fn restore(&mut self, s: State) { self.0 = s.0; }
//! }
//!
//! let script = Script::parse(
//!     "# n0 pays n1, then a snapshot while n1 pays it back
//!      n0 sends n1 30
//!      run 10ms
//!      n1 sends n0 20
//!      snapshot from n2      # a bystander initiates
//!      at 50ms
//!      crash n2 for 20ms",
//! )
//! .unwrap();
//! assert_eq!(script.duration(), Duration::from_millis(50));
//!
//! let report = Sim::new(Topology::grid(3, 1), |_| Coins(100))
//!     .script(&script)
//!     .invariant("100 coins each", |cut| {
//!         let held: u64 = cut.states().map(|(_, s)| s.0).sum();
//!         let moving: u64 = cut.in_flight().map(|(_, _, m)| u64::from(m[0])).sum();
//!         if held + moving == 300 { Ok(()) } else { Err(format!("{} coins", held + moving)) }
//!     })
//!     .run_for(script.duration() + Duration::from_millis(50));
//! report.assert_ok();
//! assert_eq!(report.completed.len(), 1);
//! assert_eq!(report.crashes, 1);
//!
//! // The same script built in Rust.
//! let built = Script::new()
//!     .sends(NodeId(0), NodeId(1), 30)
//!     .run(Duration::from_millis(10))
//!     .sends(NodeId(1), NodeId(0), 20)
//!     .snapshot_from(NodeId(2))
//!     .at(Duration::from_millis(50))
//!     .crash(NodeId(2), Duration::from_millis(20));
//! assert_eq!(built, script);
//! // Its canonical text reads back as the same script.
//! assert_eq!(Script::parse(&built.to_string()).unwrap(), built);
//! ```
//!
//! [`Sim`]: crate::Sim
//! [`Report::initiations_skipped`]: crate::Report::initiations_skipped
//! [`Sim::script`]: crate::Sim::script
//! [`Sim::snapshot_at`]: crate::Sim::snapshot_at
//! [`Sim::command`]: crate::Sim::command
//! [`Sim::crash`]: crate::Sim::crash
//! [`Sim::crash_losing_disk`]: crate::Sim::crash_losing_disk
//! [`Sim::tick_at`]: crate::Sim::tick_at
//! [`Process::on_tick`]: crate::Process::on_tick
//! [`Process::on_command`]: crate::Process::on_command

use std::fmt;
use std::time::Duration;

use shutter_snapshot::process::Process;
use shutter_vclock::NodeId;

use crate::setup::Sim;

/// The longest duration a script takes, and the latest its clock may reach: about 11.5
/// days of virtual time, far beyond any test and far below where the simulator's
/// microsecond clock could overflow.
pub const MAX_TIME: Duration = Duration::from_secs(1_000_000);

/// The command bytes of "send `n` to `to`": `send <to> <n>`, e.g. `send 1 5`.
pub fn send_command(to: NodeId, n: u64) -> Vec<u8> {
    format!("send {} {n}", to.0).into_bytes()
}

/// Decodes a command written by [`send_command`] (what `a sends b n` hands to `a`):
/// `Some((to, n))`, or `None` for any other bytes.
pub fn parse_send(command: &[u8]) -> Option<(NodeId, u64)> {
    let text = std::str::from_utf8(command).ok()?;
    let mut words = text.split(' ');
    let (Some("send"), Some(to), Some(n), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return None;
    };
    Some((NodeId(number(to)?), number(n)?))
}

/// A number written with decimal digits only (`str::parse` also takes a leading `+`,
/// which would give one value two spellings).
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// One step of a [`Script`] (see the module docs for the text of each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `run <duration>`: advance the clock.
    Run(Duration),
    /// `at <duration>`: set the clock (never backwards).
    At(Duration),
    /// `<from> sends <to> <n>`: the command [`send_command`]`(to, n)` to `from`.
    Send {
        /// The node whose process gets the command.
        from: NodeId,
        /// The receiver the command names.
        to: NodeId,
        /// How much (the process decides of what).
        n: u64,
    },
    /// `<node> command <text>`: the bytes of `text` to `node`'s process.
    Command {
        /// The node whose process gets the command.
        node: NodeId,
        /// The command, one line without `#` or surrounding whitespace.
        text: String,
    },
    /// `snapshot from <node>`.
    Snapshot(NodeId),
    /// `crash <node> for <down> [losing disk]`.
    Crash {
        /// The node that crashes.
        node: NodeId,
        /// How long until its new process comes back.
        down: Duration,
        /// True if it comes back without its disk.
        lose_disk: bool,
    },
    /// `partition <side_a> | <side_b>`: both ways, until the next [`Step::Heal`].
    Partition {
        /// One group.
        side_a: Vec<NodeId>,
        /// The other group.
        side_b: Vec<NodeId>,
    },
    /// `heal`: every open partition ends.
    Heal,
    /// `tick`: one extra tick of every process that is up.
    Tick,
}

/// Why a script does not parse: the line (1-based), its text and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("script line {line} ({text:?}): {what}")]
pub struct ScriptError {
    /// 1-based line number.
    pub line: usize,
    /// The line as written (without its line break).
    pub text: String,
    /// What is wrong with it.
    pub what: String,
}

/// A timed schedule of steps (see the module docs). Build one with [`Script::parse`] or
/// the builder methods; [`fmt::Display`] writes the canonical text, which parses back
/// to an equal script.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script {
    steps: Vec<Step>,
    /// The clock after the last step.
    clock: Duration,
    /// When each partition not yet healed started (to refuse an empty window).
    open: Vec<Duration>,
}

impl Script {
    /// An empty script (clock at 0).
    pub fn new() -> Script {
        Script::default()
    }

    /// Parses the text format (see the module docs). Never panics; the error names the
    /// first line that is wrong.
    pub fn parse(text: &str) -> Result<Script, ScriptError> {
        let mut script = Script::new();
        for (i, raw) in text.lines().enumerate() {
            let fail = |what: String| ScriptError {
                line: i + 1,
                text: raw.to_string(),
                what,
            };
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let step = parse_step(line).map_err(fail)?;
            script.push(step).map_err(fail)?;
        }
        Ok(script)
    }

    /// Appends `step` if it is valid where the clock is now (the checks the module docs
    /// list); otherwise says why and leaves the script as it was.
    pub fn push(&mut self, step: Step) -> Result<(), String> {
        let within = |t: Duration, what: &str| {
            if t > MAX_TIME {
                Err(format!(
                    "{what} {} is past the limit of {}",
                    Dur(t),
                    Dur(MAX_TIME)
                ))
            } else {
                Ok(t)
            }
        };
        let mut clock = self.clock;
        match &step {
            Step::Run(d) => {
                clock = within(self.clock.saturating_add(*d), "the clock would reach")?;
            }
            Step::At(t) => {
                clock = within(*t, "the time")?;
                if clock < self.clock {
                    return Err(format!(
                        "at {} goes back in time: the clock is already at {}",
                        Dur(clock),
                        Dur(self.clock)
                    ));
                }
            }
            Step::Send { from, to, .. } => {
                if from == to {
                    return Err(format!("{from} cannot send to itself"));
                }
            }
            Step::Command { text, .. } => {
                if text.is_empty() {
                    return Err("a command needs text after `command`".into());
                }
                if text.contains(['#', '\n', '\r']) || text.trim() != text {
                    return Err(format!(
                        "command text {text:?} must be one line without `#` or surrounding \
                         whitespace"
                    ));
                }
            }
            Step::Crash { down, .. } => {
                within(*down, "the downtime")?;
            }
            Step::Partition { side_a, side_b } => {
                if side_a.is_empty() || side_b.is_empty() {
                    return Err("a partition needs at least one node on each side of `|`".into());
                }
                let all: Vec<NodeId> = side_a.iter().chain(side_b).copied().collect();
                if let Some((i, n)) = all.iter().enumerate().find(|(i, n)| all[..*i].contains(n)) {
                    let place = if side_a.contains(n) && i >= side_a.len() {
                        "on both sides"
                    } else {
                        "twice on one side"
                    };
                    return Err(format!("{n} is {place} of the partition"));
                }
            }
            Step::Heal => {
                if self.open.is_empty() {
                    return Err("nothing to heal: no partition is open".into());
                }
                if self.open.contains(&self.clock) {
                    return Err(format!(
                        "heal at {}, the instant a partition started, would leave it nothing to \
                         block: advance the clock first (run ...)",
                        Dur(self.clock)
                    ));
                }
            }
            Step::Snapshot(_) | Step::Tick => {}
        }
        match step {
            Step::Partition { .. } => self.open.push(self.clock),
            Step::Heal => self.open.clear(),
            _ => {}
        }
        self.clock = clock;
        self.steps.push(step);
        Ok(())
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Every step with the time it happens at (for [`Step::Run`] the time it starts).
    pub fn timeline(&self) -> impl Iterator<Item = (Duration, &Step)> + '_ {
        let mut clock = Duration::ZERO;
        self.steps.iter().map(move |step| {
            let at = match step {
                Step::At(t) => *t,
                _ => clock,
            };
            clock = match step {
                Step::Run(d) => clock.saturating_add(*d),
                _ => at,
            };
            (at, step)
        })
    }

    /// The clock after the last step: when the last step happens, or later if the
    /// script ends with `run`. Run the simulation for longer than this (see the module
    /// docs).
    pub fn duration(&self) -> Duration {
        self.clock
    }

    /// The nodes that initiate snapshots, in script order.
    pub fn initiators(&self) -> Vec<NodeId> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Snapshot(n) => Some(*n),
                _ => None,
            })
            .collect()
    }

    /// Puts the steps on `sim`: commands, snapshots, crashes, partitions (each until the
    /// `heal` after it, or for ever) and ticks, at their times.
    pub(crate) fn apply<P: Process + 'static>(&self, mut sim: Sim<P>) -> Sim<P> {
        let mut open: Vec<(Duration, &[NodeId], &[NodeId])> = Vec::new();
        for (at, step) in self.timeline() {
            sim = match step {
                Step::Run(_) | Step::At(_) => sim,
                Step::Send { from, to, n } => sim.command(at, *from, send_command(*to, *n)),
                Step::Command { node, text } => sim.command(at, *node, text.as_bytes()),
                Step::Snapshot(node) => sim.snapshot_at(at, *node),
                Step::Crash {
                    node,
                    down,
                    lose_disk: false,
                } => sim.crash(*node, at, *down),
                Step::Crash {
                    node,
                    down,
                    lose_disk: true,
                } => sim.crash_losing_disk(*node, at, *down),
                Step::Partition { side_a, side_b } => {
                    open.push((at, side_a, side_b));
                    sim
                }
                Step::Heal => open
                    .drain(..)
                    .fold(sim, |sim, (from, a, b)| sim.partition(a, b, from, at)),
                Step::Tick => sim.tick_at(at),
            };
        }
        // Never healed: `Partition::end` is exclusive, so MAX blocks for the whole run.
        open.into_iter().fold(sim, |sim, (from, a, b)| {
            sim.partition(a, b, from, Duration::MAX)
        })
    }

    /// Appends `step`; a step the text would refuse is a bug in the test, so it panics
    /// with the same message.
    #[track_caller]
    fn with(mut self, step: Step) -> Script {
        if let Err(why) = self.push(step) {
            panic!("invalid script step: {why}");
        }
        self
    }

    /// `run <d>`: advances the clock by `d`.
    ///
    /// # Panics
    /// If the clock would pass [`MAX_TIME`].
    #[track_caller]
    pub fn run(self, d: Duration) -> Script {
        self.with(Step::Run(d))
    }

    /// `at <t>`: sets the clock to `t`.
    ///
    /// # Panics
    /// If `t` is before the clock or past [`MAX_TIME`].
    #[track_caller]
    pub fn at(self, t: Duration) -> Script {
        self.with(Step::At(t))
    }

    /// `<from> sends <to> <n>`.
    ///
    /// # Panics
    /// If `from == to`.
    #[track_caller]
    pub fn sends(self, from: NodeId, to: NodeId, n: u64) -> Script {
        self.with(Step::Send { from, to, n })
    }

    /// `<node> command <text>`.
    ///
    /// # Panics
    /// If `text` is empty, has a `#` or a line break, or starts or ends with whitespace.
    #[track_caller]
    pub fn command(self, node: NodeId, text: &str) -> Script {
        self.with(Step::Command {
            node,
            text: text.to_string(),
        })
    }

    /// `snapshot from <node>`.
    pub fn snapshot_from(self, node: NodeId) -> Script {
        self.with(Step::Snapshot(node))
    }

    /// `crash <node> for <down>`.
    ///
    /// # Panics
    /// If `down` is past [`MAX_TIME`].
    #[track_caller]
    pub fn crash(self, node: NodeId, down: Duration) -> Script {
        self.with(Step::Crash {
            node,
            down,
            lose_disk: false,
        })
    }

    /// `crash <node> for <down> losing disk`.
    ///
    /// # Panics
    /// If `down` is past [`MAX_TIME`].
    #[track_caller]
    pub fn crash_losing_disk(self, node: NodeId, down: Duration) -> Script {
        self.with(Step::Crash {
            node,
            down,
            lose_disk: true,
        })
    }

    /// `partition <side_a> | <side_b>`.
    ///
    /// # Panics
    /// If a side is empty or a node is named twice.
    #[track_caller]
    pub fn partition(self, side_a: &[NodeId], side_b: &[NodeId]) -> Script {
        self.with(Step::Partition {
            side_a: side_a.to_vec(),
            side_b: side_b.to_vec(),
        })
    }

    /// `heal`.
    ///
    /// # Panics
    /// If no partition is open, or one opened at the current instant.
    #[track_caller]
    pub fn heal(self) -> Script {
        self.with(Step::Heal)
    }

    /// `tick`.
    pub fn tick(self) -> Script {
        self.with(Step::Tick)
    }
}

impl std::str::FromStr for Script {
    type Err = ScriptError;
    fn from_str(text: &str) -> Result<Script, ScriptError> {
        Script::parse(text)
    }
}

/// A duration in its canonical text: the largest unit that writes it as a whole number.
struct Dur(Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.as_micros();
        if us % 1_000_000 == 0 {
            write!(f, "{}s", us / 1_000_000)
        } else if us % 1_000 == 0 {
            write!(f, "{}ms", us / 1_000)
        } else {
            write!(f, "{us}us")
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes = |ns: &[NodeId]| {
            ns.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        match self {
            Step::Run(d) => write!(f, "run {}", Dur(*d)),
            Step::At(t) => write!(f, "at {}", Dur(*t)),
            Step::Send { from, to, n } => write!(f, "{from} sends {to} {n}"),
            Step::Command { node, text } => write!(f, "{node} command {text}"),
            Step::Snapshot(n) => write!(f, "snapshot from {n}"),
            Step::Crash {
                node,
                down,
                lose_disk,
            } => {
                write!(f, "crash {node} for {}", Dur(*down))?;
                if *lose_disk {
                    f.write_str(" losing disk")?;
                }
                Ok(())
            }
            Step::Partition { side_a, side_b } => {
                write!(f, "partition {} | {}", nodes(side_a), nodes(side_b))
            }
            Step::Heal => f.write_str("heal"),
            Step::Tick => f.write_str("tick"),
        }
    }
}

impl fmt::Display for Script {
    /// One step per line, in the text format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            writeln!(f, "{step}")?;
        }
        Ok(())
    }
}

/// What the step grammar expects, for errors about an unknown first word.
const STEPS: &str = "expected `run <duration>`, `at <duration>`, `<node> sends <node> <n>`, \
                     `<node> command <text>`, `snapshot from <node>`, `crash <node> for \
                     <duration> [losing disk]`, `partition <nodes> | <nodes>`, `heal` or `tick`";

/// One line without its comment, trimmed and not empty.
fn parse_step(line: &str) -> Result<Step, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let arity = |n: usize, form: &str| {
        if words.len() == n {
            Ok(())
        } else {
            Err(format!("expected `{form}`"))
        }
    };
    match words[..] {
        ["run", ..] => {
            arity(2, "run <duration>")?;
            Ok(Step::Run(duration(words[1])?))
        }
        ["at", ..] => {
            arity(2, "at <duration>")?;
            Ok(Step::At(duration(words[1])?))
        }
        ["snapshot", ..] => {
            arity(3, "snapshot from <node>")?;
            keyword(words[1], "from")?;
            Ok(Step::Snapshot(node(words[2])?))
        }
        ["crash", ..] => {
            let form = "crash <node> for <duration> [losing disk]";
            if words.len() != 4 && words.len() != 6 {
                return Err(format!("expected `{form}`"));
            }
            let node = node(words[1])?;
            keyword(words[2], "for")?;
            let down = duration(words[3])?;
            if words.len() == 6 {
                keyword(words[4], "losing")?;
                keyword(words[5], "disk")?;
            }
            Ok(Step::Crash {
                node,
                down,
                lose_disk: words.len() == 6,
            })
        }
        ["partition", ..] => {
            let rest = line["partition".len()..].trim();
            let Some((a, b)) = rest.split_once('|') else {
                return Err("expected `partition <nodes> | <nodes>`: no `|`".into());
            };
            if b.contains('|') {
                return Err("a partition has two sides: one `|` only".into());
            }
            let side = |s: &str| {
                s.split_whitespace()
                    .map(node)
                    .collect::<Result<Vec<_>, _>>()
            };
            Ok(Step::Partition {
                side_a: side(a)?,
                side_b: side(b)?,
            })
        }
        ["heal", ..] => {
            arity(1, "heal")?;
            Ok(Step::Heal)
        }
        ["tick", ..] => {
            arity(1, "tick")?;
            Ok(Step::Tick)
        }
        [first, "sends", ..] => {
            arity(4, "<node> sends <node> <n>")?;
            let n = number(words[3])
                .ok_or_else(|| format!("{:?} is not a count (a whole number)", words[3]))?;
            Ok(Step::Send {
                from: node(first)?,
                to: node(words[2])?,
                n,
            })
        }
        [first, "command", ..] => {
            let node = node(first)?;
            // The text as written, inner spacing included: after the node and the keyword.
            let text = line[first.len()..].trim_start()["command".len()..].trim();
            Ok(Step::Command {
                node,
                text: text.to_string(),
            })
        }
        [first, ..] => Err(if node(first).is_ok() {
            "after a node, expected `sends <node> <n>` or `command <text>`".to_string()
        } else {
            format!("unknown step {first:?}: {STEPS}")
        }),
        [] => Err(STEPS.into()),
    }
}

fn keyword(word: &str, expected: &str) -> Result<(), String> {
    if word == expected {
        Ok(())
    } else {
        Err(format!("expected `{expected}`, found {word:?}"))
    }
}

/// `n3` or `3`.
fn node(word: &str) -> Result<NodeId, String> {
    number(word.strip_prefix('n').unwrap_or(word))
        .map(NodeId)
        .ok_or_else(|| format!("{word:?} is not a node (write n3 or 3)"))
}

/// `300us`, `5ms`, `1.5s`: exact (no floating point), in whole microseconds.
fn duration(word: &str) -> Result<Duration, String> {
    let bad = || format!("{word:?} is not a duration (examples: 300us, 5ms, 1.5s)");
    let digits_end = word
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(word.len());
    let (num, unit) = word.split_at(digits_end);
    let per_unit: u128 = match unit {
        "us" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "" => return Err(format!("{word:?} needs a unit: us, ms or s")),
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {word:?} (use us, ms or s)"
            ));
        }
    };
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    if whole.is_empty() || (num.contains('.') && frac.is_empty()) {
        return Err(bad());
    }
    let frac = frac.trim_end_matches('0');
    // Digits past the sixth cannot be whole microseconds; refusing them early also
    // keeps the arithmetic below small.
    if frac.len() > 6 {
        return Err(format!("{word:?} is finer than a microsecond"));
    }
    let too_long = || format!("{word:?} is past the limit of {}", Dur(MAX_TIME));
    let whole: u128 = match number(whole) {
        Some(w) => w,
        // Only digits, so too many of them for a u128.
        None if whole.bytes().all(|b| b.is_ascii_digit()) => return Err(too_long()),
        None => return Err(bad()),
    };
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        number(frac).ok_or_else(bad)?
    };
    let scale = 10u128.pow(frac.len() as u32);
    if frac_value * per_unit % scale != 0 {
        return Err(format!("{word:?} is finer than a microsecond"));
    }
    let micros = whole
        .checked_mul(per_unit)
        .and_then(|w| w.checked_add(frac_value * per_unit / scale))
        .filter(|&us| us <= MAX_TIME.as_micros())
        .ok_or_else(too_long)?;
    // At most MAX_TIME, so it fits in a u64.
    Ok(Duration::from_micros(micros as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn err(text: &str) -> ScriptError {
        Script::parse(text).expect_err(text)
    }

    #[test]
    fn every_step_parses_and_prints_canonically() {
        let text = "# a comment\n\
                    \n\
                    n0 sends n1 5\n\
                    3 sends 0 7   # nodes without the n\n\
                    n2 command  pay  everyone \n\
                    snapshot from n2\n\
                    run 1.5ms\n\
                    crash n1 for 40ms\n\
                    crash 1 for 1.25s losing disk\n\
                    partition n0 n1|n2 n3\n\
                    run 300us\n\
                    heal\n\
                    at 2s\n\
                    tick\n";
        let s = Script::parse(text).unwrap();
        let canonical = "n0 sends n1 5\nn3 sends n0 7\nn2 command pay  everyone\n\
                         snapshot from n2\nrun 1500us\ncrash n1 for 40ms\n\
                         crash n1 for 1250ms losing disk\npartition n0 n1 | n2 n3\n\
                         run 300us\nheal\nat 2s\ntick\n";
        assert_eq!(s.to_string(), canonical);
        assert_eq!(Script::parse(canonical).unwrap(), s);
        assert_eq!(s.duration(), ms(2000));
        assert_eq!(s.initiators(), vec![NodeId(2)]);
        let times: Vec<u128> = s.timeline().map(|(t, _)| t.as_micros()).collect();
        assert_eq!(
            times,
            [
                0, 0, 0, 0, 0, 1500, 1500, 1500, 1500, 1800, 2_000_000, 2_000_000
            ]
        );
    }

    #[test]
    fn builder_matches_text() {
        let built = Script::new()
            .sends(NodeId(0), NodeId(1), 5)
            .command(NodeId(2), "anything at all")
            .run(ms(20))
            .partition(&[NodeId(0)], &[NodeId(1), NodeId(2)])
            .at(ms(120))
            .heal()
            .crash(NodeId(1), ms(40))
            .crash_losing_disk(NodeId(2), ms(1))
            .snapshot_from(NodeId(2))
            .tick();
        let text = "n0 sends n1 5\nn2 command anything at all\nrun 20ms\n\
                    partition n0 | n1 n2\nat 120ms\nheal\ncrash n1 for 40ms\n\
                    crash n2 for 1ms losing disk\nsnapshot from n2\ntick\n";
        assert_eq!(built.to_string(), text);
        assert_eq!(Script::parse(text).unwrap(), built);
    }

    #[test]
    #[should_panic(expected = "goes back in time")]
    fn builder_panics_where_the_text_is_an_error() {
        let _ = Script::new().at(ms(10)).at(ms(5));
    }

    #[test]
    fn durations_are_exact() {
        for (text, us) in [
            ("300us", 300),
            ("5ms", 5_000),
            ("1.5s", 1_500_000),
            ("0.1ms", 100),
            ("1.000001s", 1_000_001),
            ("2.50000000s", 2_500_000),
            ("0s", 0),
            ("1000000s", 1_000_000_000_000),
        ] {
            assert_eq!(duration(text), Ok(Duration::from_micros(us)), "{text}");
            assert_eq!(
                duration(&Dur(Duration::from_micros(us)).to_string()),
                duration(text)
            );
        }
        for (text, why) in [
            ("5", "needs a unit"),
            ("5m", "unknown unit"),
            ("1.5us", "finer than a microsecond"),
            ("0.0000001s", "finer than a microsecond"),
            ("1000001s", "past the limit"),
            (
                "99999999999999999999999999999999999999999s",
                "past the limit",
            ),
            (".5s", "not a duration"),
            ("5.s", "not a duration"),
            ("1.2.3s", "not a duration"),
            ("ms", "not a duration"),
            ("-1ms", "unknown unit"),
        ] {
            let e = duration(text).expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn errors_name_the_line_and_what_is_wrong() {
        for (text, line, what) in [
            ("run 5ms\nat 1ms", 2, "goes back in time"),
            ("heal", 1, "nothing to heal"),
            ("partition 0 | 1\nheal", 2, "advance the clock first"),
            ("partition 0 1 | 1", 1, "n1 is on both sides"),
            ("partition 0 0 | 1", 1, "n0 is twice on one side"),
            ("partition 0 1", 1, "no `|`"),
            ("partition | 1", 1, "at least one node on each side"),
            ("partition 0 | 1 | 2", 1, "one `|` only"),
            ("\n\n  n0 sends n0 1", 3, "cannot send to itself"),
            ("n0 sends n1 -1", 1, "not a count"),
            ("n0 sends n1", 1, "expected `<node> sends <node> <n>`"),
            ("n0 command", 1, "needs text"),
            ("n0 command # only a comment", 1, "needs text"),
            ("nx sends n1 1", 1, "\"nx\" is not a node"),
            ("n0 pays n1 1", 1, "after a node"),
            ("snapshot of n1", 1, "expected `from`"),
            (
                "crash n1",
                1,
                "expected `crash <node> for <duration> [losing disk]`",
            ),
            ("crash n1 for 5ms losing memory", 1, "expected `disk`"),
            ("tick tock", 1, "expected `tick`"),
            ("sleep 5ms", 1, "unknown step \"sleep\""),
            ("at 999999s\nrun 2s", 2, "past the limit"),
        ] {
            let e = err(text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert_eq!(e.text, text.lines().nth(line - 1).unwrap());
            assert!(e.what.contains(what), "{text}: {e}");
            assert!(
                e.to_string().starts_with(&format!("script line {line} ")),
                "{e}"
            );
        }
    }

    #[test]
    fn send_commands_decode() {
        assert_eq!(send_command(NodeId(1), 5), b"send 1 5");
        assert_eq!(parse_send(b"send 1 5"), Some((NodeId(1), 5)));
        for bad in [
            &b"send 1"[..],
            b"send 1 5 6",
            b"send  1 5",
            b"send +1 5",
            b"send n1 5",
            b"give 1 5",
            b"send 1 \xff",
            b"send 4294967296 1",
        ] {
            assert_eq!(parse_send(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// Counts its ticks, to see that a scripted `tick` is a real one.
    struct Ticker(u32);
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Ticks(u32);
    impl Process for Ticker {
        type State = Ticks;
        fn on_tick(&mut self, _: &mut crate::Context) {
            self.0 += 1;
        }
        fn on_message(&mut self, _: &mut crate::Context, _: NodeId, _: &[u8]) {}
        fn snapshot(&self) -> Ticks {
            Ticks(self.0)
        }
        fn restore(&mut self, t: Ticks) {
            self.0 = t.0;
        }
    }

    fn ticks_at_end(sim: Sim<Ticker>, script: &Script) -> Vec<u32> {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let out = seen.clone();
        sim.script(script)
            .at_end("count", move |end| {
                out.borrow_mut().extend(end.processes().map(|(_, p)| p.0));
                Ok(())
            })
            .run_for(script.duration() + ms(1))
            .assert_ok();
        seen.take()
    }

    #[test]
    fn scripted_ticks_are_real_ticks() {
        use crate::Topology;
        let script = Script::parse("tick\nrun 5ms\ntick\ntick\nrun 1ms\ntick").unwrap();
        // Without periodic ticks, exactly the scripted ones.
        let sim = Sim::new(Topology::ring(2), |_| Ticker(0)).tick(None);
        assert_eq!(ticks_at_end(sim, &script), [4, 4]);
        // With them, both: the periodic ones at 0 and 5ms, and the 4 scripted.
        let sim = Sim::new(Topology::ring(2), |_| Ticker(0)).tick(Some(ms(5)));
        assert_eq!(ticks_at_end(sim, &script), [6, 6]);
    }

    #[test]
    fn partitions_end_at_the_heal_or_never() {
        use crate::Topology;
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Nothing;
        struct Idle;
        impl Process for Idle {
            type State = Nothing;
            fn on_message(&mut self, _: &mut crate::Context, _: NodeId, _: &[u8]) {}
            fn snapshot(&self) -> Nothing {
                Nothing
            }
            fn restore(&mut self, _: Nothing) {}
        }
        let s = Script::parse(
            "partition 0 | 1\nrun 5ms\npartition 2 | 3\nrun 5ms\nheal\npartition 0 | 3\n\
             tick\nsnapshot from 1",
        )
        .unwrap();
        let sim = Sim::new(Topology::grid(2, 2), |_| Idle).script(&s);
        let windows: Vec<(u128, u128)> = sim
            .partitions
            .iter()
            .map(|p| (p.start.as_millis(), p.end.as_millis()))
            .collect();
        assert_eq!(windows, [(0, 10), (5, 10), (10, Duration::MAX.as_millis())]);
        assert_eq!(sim.ticks_at, [ms(10)]);
        assert_eq!(sim.snapshots, [(ms(10), NodeId(1))]);
    }
}
