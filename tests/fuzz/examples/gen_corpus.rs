//! Writes the seed corpora under `tests/fuzz/corpus/<target>/`: real encodings made by
//! the real encoders (wire `Writer`, two `Core`s talking, `Envelope::to_bytes`,
//! `persist::encode` of snapshots taken by a real 4-node loopback cluster, peers files,
//! admin request lines, an interval log, `lean::Encoder` streams).
//!
//! ```sh
//! cargo +nightly run --manifest-path tests/fuzz/Cargo.toml --example gen_corpus -- tests/fuzz/corpus
//! # only the lean header seeds (lean_decoder, lean envelopes):
//! cargo +nightly run --manifest-path tests/fuzz/Cargo.toml --example gen_corpus -- tests/fuzz/corpus lean
//! ```
//!
//! Deterministic except the cluster snapshots (timing). Files are named by content
//! hash, as libFuzzer names its own, so re-running adds rather than duplicates.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use shutter_fuzz::core_ops::{self, Harness, Op, new_core};

#[path = "../src/sealed.rs"]
mod sealed;
use shutter_cli::admin::{Request, auth_line};
use shutter_cli::peers::{PeerEntry, PeersFile};
use shutter_snapshot::bank::{Bank, BankConfig, BankState, encode_transfer};
use shutter_snapshot::chandy_lamport::ClControl;
use shutter_snapshot::checkpoint::{self, Checkpoint};
use shutter_snapshot::recovery::{Change, Epoch, RecoveryMsg};
use shutter_snapshot::report::{IntervalLog, new_histogram};
use shutter_snapshot::runtime::{LocalCluster, NodeConfig, NodeEvent};
use shutter_snapshot::lean;
use shutter_snapshot::wire::{
    AppHeader, Control, Envelope, LeanApp, LeanHead, LocalReport, RecordedMessage, SnapshotId,
};
use shutter_snapshot::{AbortReason, AbortWhy, GlobalSnapshot, Timings, persist};
use shutter_transport::faults::{FaultPlan, LinkFaults, LinkOverride, LossModel, Partition};
use shutter_transport::wire::{DataFrame, Header, Writer};
use shutter_transport::{Config, Core, Time};
use shutter_vclock::compact::{CompactClock, CompactConfig, Encoder, Entries};
use shutter_vclock::{NodeId, VClock};

struct Out {
    root: PathBuf,
    counts: BTreeMap<&'static str, usize>,
}

impl Out {
    fn put(&mut self, target: &'static str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        std::fs::write(dir.join(format!("seed-{:016x}", h.finish())), bytes).unwrap();
        *self.counts.entry(target).or_default() += 1;
    }
}

fn header(pn: u64) -> Header {
    Header {
        sender: NodeId(1),
        sender_incarnation: 7,
        dest_incarnation: core_ops::INCARNATION,
        packet_number: pn,
    }
}

fn datagrams(out: &mut Out) {
    let mut w = Writer::new(&header(0), 1200);
    assert!(w.push_ping());
    out.put("datagram", &w.finish());

    let mut w = Writer::new(&header(5), 1200);
    w.push_ack(250, &[(90, 100), (50, 60), (10, 10)], 64)
        .unwrap();
    out.put("datagram", &w.finish());

    let payload = b"0123456789";
    let mut w = Writer::new(&header(300), 1200);
    assert!(w.push_data(&DataFrame {
        message_id: 3,
        index: 1,
        count: 3,
        total_len: 30,
        sent_at: 1_234_567,
        payload,
    }));
    w.push_ack(17, &[(2, 4)], 64).unwrap();
    assert!(w.push_ping());
    out.put("datagram", &w.finish());
}

/// Applies `op` to our core and appends it to the script.
fn step(us: &mut Harness, op: Op<'_>, script: &mut Vec<u8>) {
    script.extend_from_slice(&core_ops::encode(std::slice::from_ref(&op)));
    us.apply(&op);
}

/// Two real cores: peer `A` (node 1) and the fuzz target's core (node 0, driven through
/// the same `Harness` the target uses), talking for `rounds` milliseconds. A drops every
/// `drop_every`-th datagram it would deliver to us (0: none). Every datagram we receive
/// also becomes a seed of the raw-datagram target. `sealed`: both cores seal with the
/// test key (seeds for `sealed_datagram`).
fn conversation(out: &mut Out, rounds: u32, drop_every: usize, big: bool, sealed: bool) -> Vec<u8> {
    let base = if sealed {
        sealed::sealed_config()
    } else {
        Config::default()
    };
    let raw_target = if sealed {
        "sealed_datagram"
    } else {
        "datagram"
    };
    let mut us = if sealed {
        let mut h = Harness::new(new_core(base.clone()), sealed::check_sealed);
        h.repair_crc = false;
        h
    } else {
        Harness::default()
    };
    us.sent = Some(Vec::new());
    let mut a = Core::new(Config {
        local: NodeId(1),
        incarnation: 7,
        ..base
    })
    .unwrap();
    a.add_peer(NodeId(0));
    let mut script = Vec::new();
    let now = us.now;
    a.send(now, NodeId(0), b"hello".to_vec()).unwrap();
    if big {
        a.send(now, NodeId(0), vec![7; 3000]).unwrap();
    }
    step(
        &mut us,
        Op::Send {
            to_second: false,
            urgent: false,
            len: 40,
        },
        &mut script,
    );
    step(
        &mut us,
        Op::Send {
            to_second: false,
            urgent: true,
            len: 8,
        },
        &mut script,
    );
    let mut n = 0usize;
    for _ in 0..rounds {
        let now = us.now;
        let mut to_us = Vec::new();
        while let Some(t) = a.poll_transmit(now) {
            to_us.push(t.bytes);
        }
        while a.poll_event().is_some() {}
        for d in to_us {
            n += 1;
            if drop_every != 0 && n % drop_every == 0 {
                continue;
            }
            out.put(raw_target, &d);
            step(
                &mut us,
                Op::Datagram {
                    from: 0,
                    repair: true,
                    bytes: &d,
                },
                &mut script,
            );
        }
        for (_, d) in us.sent.as_mut().unwrap().drain(..) {
            a.handle_datagram(now, NodeId(0), &d);
        }
        step(&mut us, Op::Advance(1000), &mut script);
        a.handle_timeout(us.now);
    }
    step(&mut us, Op::ToTimeout, &mut script);
    let acked = a.stats().messages_acked;
    println!(
        "conversation: {} script bytes, we delivered {}, peer delivered {}, peer acked {acked}",
        script.len(),
        us.delivered,
        a.stats().messages_delivered
    );
    script
}

fn core_scripts(out: &mut Out) {
    let s = conversation(out, 30, 0, false, false);
    out.put("core_datagram", &s);
    let s = conversation(out, 20, 3, true, false);
    out.put("core_datagram", &s);
    let s = conversation(out, 30, 0, false, true);
    out.put("sealed_datagram", &s);
    let s = conversation(out, 20, 3, true, true);
    out.put("sealed_datagram", &s);
    // A datagram from a non-member, one from ourselves, a raw corrupt one, timers.
    let mut w = Writer::new(&header(1), 1200);
    w.push_ping();
    let d = w.finish();
    let ops = [
        Op::Monitor {
            second: true,
            on: true,
        },
        Op::Datagram {
            from: 3,
            repair: true,
            bytes: &d,
        },
        Op::Datagram {
            from: 2,
            repair: true,
            bytes: &d,
        },
        Op::Datagram {
            from: 0,
            repair: false,
            bytes: &d[..d.len() - 1],
        },
        Op::Expedite,
        Op::ToTimeout,
        Op::Advance(6_000_000),
    ];
    out.put("core_datagram", &core_ops::encode(&ops));
}

fn id(n: u32, s: u64) -> SnapshotId {
    SnapshotId {
        initiator: NodeId(n),
        s,
    }
}

fn report() -> LocalReport {
    LocalReport {
        id: id(0, 1 << 55),
        state: postcard::to_allocvec(&BankState { balance: 950 }).unwrap(),
        cut: VClock::from_entries(vec![1 << 55, (1 << 55) + 17, 0, (1 << 55) + 3]),
        cut_at: Time(1_700_000_000_000_000),
        channels: vec![(
            NodeId(1),
            vec![RecordedMessage {
                ts: VClock::from_entries(vec![(1 << 55) - 1, (1 << 55) + 16]),
                payload: encode_transfer(50),
            }],
        )],
        life: 1 << 55,
        seen: vec![(NodeId(1), 1 << 55), (NodeId(3), (1 << 55) + 9)],
        counts: Some(shutter_snapshot::CutCounts {
            sent: vec![(NodeId(1), 4), (NodeId(3), 2)],
            delivered: vec![(NodeId(1), 1 << 55, 3)],
            lost: vec![(NodeId(3), (1 << 55) + 9, 1)],
        }),
    }
}

fn envelopes(out: &mut Out) {
    let abort = AbortReason {
        missing: vec![NodeId(2), NodeId(3)],
        why: AbortWhy::Unreachable(NodeId(2)),
    };
    let mattern: Vec<Envelope<Control>> = vec![
        Envelope::App {
            header: AppHeader {
                ts: VClock::from_entries(vec![3, 0, 7]),
                joined: vec![id(2, 7)],
                life: 1,
                seq: 4,
            },
            payload: encode_transfer(42),
        },
        Envelope::Control(Control::Begin {
            id: id(0, 9),
            joined: vec![id(1, 3)],
        }),
        Envelope::Control(Control::Cut {
            report: Box::new(report()),
        }),
        Envelope::Control(Control::Expect {
            id: id(0, 9),
            counts: vec![(NodeId(1), 1, 3), (NodeId(2), 1, 0)],
        }),
        Envelope::Control(Control::Report(Box::new(report()))),
        Envelope::Control(Control::Done {
            id: id(0, 9),
            life: 1,
        }),
        Envelope::Control(Control::Abort {
            id: id(0, 9),
            reason: abort.clone(),
        }),
        Envelope::Control(Control::Lost { life: 1, upto: 9 }),
    ];
    for e in &mattern {
        out.put("envelope", &e.to_bytes());
    }
    let cl: Vec<Envelope<ClControl>> = vec![
        Envelope::Control(ClControl::Marker { id: id(1, 4) }),
        Envelope::Control(ClControl::Report(Box::new(report()))),
        Envelope::Control(ClControl::Done { id: id(1, 4) }),
        Envelope::Control(ClControl::Abort {
            id: id(1, 4),
            reason: AbortReason {
                missing: vec![],
                why: AbortWhy::Timeout,
            },
        }),
    ];
    for e in &cl {
        out.put("envelope", &e.to_bytes());
    }
    // The rollback protocol (issue 11), in the same envelope.
    let epoch = Epoch {
        at: 1_700_000_000_000_000,
        by: NodeId(1),
    };
    let add = Change::Add {
        node: NodeId(4),
        addr: "127.0.0.1:7004".into(),
        members: vec![NodeId(0), NodeId(1), NodeId(4)],
    };
    let remove = Change::Remove {
        node: NodeId(3),
        heir: Some(NodeId(1)),
    };
    for m in [
        RecoveryMsg::Halt(epoch, None),
        RecoveryMsg::Halt(epoch, Some(add.clone())),
        RecoveryMsg::Halted(
            epoch,
            vec![id(0, 9), id(1, 4)],
            vec![(NodeId(3), vec![id(1, 4)]), (NodeId(0), vec![id(1, 4)])],
        ),
        RecoveryMsg::Restore(epoch, id(1, 4), Some(remove), vec![(NodeId(0), NodeId(1))]),
        RecoveryMsg::Part(epoch, None),
        RecoveryMsg::Part(epoch, Some(Box::new(report()))),
        RecoveryMsg::Restored(epoch, true),
        RecoveryMsg::Resume(epoch, Some(id(1, 4))),
        RecoveryMsg::Resume(epoch, None),
    ] {
        out.put("envelope", &Envelope::<Control>::Recovery(m).to_bytes());
    }
}

fn clocks(out: &mut Out) {
    for c in [
        VClock::new(),
        VClock::from_entries(vec![1]),
        VClock::from_entries(vec![3, 0, 7]),
        VClock::from_entries(vec![(1 << 55) + 5, (1 << 55) + 1, 0, 1 << 55]),
        VClock::from_entries(vec![u64::MAX, 1]),
    ] {
        out.put("vclock", &postcard::to_allocvec(&c).unwrap());
    }
    for c in [
        CompactClock {
            base_back: 1,
            entries: Entries::Sparse(vec![(1, 1), (3, 2)]),
        },
        CompactClock {
            base_back: 0,
            entries: Entries::Dense(vec![5, 0, 9]),
        },
    ] {
        out.put("vclock", &postcard::to_allocvec(&c).unwrap());
    }

    // compact_decoder: a real encoder's stream, in order and reordered.
    let cfg = CompactConfig::default();
    let mut enc = Encoder::new(cfg);
    let mut clock = VClock::new();
    let mut msgs = Vec::new();
    for seq in 0..12u64 {
        clock.tick(NodeId(1));
        if seq % 3 == 0 {
            clock.tick(NodeId((seq % 5) as u32));
        }
        msgs.push((seq, enc.encode(seq, NodeId(1), &clock)));
        if seq % 2 == 0 {
            enc.on_ack(seq);
        }
    }
    let stream = |cfg_byte: u8, order: &[usize]| {
        let mut b = vec![cfg_byte];
        for &i in order {
            b.extend_from_slice(&postcard::to_allocvec(&msgs[i]).unwrap());
        }
        b
    };
    let in_order: Vec<usize> = (0..msgs.len()).collect();
    let shuffled = [0, 2, 1, 4, 3, 3, 6, 5, 8, 7, 11, 9, 10];
    out.put("compact_decoder", &stream(0x80, &in_order));
    out.put("compact_decoder", &stream(0x80, &shuffled));
    out.put("compact_decoder", &stream(0x13, &shuffled));
}

/// A small consistent bank snapshot built by hand (2 nodes, one transfer in flight).
fn handmade_snapshot() -> GlobalSnapshot {
    let (n0, n1) = (NodeId(0), NodeId(1));
    let bank = |b: u64| postcard::to_allocvec(&BankState { balance: b }).unwrap();
    let mut channels = BTreeMap::new();
    channels.insert(
        (n0, n1),
        vec![RecordedMessage {
            ts: VClock::from_entries(vec![2]),
            payload: encode_transfer(100),
        }],
    );
    channels.insert((n1, n0), vec![]);
    GlobalSnapshot {
        id: id(0, 3),
        states: [(n0, bank(900)), (n1, bank(1000))].into_iter().collect(),
        cuts: [
            (n0, VClock::from_entries(vec![3])),
            (n1, VClock::from_entries(vec![1, 2])),
        ]
        .into_iter()
        .collect(),
        channels,
        timings: Timings {
            started: Time(10),
            local_cuts: [(n0, Time(10)), (n1, Time(15))].into_iter().collect(),
            completed: Time(40),
        },
        control_messages: 5,
        counts: Default::default(),
    }
}

/// Snapshots taken by a real 4-node bank cluster on loopback (the README's example).
fn cluster_snapshots(want: usize) -> Vec<GlobalSnapshot> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cluster = LocalCluster::start(4, NodeConfig::default(), |id: NodeId| {
            Bank::new(id, BankConfig::default())
        })
        .await
        .expect("cluster starts");
        let mut snaps = Vec::new();
        for i in 0..want {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cluster.initiate(NodeId((i % 4) as u32)).await.unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let ev = tokio::time::timeout_at(deadline, cluster.next_event()).await;
                match ev {
                    Ok(Some((_, NodeEvent::Completed(s)))) => {
                        snaps.push(s);
                        break;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
        cluster.shutdown().await.unwrap();
        snaps
    })
}

fn snapshots(out: &mut Out) {
    let mut snaps = vec![handmade_snapshot()];
    snaps.extend(cluster_snapshots(3));
    for s in &snaps {
        let bytes = persist::encode(s);
        out.put("snapshot_file", &bytes);
        out.put("snapshot_inspect", &bytes);
    }
    // Checkpoints (format 2) of the cluster's snapshots as the store writes them: the
    // initiator's with the others' parts as replicas, a member's plain, and one that
    // inherited a removed member's part.
    for (seq, s) in snaps.iter().skip(1).enumerate() {
        let members: Vec<NodeId> = s.nodes().collect();
        let (Some(&first), Some(&last)) = (members.first(), members.last()) else {
            continue;
        };
        let me = s.id.initiator;
        let other = if me == first { last } else { first };
        for c in [
            Checkpoint {
                node: me,
                members: members.clone(),
                seq: seq as u64 + 1,
                part: s.part(me).expect("the initiator's part"),
                inherited: vec![],
                replicas: s.parts_except(me),
            },
            Checkpoint {
                node: other,
                members: members.clone(),
                seq: seq as u64 + 1,
                part: s.part(other).expect("a member's part"),
                inherited: vec![(NodeId(9), s.part(me).expect("the initiator's part"))],
                replicas: vec![],
            },
        ] {
            out.put("checkpoint_file", &checkpoint::encode(&c));
        }
    }
    println!(
        "snapshots: {} ({} from the cluster, recorded messages {:?})",
        snaps.len(),
        snaps.len() - 1,
        snaps
            .iter()
            .map(|s| s.recorded_messages())
            .collect::<Vec<_>>()
    );
}

fn peers_files(out: &mut Out) {
    let readme = r#"[[nodes]]
id = 0
addr = "127.0.0.1:7000"     # UDP; the admin channel defaults to the same port over TCP
[[nodes]]
id = 1
addr = "127.0.0.1:7001"
[[nodes]]
id = 2
addr = "127.0.0.1:7002"

[faults]                      # optional
seed = 7
[faults.default]
loss = { model = "bernoulli", p = 0.1 }
duplicate = 0.05
"#;
    out.put("peers_file", readme.as_bytes());
    let minimal = "key_file = \"cluster.key\"\n[[nodes]]\nid = 0\naddr = \"[::1]:9000\"\nadmin = \"127.0.0.1:9100\"\n";
    out.put("peers_file", minimal.as_bytes());
    let full = PeersFile {
        channels: Some("0->1 1->2 2->0".into()),
        nodes: (0..3)
            .map(|i| PeerEntry {
                id: NodeId(i),
                addr: format!("10.0.0.{}:7000", i + 1).parse().unwrap(),
                admin: (i == 1).then(|| "127.0.0.1:8001".parse().unwrap()),
            })
            .collect(),
        faults: Some(FaultPlan {
            seed: 3,
            default: LinkFaults {
                duplicate: 0.05,
                delay: Duration::from_micros(1500),
                jitter: Duration::from_millis(1),
                reorder: 0.1,
                reorder_delay: Duration::from_millis(5),
                corrupt: 0.01,
                bandwidth_bytes_per_sec: Some(1 << 20),
                ..LinkFaults::lossy(0.1)
            },
            links: vec![LinkOverride {
                from: NodeId(0),
                to: NodeId(1),
                faults: LinkFaults {
                    loss: LossModel::GilbertElliott {
                        p_good_to_bad: 0.01,
                        p_bad_to_good: 0.3,
                        loss_in_good: 0.0,
                        loss_in_bad: 1.0,
                    },
                    ..LinkFaults::default()
                },
            }],
            partitions: vec![Partition {
                start: Duration::from_secs(1),
                end: Duration::from_secs(3),
                side_a: vec![NodeId(0)],
                side_b: vec![NodeId(1), NodeId(2)],
                one_way: true,
            }],
        }),
        // Set through `..` so this keeps compiling while the struct grows (`key_file`).
        ..PeersFile::default()
    };
    let text = full.to_toml();
    assert_eq!(
        PeersFile::parse(&text, Path::new("seed.toml")).unwrap(),
        full
    );
    out.put("peers_file", text.as_bytes());
}

fn admin_lines(out: &mut Out) {
    for r in [
        Request::Status,
        Request::Snapshot {
            timeout: Duration::from_millis(1500),
        },
        Request::Snapshot {
            timeout: Duration::from_secs(600),
        },
    ] {
        out.put("admin_request", r.to_line().as_bytes());
    }
    out.put("admin_request", b"SNAPSHOT 30000\r\n");
    for line in [
        "ROLLBACK",
        "ROLLBACK n0@17",
        "REMOVE n3",
        "ADD n4 127.0.0.1:7004",
    ] {
        let r = Request::parse(line).expect("a valid request line");
        out.put("admin_request", r.to_line().as_bytes());
    }
    // admin_handshake: first byte 0 greeting, 1 AUTH line, 2 reply header.
    let nonce = "00112233445566778899aabbccddeeff";
    let mut put = |which: u8, line: &str| {
        let mut bytes = vec![which];
        bytes.extend_from_slice(line.as_bytes());
        out.put("admin_handshake", &bytes);
    };
    put(0, &format!("SHUTTER-ADMIN 1 {nonce}\n"));
    put(0, "SHUTTER-ADMIN 1 open\n");
    put(1, &auth_line(&sealed::ring(), nonce, "STATUS"));
    for reply in [
        "SNAPSHOT 1234\n",
        "ABORTED timed out\n",
        "STATUS {\"node\":\"n0\"}\n",
        "ERROR authentication failed\n",
        "ROLLEDBACK n0@17\n",
    ] {
        put(2, reply);
    }
}

fn key_files(out: &mut Out) {
    out.put("keyring", sealed::ring().to_text().as_bytes());
    let two = format!(
        "# rotation: 2 is accepted, 1 still sends\n1 {}\n2 {}  # new\nsend 1\n",
        "5a".repeat(32),
        "0123456789abcdef".repeat(4)
    );
    out.put("keyring", two.as_bytes());
}

fn hlogs(out: &mut Out) {
    let mut log = IntervalLog {
        start: Some(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        ..IntervalLog::default()
    };
    for (i, tag) in ["delivery", "snapshot"].into_iter().enumerate() {
        let mut h = new_histogram();
        for v in [120u64, 450, 900, 3_000, 12_000, 250_000] {
            h.record(v * (i as u64 + 1)).unwrap();
        }
        log.push(Duration::from_secs(1), Duration::from_secs(1), tag, h);
    }
    let mut bytes = Vec::new();
    log.write(&mut bytes).unwrap();
    out.put("hlog", &bytes);
}

/// Streams for `lean_decoder`: what a sender's `lean::Encoder` makes on one channel
/// (acknowledged one message late), as `(op, id, LeanApp)` triples, plus prunes.
fn lean_streams(out: &mut Out) {
    let to = NodeId(0);
    for (n, messages) in [(3usize, 6u64), (8, 12), (40, 5)] {
        let mut enc = lean::Encoder::default();
        let mut clock = vec![1u64 << 55; n];
        let mut stream = Vec::new();
        let mut envs = Vec::new();
        for mid in 0..messages {
            clock[1] += 2;
            clock[(mid as usize * 7) % n] += 1;
            let header = AppHeader {
                ts: VClock::from_entries(clock.clone()),
                joined: if mid == 3 { vec![id(2, 7)] } else { vec![] },
                life: 1_800_000_000_000_000,
                seq: mid + 1,
            };
            let app = enc.encode(to, mid, &header, encode_transfer(mid));
            enc.sent(to, mid, &header, app.keep, header.ts.get(NodeId(1)));
            if mid > 0 {
                enc.acked(to, mid - 1);
            }
            envs.push(Envelope::<Control>::Lean(app.clone()).to_bytes());
            stream.extend(postcard::to_allocvec(&(0u8, mid, app)).unwrap());
            if mid % 4 == 3 {
                let prune = LeanApp {
                    keep: false,
                    head: LeanHead::Whole {
                        life: 0,
                        seq: 0,
                        ts: VClock::new(),
                    },
                    joined: vec![],
                    payload: vec![],
                };
                stream.extend(postcard::to_allocvec(&(2u8, mid + 1, prune)).unwrap());
            }
        }
        out.put("lean_decoder", &stream);
        for e in envs {
            out.put("envelope", &e);
        }
    }
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("tests/fuzz/corpus"));
    let mut out = Out {
        root,
        counts: BTreeMap::new(),
    };
    // `-- DIR lean` writes only the lean header seeds.
    if std::env::args().nth(2).as_deref() == Some("lean") {
        lean_streams(&mut out);
        for (t, n) in &out.counts {
            println!("{t}: {n} seeds");
        }
        return;
    }
    lean_streams(&mut out);
    datagrams(&mut out);
    core_scripts(&mut out);
    envelopes(&mut out);
    clocks(&mut out);
    snapshots(&mut out);
    peers_files(&mut out);
    admin_lines(&mut out);
    hlogs(&mut out);
    key_files(&mut out);
    for (t, n) in &out.counts {
        println!("{t}: {n} seeds");
    }
}
