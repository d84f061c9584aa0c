//! Helpers shared by the fuzz targets and by the seed-corpus generator
//! (`examples/gen_corpus.rs`).
//!
//! Two decoders are guarded by a checksum (datagrams by a trailing CRC32C, snapshot files
//! by a CRC32C in the header). Random mutations almost never keep a checksum valid, so
//! the targets decode every input twice: as is (the checksum check itself is fuzzed) and
//! with the checksum *repaired* (everything behind the check is fuzzed).

use std::time::Duration;

use shutter_transport::wire::{self, CRC_LEN, MIN_DATAGRAM_LEN};
use shutter_transport::{Config, Core, Event, Time};
use shutter_vclock::NodeId;

/// Whether targets skip inputs that hit a known, already reported bug (so fuzzing can
/// go past it). On unless the environment sets `SHUTTER_FUZZ_NO_FILTER` (to reproduce
/// the files under `tests/fuzz/regressions/`).
pub fn filter_known_bugs() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SHUTTER_FUZZ_NO_FILTER").is_none())
}

/// `bytes` with its last four bytes replaced by the CRC32C of the rest, as a datagram
/// sender computes it; `None` if too short to be a datagram.
pub fn repair_datagram_crc(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < MIN_DATAGRAM_LEN {
        return None;
    }
    let body = &bytes[..bytes.len() - CRC_LEN];
    let mut out = body.to_vec();
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    Some(out)
}

/// `bytes` with the body length and CRC32C fields of a snapshot-file header rewritten to
/// match the body; `None` if shorter than the header.
pub fn repair_snapshot_header(bytes: &[u8]) -> Option<Vec<u8>> {
    use shutter_snapshot::persist::HEADER_LEN;
    if bytes.len() < HEADER_LEN {
        return None;
    }
    let mut out = bytes.to_vec();
    let body_len = (bytes.len() - HEADER_LEN) as u64;
    let crc = crc32c::crc32c(&bytes[HEADER_LEN..]);
    out[10..18].copy_from_slice(&body_len.to_le_bytes());
    out[18..22].copy_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// The scripted driver of the `core_datagram` target: a [`Core`] (node 0, incarnation 1,
/// peers 1 and 2, default config otherwise) fed with a byte-coded list of operations.
///
/// Encoding, repeated until the input ends (at most [`core_ops::MAX_OPS`] operations, and
/// [`core_ops::Harness::run`] stops early once the core has sent
/// [`core_ops::MAX_TRANSMITS_PER_INPUT`] datagrams):
///
/// | first byte `t` (`t & 7`) | operation | then |
/// |---|---|---|
/// | 0 | `handle_datagram`; bit 3 set = bytes as is, clear = CRC repaired; bits 4-5 pick `from`: node 1, 2, 0 (itself) or 9 (no peer) | `len: u16 le`, `len` bytes |
/// | 1 | advance the clock by `micros`, `handle_timeout` | `micros: u32 le` |
/// | 2 | jump to `poll_timeout()` (if any), `handle_timeout` | - |
/// | 3 | `send` (bit 3: `send_urgent`) to node 1 (bit 4 clear) or 2 | `len: u16 le` (message of `len & 0x1fff` bytes) |
/// | 4 | `expedite` | - |
/// | 5 | `monitor` node 1 / 2 (bit 4), on (bit 3) or off | - |
/// | 6, 7 | advance the clock by 1 ms, `handle_timeout` | - |
///
/// After every operation `poll_transmit` and `poll_event` are drained and checked.
pub mod core_ops {
    use super::*;

    /// Operations per input, so one input stays fast. 256 until the 10 M runs: each
    /// operation costs in proportion to what is in flight (`expedite` sorts every
    /// in-flight fragment, a timeout scans every in-flight packet), so long scripts were
    /// the slow ones; the seed conversations need at most 35.
    pub const MAX_OPS: usize = 64;
    /// Largest message an `Op::Send` queues (the length is masked with it): 8 fragments
    /// still exercise fragmentation, while 64 KiB messages made every retransmission
    /// timeout resend ~100 datagrams and slowed the target to ~50 inputs/s.
    pub const MAX_SEND_LEN: u16 = 0x1fff;
    /// `poll_transmit` calls in a row before we call it a livelock.
    pub const MAX_TRANSMITS_PER_STEP: usize = 100_000;
    /// Datagrams the core may send per input: once an operation's drain (always run to
    /// the end, every datagram checked) brings the total to this, [`Harness::run`] skips
    /// the remaining operations. The cost of an input is mostly the datagrams the core
    /// builds and the harness decodes to check them: without a bound, 20 `expedite`s
    /// and 187 timeouts made one input send 52,377 datagrams (tests/fuzz/README.md,
    /// "Per-input cost").
    pub const MAX_TRANSMITS_PER_INPUT: usize = 128;
    /// The clock at the start.
    pub const START: Time = Time(1_000_000);
    /// Our node.
    pub const LOCAL: NodeId = NodeId(0);
    /// Our incarnation.
    pub const INCARNATION: u64 = 1;

    /// One operation.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Op<'a> {
        /// A datagram from `from` (see the table for the choices).
        Datagram {
            /// Which sender (0..4).
            from: u8,
            /// Repair the CRC before handing it over.
            repair: bool,
            /// The datagram.
            bytes: &'a [u8],
        },
        /// `now += micros`.
        Advance(u32),
        /// Jump to the next deadline.
        ToTimeout,
        /// An application send.
        Send {
            /// Node 1 (false) or 2 (true).
            to_second: bool,
            /// `send_urgent`.
            urgent: bool,
            /// Message length.
            len: u16,
        },
        /// `expedite`.
        Expedite,
        /// `monitor`.
        Monitor {
            /// Node 1 (false) or 2 (true).
            second: bool,
            /// On or off.
            on: bool,
        },
    }

    fn from_node(sel: u8) -> NodeId {
        match sel & 3 {
            0 => NodeId(1),
            1 => NodeId(2),
            2 => LOCAL,
            _ => NodeId(9),
        }
    }

    /// Decodes operations from fuzz input (never fails: a truncated tail is cut short).
    pub fn parse(mut data: &[u8]) -> Vec<Op<'_>> {
        let mut ops = Vec::new();
        while let Some((&t, rest)) = data.split_first() {
            if ops.len() == MAX_OPS {
                break;
            }
            data = rest;
            let u16_le = |d: &mut &[u8]| -> u16 {
                let v = match d {
                    [a, b, ..] => u16::from_le_bytes([*a, *b]),
                    [a] => u16::from(*a),
                    [] => 0,
                };
                *d = &d[d.len().min(2)..];
                v
            };
            let op = match t & 7 {
                0 => {
                    let len = usize::from(u16_le(&mut data)).min(data.len());
                    let (bytes, rest) = data.split_at(len);
                    data = rest;
                    Op::Datagram {
                        from: (t >> 4) & 3,
                        repair: t & 8 == 0,
                        bytes,
                    }
                }
                1 => {
                    let mut b = [0u8; 4];
                    let n = data.len().min(4);
                    b[..n].copy_from_slice(&data[..n]);
                    data = &data[n..];
                    Op::Advance(u32::from_le_bytes(b))
                }
                2 => Op::ToTimeout,
                3 => Op::Send {
                    to_second: t & 16 != 0,
                    urgent: t & 8 != 0,
                    len: u16_le(&mut data) & MAX_SEND_LEN,
                },
                4 => Op::Expedite,
                5 => Op::Monitor {
                    second: t & 16 != 0,
                    on: t & 8 != 0,
                },
                _ => Op::Advance(1000),
            };
            ops.push(op);
        }
        ops
    }

    /// Encodes operations (inverse of [`parse`]), for seeds.
    pub fn encode(ops: &[Op<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Datagram {
                    from,
                    repair,
                    bytes,
                } => {
                    out.push(((from & 3) << 4) | if *repair { 0 } else { 8 });
                    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                    out.extend_from_slice(bytes);
                }
                Op::Advance(m) => {
                    out.push(1);
                    out.extend_from_slice(&m.to_le_bytes());
                }
                Op::ToTimeout => out.push(2),
                Op::Send {
                    to_second,
                    urgent,
                    len,
                } => {
                    out.push(3 | if *urgent { 8 } else { 0 } | if *to_second { 16 } else { 0 });
                    out.extend_from_slice(&len.to_le_bytes());
                }
                Op::Expedite => out.push(4),
                Op::Monitor { second, on } => {
                    out.push(5 | if *on { 8 } else { 0 } | if *second { 16 } else { 0 })
                }
            }
        }
        out
    }

    /// The core under test: `config` with our id and incarnation, peers 1 and 2.
    pub fn new_core(config: Config) -> Core {
        let mut core = Core::new(Config {
            local: LOCAL,
            incarnation: INCARNATION,
            ..config
        })
        .expect("config is valid");
        core.add_peer(NodeId(1));
        core.add_peer(NodeId(2));
        core
    }

    /// Checks a datagram the plain core sent; returns its `(sender, sender incarnation)`.
    pub fn check_plain(bytes: &[u8]) -> (NodeId, u64) {
        let (h, _) = wire::decode(bytes).expect("the core sent an undecodable datagram");
        (h.sender, h.sender_incarnation)
    }

    /// A core and its clock.
    pub struct Harness {
        /// The core.
        pub core: Core,
        /// Its clock.
        pub now: Time,
        /// Datagrams it sent, `(to, bytes)`, if recording (for seeds).
        pub sent: Option<Vec<(NodeId, Vec<u8>)>>,
        /// Messages delivered so far.
        pub delivered: u64,
        /// Datagrams sent so far (see [`MAX_TRANSMITS_PER_INPUT`]).
        pub transmitted: usize,
        /// Checks each datagram the core sends and returns `(sender, sender incarnation)`.
        pub check: fn(&[u8]) -> (NodeId, u64),
        /// Whether `Op::Datagram { repair: true }` repairs the CRC (off for sealed cores,
        /// whose datagrams end in an AEAD tag instead).
        pub repair_crc: bool,
    }

    impl Default for Harness {
        /// A plain core with the default config.
        fn default() -> Self {
            Harness::new(new_core(Config::default()), check_plain)
        }
    }

    impl Harness {
        /// A harness around `core` (see [`new_core`]); `check` checks what it sends.
        pub fn new(core: Core, check: fn(&[u8]) -> (NodeId, u64)) -> Self {
            Harness {
                core,
                now: START,
                sent: None,
                delivered: 0,
                transmitted: 0,
                check,
                repair_crc: true,
            }
        }

        /// Applies the operations of a fuzz input (see [`parse`]) until they end or the
        /// core has sent [`MAX_TRANSMITS_PER_INPUT`] datagrams.
        pub fn run(&mut self, data: &[u8]) {
            for op in parse(data) {
                if self.transmitted >= MAX_TRANSMITS_PER_INPUT {
                    break;
                }
                self.apply(&op);
            }
        }

        /// Applies one operation, then drains and checks every output.
        pub fn apply(&mut self, op: &Op<'_>) {
            let c = &mut self.core;
            match op {
                Op::Datagram {
                    from,
                    repair,
                    bytes,
                } => {
                    let from = from_node(*from);
                    let repaired = if *repair && self.repair_crc {
                        repair_datagram_crc(bytes)
                    } else {
                        None
                    };
                    c.handle_datagram(self.now, from, repaired.as_deref().unwrap_or(bytes));
                }
                Op::Advance(m) => {
                    self.now += Duration::from_micros(u64::from(*m));
                    c.handle_timeout(self.now);
                }
                Op::ToTimeout => {
                    if let Some(t) = c.poll_timeout() {
                        self.now = self.now.max(t);
                    }
                    c.handle_timeout(self.now);
                }
                Op::Send {
                    to_second,
                    urgent,
                    len,
                } => {
                    let to = if *to_second { NodeId(2) } else { NodeId(1) };
                    let msg: Vec<u8> = (0..*len).map(|i| i as u8).collect();
                    let _ = if *urgent {
                        c.send_urgent(self.now, to, msg)
                    } else {
                        c.send(self.now, to, msg)
                    };
                }
                Op::Expedite => c.expedite(self.now),
                Op::Monitor { second, on } => {
                    let peer = if *second { NodeId(2) } else { NodeId(1) };
                    c.monitor(self.now, peer, *on);
                }
            }
            self.drain();
        }

        /// Drains `poll_transmit` and `poll_event`, checking what comes out.
        pub fn drain(&mut self) {
            let c = &mut self.core;
            let max = c.config().max_datagram;
            let mut n = 0;
            while let Some(t) = c.poll_transmit(self.now) {
                n += 1;
                assert!(
                    n <= MAX_TRANSMITS_PER_STEP,
                    "poll_transmit never returns None"
                );
                assert!(
                    t.to == NodeId(1) || t.to == NodeId(2),
                    "datagram to a non-peer {:?}",
                    t.to
                );
                assert!(
                    t.bytes.len() <= max,
                    "datagram of {} bytes exceeds max_datagram {max}",
                    t.bytes.len()
                );
                self.transmitted += 1;
                let (sender, incarnation) = (self.check)(&t.bytes);
                assert_eq!(sender, LOCAL);
                assert_eq!(incarnation, INCARNATION);
                if let Some(s) = &mut self.sent {
                    s.push((t.to, t.bytes));
                }
            }
            let max_message = c.config().max_message;
            while let Some(ev) = c.poll_event() {
                if let Event::Delivered { from, bytes, .. } = &ev {
                    self.delivered += 1;
                    assert!(*from == NodeId(1) || *from == NodeId(2));
                    assert!(bytes.len() <= max_message);
                }
            }
            if let Some(t) = c.poll_timeout() {
                // A deadline in the past is fine (handle_timeout runs it), but it must be
                // a real instant, not an overflowed one.
                assert!(t.as_micros() < u64::MAX / 2, "absurd deadline {t:?}");
            }
        }
    }
}
