//! The acceptance test of sealed datagrams and the authenticated admin channel: an
//! attacker on the same host as a secured four-node cluster (raw sockets, so root).
//!
//! `loopback_attack`:
//! 1. four `shutter node` processes on 127.0.0.1 with a cluster key and no `[faults]`
//!    table: the network drops and duplicates nothing, so every increase of a drop
//!    counter is the attack's;
//! 2. a raw-socket sniffer captures real datagrams n1 -> n0;
//! 3. while snapshots run back to back through every node, about 20 000 datagrams are
//!    injected into n0 from n1's spoofed address: the captured ones replayed, the captured
//!    ones with 1-4 bits flipped, datagrams sealed with another cluster key (made by an
//!    in-process `Core` pair), forged sealed datagrams (random tags; "n1 restarted with
//!    incarnation 2^62"; packet numbers far ahead), plain CRC-valid forgeries (the attack
//!    on the unsealed format: a PING from incarnation 2^62, DATA with garbage), and
//!    garbage and truncated datagrams;
//! 4. every snapshot completes and verifies (cut, channels, money total 4000), and n0's
//!    `dropped` counters grew by exactly the number of injected datagrams, each reason by
//!    exactly what the receive path must say for the datagrams injected (a replay is
//!    `replayed`, anything failing authentication `auth_failed`, a plain datagram
//!    `wrong_protection`, an unparsable clear header `malformed`, another sender id in
//!    the header `unknown_peer`); nothing was `stale_incarnation` (n0 never believed n1
//!    restarted); the nodes stop with no transfer delivered twice and the money adding up;
//! 5. the admin channel refuses a client without the key and one with another key, and
//!    counts both.
//!
//! Without the privilege for raw sockets it prints `SKIPPED cluster_attack: <reason>`
//! and passes, except when `CI` is set (CI runs as root, so a skip would hide a broken
//! environment). `SHUTTER_ATTACK_SEED=N` replays the attack's random choices (which
//! bits flip, which datagrams are replayed, the garbage); the captured traffic they
//! apply to differs from run to run.
//!
//! `harness = false`: this binary is also the `shutter` executable of its child
//! processes (`shutter_tests::procs::test_main`), so `main` is ours.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shutter_cli::node::{Dropped, NodeStatus};
use shutter_snapshot::bank::BankInvariant;
use shutter_snapshot::{persist, verify};
use shutter_tests::procs::{
    Launcher, NodeProcess, loopback_addrs, saved_path, temp_dir, test_main, text, write_peers,
};
use shutter_tests::spoof::{self, Sniffer, Spoofer, is_permission_denied};
use shutter_transport::auth::{Auth, KeyRing, TAG_LEN};
use shutter_transport::wire::{self, DataFrame, DecodeError, Header, Writer};
use shutter_transport::{Config, Core, Time};
use shutter_vclock::NodeId;

/// Nodes in the cluster.
const NODES: usize = 4;
/// The bank's money (every node opens with 1000).
const TOTAL_MONEY: u64 = 1_000 * NODES as u64;
/// Limit for one `shutter` command (their own timeouts are shorter).
const COMMAND_LIMIT: Duration = Duration::from_secs(60);
/// How long a node process may take to print its ready line.
const READY_LIMIT: Duration = Duration::from_secs(20);
/// Replays the attack's random choices.
const SEED_ENV: &str = "SHUTTER_ATTACK_SEED";
/// Real datagrams n1 -> n0 to capture, and for how long at most.
const SNIFF_COUNT: usize = 200;
const SNIFF_LIMIT: Duration = Duration::from_secs(10);
/// Fewest captured datagrams the attack can work with.
const SNIFF_MIN: usize = 50;
/// Datagrams injected per kind.
const REPLAYS: usize = 5_000;
const BIT_FLIPS: usize = 5_000;
const WRONG_KEY: usize = 3_000;
const FORGED_SEALED: usize = 2_000;
const FORGED_PLAIN: usize = 2_000;
const GARBAGE: usize = 3_000;
/// Injection pacing: datagrams per burst and the pause after each, so that n0's
/// receive buffer never overflows (a kernel drop would make the counters not add up).
const BURST: usize = 40;
const BURST_PAUSE: Duration = Duration::from_millis(15);
/// Before a burst, wait while n0's receive queue holds more than this many bytes.
const MAX_QUEUE_BYTES: u64 = 128 * 1024;
/// Longest the whole injection may take.
const FLOOD_LIMIT: Duration = Duration::from_secs(20);
/// Snapshots at most during the flood (the flood's length bounds them anyway).
const MAX_SNAPSHOTS_DURING: usize = 1_000;

fn node_args<'a>(id: &'a str, peers: &'a str) -> Vec<&'a str> {
    vec![
        "--id",
        id,
        "--peers",
        peers,
        "--tick",
        "10ms",
        "--snapshot-timeout",
        "8s",
        // Bound: the nodes stop by themselves even if this process is killed.
        "--duration",
        "120s",
    ]
}

/// What the attacker sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Replay,
    BitFlip,
    WrongKey,
    ForgedSealed,
    ForgedPlain,
    Garbage,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Replay,
        Kind::BitFlip,
        Kind::WrongKey,
        Kind::ForgedSealed,
        Kind::ForgedPlain,
        Kind::Garbage,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Replay => "replay",
            Kind::BitFlip => "bit_flip",
            Kind::WrongKey => "wrong_key",
            Kind::ForgedSealed => "forged_sealed",
            Kind::ForgedPlain => "forged_plain",
            Kind::Garbage => "garbage",
        }
    }
}

/// The datagram counters of a node's `dropped` object (everything but `admin_refused`),
/// by name.
fn datagram_counters(d: &Dropped) -> BTreeMap<&'static str, u64> {
    d.by_reason()
        .into_iter()
        .filter(|(why, _)| *why != "admin_refused")
        .collect()
}

fn delta(before: &Dropped, after: &Dropped) -> BTreeMap<&'static str, i64> {
    let b = datagram_counters(before);
    datagram_counters(after)
        .into_iter()
        .map(|(k, v)| (k, v as i64 - b[k] as i64))
        .collect()
}

/// One injected datagram and the counter n0 must charge it to.
struct Injection {
    kind: Kind,
    bytes: Vec<u8>,
    expect: &'static str,
}

/// The counter n0 (id 0, secured) charges an inauthentic datagram from n1's address to:
/// the sealed receive path (`Core::handle_sealed` and `admit_header`) in terms of the
/// public wire API. Replays are not inauthentic and are not judged here.
fn judge(bytes: &[u8]) -> &'static str {
    match wire::decode_sealed_header(bytes) {
        Err(DecodeError::WrongProtection(_)) => "wrong_protection",
        Err(_) => "malformed",
        // The driver resolved the source address to n1; a header naming anyone else is a
        // sender mismatch, counted with unknown peers.
        Ok((h, _, _)) if h.sender != NodeId(1) => "unknown_peer",
        Ok((h, _, _)) if h.sender_incarnation == 0 => "malformed",
        // Any change to an authentic datagram, or any other key, fails the tag.
        Ok(_) => "auth_failed",
    }
}

/// What the captured traffic tells about the two lives involved.
struct Observed {
    /// n1's incarnation.
    n1_incarnation: u64,
    /// n0's incarnation as n1 knows it.
    n0_incarnation: u64,
    /// The highest packet number n1 -> n0 captured.
    max_packet: u64,
}

fn observe(captured: &[Vec<u8>]) -> Observed {
    let headers: Vec<Header> = captured
        .iter()
        .map(|d| {
            wire::decode_sealed_header(d)
                .unwrap_or_else(|e| panic!("a captured n1 -> n0 datagram is not sealed: {e}"))
                .0
        })
        .collect();
    for h in &headers {
        assert_eq!(h.sender, NodeId(1), "captured datagram from {:?}", h.sender);
    }
    let last = headers.last().expect("captured something");
    Observed {
        n1_incarnation: last.sender_incarnation,
        n0_incarnation: last.dest_incarnation,
        max_packet: headers.iter().map(|h| h.packet_number).max().unwrap_or(0),
    }
}

/// Datagrams n1 -> n0 as a real node would send them, but sealed with another cluster key:
/// an in-process `Core` pair (n1 and n0, the real incarnations) under key `[0x42; 32]`
/// exchanges messages, and every datagram of the "n1" side is kept (PINGs, DATA of one
/// and several fragments, ACKs).
fn wrong_key_datagrams(seen: &Observed, want: usize) -> Vec<Vec<u8>> {
    let ring = KeyRing::single(1, [0x42; 32]);
    let config = |local: u32, incarnation: u64| Config {
        local: NodeId(local),
        incarnation,
        auth: Auth::Keys(ring.clone()),
        ..Config::default()
    };
    let mut n1 = Core::new(config(1, seen.n1_incarnation)).expect("valid config");
    let mut n0 = Core::new(config(0, seen.n0_incarnation.max(1))).expect("valid config");
    n1.add_peer(NodeId(0));
    n0.add_peer(NodeId(1));
    let mut now = Time(1_000_000);
    let mut out = Vec::new();
    for step in 0..50_000usize {
        if out.len() >= want {
            break;
        }
        if step % 3 == 0 && n1.can_send(NodeId(0)) {
            // 50 bytes to 3 kB: one fragment or several.
            let len = 50 + (step * 997) % 3_000;
            let _ = n1.send(now, NodeId(0), vec![step as u8; len]);
        }
        n1.handle_timeout(now);
        n0.handle_timeout(now);
        while let Some(t) = n1.poll_transmit(now) {
            n0.handle_datagram(now, NodeId(1), &t.bytes);
            out.push(t.bytes);
        }
        while let Some(t) = n0.poll_transmit(now) {
            n1.handle_datagram(now, NodeId(0), &t.bytes);
        }
        while n1.poll_event().is_some() {}
        while n0.poll_event().is_some() {}
        now += Duration::from_micros(500);
    }
    assert!(
        n1.stats().messages_acked > 0,
        "the wrong-key pair did not talk"
    );
    out
}

fn random_bytes(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

/// A sealed-format datagram from "n1" with a random tag (and random ciphertext).
fn forged_sealed(rng: &mut ChaCha8Rng, header: &Header, key_id: u8) -> Vec<u8> {
    let mut w = Writer::sealed(header, key_id, 1200);
    assert!(w.push_ping());
    let (mut bytes, _) = w.into_sealable();
    let body_len = rng.random_range(0..64);
    bytes.extend(random_bytes(rng, body_len + TAG_LEN));
    bytes
}

/// A plain datagram with a valid CRC32C from "n1" claiming incarnation 2^62: against
/// the unsealed format this made the receiver believe n1 restarted.
fn forged_plain(rng: &mut ChaCha8Rng, k: u64) -> Vec<u8> {
    let header = Header {
        sender: NodeId(1),
        sender_incarnation: 1 << 62,
        dest_incarnation: 0,
        packet_number: k,
    };
    let mut w = Writer::new(&header, 1200);
    assert!(w.push_ping());
    if k % 2 == 1 {
        let len = rng.random_range(1..800);
        let payload = random_bytes(rng, len);
        let frame = DataFrame {
            message_id: rng.random_range(0..1_000),
            index: 0,
            count: 1,
            total_len: payload.len() as u32,
            sent_at: rng.random(),
            payload: &payload,
        };
        assert!(w.push_data(&frame));
    }
    let bytes = w.finish();
    wire::decode(&bytes).expect("a forgery with a valid CRC32C");
    bytes
}

/// Every datagram of the attack, shuffled, each with the counter it must land in.
fn build_attack(rng: &mut ChaCha8Rng, captured: &[Vec<u8>]) -> Vec<Injection> {
    let seen = observe(captured);
    let mut all = Vec::new();
    let pick = |rng: &mut ChaCha8Rng| captured[rng.random_range(0..captured.len())].clone();

    // a. Replays: every captured datagram again, then random ones again and again.
    for i in 0..REPLAYS {
        let bytes = match captured.get(i) {
            Some(d) => d.clone(),
            None => pick(rng),
        };
        all.push(Injection {
            kind: Kind::Replay,
            bytes,
            expect: "replayed",
        });
    }

    // b. 1-4 distinct bits flipped anywhere in a captured datagram (distinct: flipping
    //    one bit twice would make it a replay).
    for _ in 0..BIT_FLIPS {
        let mut bytes = pick(rng);
        let flips = rng.random_range(1..=4);
        for bit in rand::seq::index::sample(rng, bytes.len() * 8, flips) {
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        let expect = judge(&bytes);
        all.push(Injection {
            kind: Kind::BitFlip,
            bytes,
            expect,
        });
    }

    // c. Sealed with another cluster key: each datagram once, then random ones again.
    let foreign = wrong_key_datagrams(&seen, 400);
    let largest = foreign.iter().map(Vec::len).max().unwrap_or(0);
    println!(
        "    {} distinct datagrams sealed with another key (largest {largest} bytes)",
        foreign.len()
    );
    assert!(
        largest > 1_000,
        "no full-size DATA among the wrong-key datagrams"
    );
    for i in 0..WRONG_KEY {
        let bytes = match foreign.get(i) {
            Some(d) => d.clone(),
            None => foreign[rng.random_range(0..foreign.len())].clone(),
        };
        all.push(Injection {
            kind: Kind::WrongKey,
            expect: judge(&bytes),
            bytes,
        });
    }

    // d. Forged sealed datagrams (random tags): n1 "restarted" with incarnation 2^62;
    //    n1's own life with packet numbers far ahead (which, accepted, would push the
    //    replay window past every real packet); a key id nobody has; a captured header
    //    with random ciphertext and tag.
    for i in 0..FORGED_SEALED {
        let bytes = match i % 4 {
            0 => forged_sealed(
                rng,
                &Header {
                    sender: NodeId(1),
                    sender_incarnation: 1 << 62,
                    dest_incarnation: seen.n0_incarnation,
                    packet_number: i as u64,
                },
                1,
            ),
            1 => forged_sealed(
                rng,
                &Header {
                    sender: NodeId(1),
                    sender_incarnation: seen.n1_incarnation,
                    dest_incarnation: seen.n0_incarnation,
                    packet_number: seen.max_packet + 1_000_000 + i as u64,
                },
                1,
            ),
            2 => {
                let unknown_key = rng.random_range(2..=255);
                forged_sealed(
                    rng,
                    &Header {
                        sender: NodeId(1),
                        sender_incarnation: seen.n1_incarnation,
                        dest_incarnation: seen.n0_incarnation,
                        packet_number: seen.max_packet + 1 + i as u64,
                    },
                    unknown_key,
                )
            }
            _ => {
                let real = pick(rng);
                let (_, _, header_len) = wire::decode_sealed_header(&real).expect("sealed");
                let mut bytes = real[..header_len].to_vec();
                bytes.extend(random_bytes(rng, real.len() - header_len));
                bytes
            }
        };
        all.push(Injection {
            kind: Kind::ForgedSealed,
            expect: judge(&bytes),
            bytes,
        });
    }

    // e. Plain forgeries with a valid CRC32C.
    for k in 0..FORGED_PLAIN {
        let bytes = forged_plain(rng, k as u64);
        all.push(Injection {
            kind: Kind::ForgedPlain,
            expect: judge(&bytes),
            bytes,
        });
    }

    // f. Garbage: random bytes (empty datagrams too), random bytes behind the magic and
    //    either version, and captured datagrams cut short.
    for i in 0..GARBAGE {
        let bytes = match i % 4 {
            0 => {
                let len = rng.random_range(0..1_300);
                random_bytes(rng, len)
            }
            1 => {
                let mut b = b"SHT\x02".to_vec();
                let len = rng.random_range(0..200);
                b.extend(random_bytes(rng, len));
                b
            }
            2 => {
                let mut b = b"SHT".to_vec();
                b.push(rng.random_range(0..4));
                let len = rng.random_range(0..200);
                b.extend(random_bytes(rng, len));
                b
            }
            _ => {
                let mut real = pick(rng);
                real.truncate(rng.random_range(0..real.len()));
                real
            }
        };
        all.push(Injection {
            kind: Kind::Garbage,
            expect: judge(&bytes),
            bytes,
        });
    }
    all.shuffle(rng);
    all
}

/// `shutter status --via VIA --json`, parsed.
fn status_of(launcher: &Launcher, peers: &Path, via: usize) -> NodeStatus {
    let via = via.to_string();
    let out = launcher.run(
        &[
            "status",
            "--peers",
            peers.to_str().expect("utf-8 path"),
            "--via",
            &via,
            "--json",
        ],
        COMMAND_LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "status of n{via} failed\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("status JSON: {e}\n{stdout}"))
}

/// Runs `shutter snapshot --via VIA --out OUT` and checks the saved file: consistent cut,
/// channel states, money conserved. Returns the snapshot's latency in milliseconds.
fn snapshot_and_verify(launcher: &Launcher, peers: &Path, via: usize, out: &Path) -> f64 {
    let via_s = via.to_string();
    let args = [
        "snapshot",
        "--peers",
        peers.to_str().expect("utf-8 path"),
        "--via",
        &via_s,
        "--out",
        out.to_str().expect("utf-8 path"),
        "--timeout",
        "20s",
    ];
    let output = launcher.run(&args, COMMAND_LIMIT);
    verify_output(&output, via)
}

fn verify_output(output: &Output, via: usize) -> f64 {
    let (stdout, stderr) = text(output);
    assert!(
        output.status.success(),
        "snapshot via n{via} failed\n{stdout}\n{stderr}"
    );
    for check in ["cut consistency", "channel states", "money conserved"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("ok") && l.contains(check)),
            "snapshot via n{via}: no passing `{check}` line\n{stdout}"
        );
    }
    let file: PathBuf = saved_path(&stdout).unwrap_or_else(|| panic!("no `saved` line:\n{stdout}"));
    let snap = persist::load(&file).expect("the saved snapshot loads");
    assert_eq!(snap.states.len(), NODES, "every node in the snapshot");
    verify::check_all(&snap, &[&BankInvariant { total: TOTAL_MONEY }])
        .unwrap_or_else(|e| panic!("snapshot via n{via} fails verification: {e}"));
    let _ = std::fs::remove_file(&file);
    snap.timings.latency_micros() as f64 / 1000.0
}

/// The seed: `SHUTTER_ATTACK_SEED`, else a fresh one (printed, so a failure replays).
fn seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV}={s:?} is not a u64")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}

/// Prints `SKIPPED` with the reason, or fails when `CI` is set.
fn skip(reason: &str) {
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(!in_ci, "cluster_attack cannot run in CI: {reason}");
    println!("SKIPPED cluster_attack: {reason}");
}

/// Verified snapshots through n0, n1, ... in turn until `stop` is set (at most `max`);
/// returns their latencies in milliseconds.
fn snapshots_until(
    launcher: &Launcher,
    peers: &Path,
    out: &Path,
    stop: &AtomicBool,
    max: usize,
) -> Vec<f64> {
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) && latencies.len() < max {
        latencies.push(snapshot_and_verify(
            launcher,
            peers,
            latencies.len() % NODES,
            out,
        ));
    }
    latencies
}

/// Sets the flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Polls n0's status (at most `limit`) until `done` holds; returns the last status.
fn status_until(
    host: &Launcher,
    peers: &Path,
    limit: Duration,
    done: impl Fn(&NodeStatus) -> bool,
) -> NodeStatus {
    let start = Instant::now();
    loop {
        let s = status_of(host, peers, 0);
        if done(&s) || start.elapsed() > limit {
            return s;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn loopback_attack() {
    // Raw sockets first: without them there is no attack to run.
    let spoofer = match Spoofer::open() {
        Ok(s) => s,
        Err(e) if is_permission_denied(&e) => {
            return skip(&format!("raw sockets need root (CAP_NET_RAW): {e}"));
        }
        Err(e) => panic!("cannot open a raw IPPROTO_RAW socket: {e}"),
    };
    match Sniffer::open() {
        Ok(probe) => drop(probe),
        Err(e) if is_permission_denied(&e) => {
            return skip(&format!("raw sockets need root (CAP_NET_RAW): {e}"));
        }
        Err(e) => panic!("cannot open a raw UDP socket: {e}"),
    }
    let seed = seed();
    println!(
        "    seed {seed}; replay with:\n    {SEED_ENV}={seed} cargo test -p shutter-tests --test cluster_attack -- --nocapture"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let started = Instant::now();

    // 1. A secured cluster on a clean network.
    let dir = temp_dir("attack");
    let peers = dir.join("peers.toml");
    let addrs = loopback_addrs(NODES);
    write_peers(&peers, &addrs, "");
    let (n0_udp, n1_udp) = (addrs[0].0, addrs[1].0);
    let host = Launcher::host();
    let peers_s = peers.to_str().expect("utf-8 path");
    let ids: Vec<String> = (0..NODES).map(|i| i.to_string()).collect();
    let mut nodes: Vec<NodeProcess> = ids
        .iter()
        .map(|id| {
            host.node(
                &node_args(id, peers_s),
                &dir.join(format!("n{id}.log")),
                READY_LIMIT,
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    for via in 0..NODES {
        snapshot_and_verify(&host, &peers, via, &dir);
    }

    // 2. Capture real traffic n1 -> n0.
    let quiet_before = status_of(&host, &peers, 0);
    let sniffer = Sniffer::open().expect("raw UDP socket");
    let sniff_start = Instant::now();
    // Snapshots meanwhile: more traffic to capture, control messages among it.
    let sniffing_done = AtomicBool::new(false);
    let (captured, sniff_snapshots) = std::thread::scope(|s| {
        let snapshots = s.spawn(|| {
            snapshots_until(
                &host,
                &peers,
                &dir.join("sniff"),
                &sniffing_done,
                MAX_SNAPSHOTS_DURING,
            )
        });
        let captured: Vec<Vec<u8>> = {
            let _done = SetOnDrop(&sniffing_done);
            sniffer
                .capture_between(n1_udp, n0_udp, SNIFF_COUNT, SNIFF_LIMIT)
                .expect("sniffing")
                .into_iter()
                .map(|c| c.payload)
                .collect()
        };
        match snapshots.join() {
            Ok(latencies) => (captured, latencies.len()),
            Err(e) => std::panic::resume_unwind(e),
        }
    });
    drop(sniffer);
    println!(
        "    captured {} datagrams n1 -> n0 in {:.1} s ({sniff_snapshots} snapshots meanwhile)",
        captured.len(),
        sniff_start.elapsed().as_secs_f64()
    );
    assert!(
        captured.len() >= SNIFF_MIN,
        "only {} datagrams n1 -> n0 in {SNIFF_LIMIT:?}",
        captured.len()
    );
    // The baseline: honest traffic on a clean network drops nothing, so from here on
    // every increase is the attack's.
    let before = status_of(&host, &peers, 0);
    assert_eq!(
        datagram_counters(&before.dropped),
        datagram_counters(&quiet_before.dropped),
        "n0 dropped honest datagrams while nobody attacked"
    );
    assert_eq!(before.dropped.admin_refused, 0, "{:?}", before.dropped);

    let attack = build_attack(&mut rng, &captured);
    let mut injected: BTreeMap<Kind, usize> = BTreeMap::new();
    let mut expected: BTreeMap<&'static str, i64> = datagram_counters(&Dropped::default())
        .into_keys()
        .map(|k| (k, 0))
        .collect();
    for a in &attack {
        *injected.entry(a.kind).or_default() += 1;
        *expected.get_mut(a.expect).expect("a datagram counter") += 1;
    }
    let total = attack.len();

    // 3. Flood n0 from n1's address while snapshots run back to back.
    let kernel_before = spoof::udp_socket_queue(n0_udp).expect("n0's socket in /proc/net/udp");
    let flood_done = AtomicBool::new(false);
    let flood_start = Instant::now();
    let (during, after, latencies, flood_time) = std::thread::scope(|s| {
        let snapshots = s.spawn(|| {
            let out = dir.join("flood");
            let mut latencies =
                snapshots_until(&host, &peers, &out, &flood_done, MAX_SNAPSHOTS_DURING);
            let during = latencies.len();
            for via in 0..NODES {
                latencies.push(snapshot_and_verify(&host, &peers, via, &out));
            }
            (during, NODES, latencies)
        });
        // Ends the snapshot loop also if the injection panics.
        let _done = SetOnDrop(&flood_done);
        let mut paused = Duration::ZERO;
        for burst in attack.chunks(BURST) {
            // Let n0 catch up rather than overflow its receive buffer.
            let wait = Instant::now();
            while spoof::udp_socket_queue(n0_udp).is_some_and(|q| q.rx_queue > MAX_QUEUE_BYTES)
                && wait.elapsed() < Duration::from_secs(2)
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            paused += wait.elapsed();
            for a in burst {
                spoofer
                    .send(n1_udp, n0_udp, &a.bytes)
                    .unwrap_or_else(|e| panic!("spoofed send failed: {e}"));
            }
            std::thread::sleep(BURST_PAUSE);
            assert!(
                flood_start.elapsed() < FLOOD_LIMIT,
                "the injection took longer than {FLOOD_LIMIT:?}"
            );
        }
        let flood_time = flood_start.elapsed();
        flood_done.store(true, Ordering::Relaxed);
        println!(
            "    injected {total} datagrams in {:.1} s ({:.1} s waiting for n0's queue)",
            flood_time.as_secs_f64(),
            paused.as_secs_f64()
        );
        match snapshots.join() {
            Ok((during, after, latencies)) => (during, after, latencies, flood_time),
            Err(e) => std::panic::resume_unwind(e),
        }
    });

    // 4. n0 charged every injected datagram to exactly the right reason.
    let after_flood = status_until(&host, &peers, Duration::from_secs(5), |s| {
        delta(&before.dropped, &s.dropped).values().sum::<i64>() >= total as i64
    });
    // Settled: nothing more arrives.
    std::thread::sleep(Duration::from_millis(300));
    let settled = status_of(&host, &peers, 0);
    let kernel_after = spoof::udp_socket_queue(n0_udp).expect("n0's socket in /proc/net/udp");
    let kernel_drops = kernel_after.drops - kernel_before.drops;
    let observed = delta(&before.dropped, &settled.dropped);
    let observed_total: i64 = observed.values().sum();
    println!("    reason             expected   observed");
    for (reason, want) in &expected {
        println!("    {reason:<18} {want:>8} {:>10}", observed[reason]);
    }
    println!(
        "    total              {total:>8} {observed_total:>10}  (kernel drops at n0's socket: {kernel_drops})"
    );
    let by_kind: Vec<String> = Kind::ALL
        .iter()
        .map(|k| format!("{} {}", k.name(), injected.get(k).copied().unwrap_or(0)))
        .collect();
    let by_reason: Vec<String> = observed.iter().map(|(k, v)| format!("{k} {v:+}")).collect();
    assert_eq!(
        kernel_drops, 0,
        "the kernel dropped {kernel_drops} datagrams at n0's socket: the flood overflowed \
         its receive buffer (slow the injection down)"
    );
    assert_eq!(
        datagram_counters(&after_flood.dropped),
        datagram_counters(&settled.dropped),
        "n0's counters still moved after the flood"
    );
    assert_eq!(
        observed_total, total as i64,
        "n0 dropped {observed_total} datagrams, {total} were injected; by reason: {by_reason:?}"
    );
    assert_eq!(
        observed, expected,
        "n0 charged the injected datagrams to other reasons than its receive path implies"
    );
    assert_eq!(
        observed["replayed"],
        injected[&Kind::Replay] as i64,
        "replays"
    );
    assert_eq!(observed["stale_incarnation"], 0, "n0 believed n1 restarted");
    assert_eq!(
        observed["corrupt"], 0,
        "no plain datagram gets as far as its CRC"
    );
    assert_eq!(settled.dropped.admin_refused, 0, "{:?}", settled.dropped);
    assert!(
        settled.messages_delivered > before.messages_delivered,
        "n0 delivered nothing during the flood"
    );

    // 5. The admin channel: no key, or another key, is refused and counted.
    let out = host.run(
        &["status", "--peers", peers_s, "--via", "0", "--insecure"],
        COMMAND_LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "status without the key succeeded\n{stdout}\n{stderr}"
    );
    assert!(
        format!("{stdout}{stderr}").contains("authentication"),
        "the refusal mentions authentication\n{stdout}\n{stderr}"
    );
    println!(
        "    status --insecure: {}",
        stdout.lines().last().unwrap_or_default().trim()
    );
    let other_key = dir.join("other.key");
    let ring = KeyRing::random().expect("random key");
    std::fs::write(&other_key, ring.to_text()).expect("write key file");
    let out = host.run(
        &[
            "snapshot",
            "--peers",
            peers_s,
            "--via",
            "0",
            "--key-file",
            other_key.to_str().expect("utf-8 path"),
            "--out",
            dir.join("refused").to_str().expect("utf-8 path"),
            "--timeout",
            "5s",
        ],
        COMMAND_LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "snapshot with another key succeeded\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("authentication failed"),
        "the refusal says authentication failed\n{stdout}\n{stderr}"
    );
    println!("    snapshot --key-file other.key: {}", stderr.trim());
    let refused = status_until(&host, &peers, Duration::from_secs(3), |s| {
        s.dropped.admin_refused >= 2
    });
    assert_eq!(
        refused.dropped.admin_refused, 2,
        "n0 counts both refused admin clients"
    );
    assert_eq!(
        datagram_counters(&refused.dropped),
        datagram_counters(&settled.dropped),
        "admin refusals are not datagram drops"
    );

    // Stop every node at once (fewer transfers in flight at the end) and check the money.
    let finals: Vec<NodeStatus> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter_mut()
            .map(|n| s.spawn(move || n.stop(Duration::from_secs(20))))
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(json) => serde_json::from_str(&json).expect("final status JSON"),
                Err(e) => std::panic::resume_unwind(e),
            })
            .collect()
    });
    for f in &finals {
        assert_eq!(
            f.duplicates_delivered, 0,
            "n{} delivered a transfer twice",
            f.id
        );
    }
    let n0_final = finals.iter().find(|f| f.id == 0).expect("n0's final line");
    assert_eq!(
        datagram_counters(&n0_final.dropped),
        datagram_counters(&settled.dropped),
        "n0 dropped datagrams after the attack"
    );
    let balances: u64 = finals.iter().map(|f| f.balance).sum();
    let sent: u64 = finals.iter().map(|f| f.messages_sent).sum();
    let delivered: u64 = finals.iter().map(|f| f.messages_delivered).sum();
    // Every node stops sending before it reports (ticks are paused first), so the
    // transfers never delivered are exactly `sent - delivered`, each of a positive amount.
    let lost_transfers = sent - delivered;
    if lost_transfers == 0 {
        assert_eq!(balances, TOTAL_MONEY, "final balances");
    } else {
        assert!(
            balances < TOTAL_MONEY && TOTAL_MONEY - balances >= lost_transfers,
            "final balances {balances} with {lost_transfers} transfers still in flight at the stop"
        );
    }
    println!(
        "    final balances add up to {balances} ({lost_transfers} transfers in flight at the stop)"
    );
    let mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    let max = latencies.iter().copied().fold(0.0, f64::max);
    println!(
        "summary: injected {total} ({}) in {:.1} s; n0 dropped {observed_total:+} ({}); \
         admin_refused +2; {during} snapshots during the flood and {after} after, all verified \
         (mean {mean:.1} ms, max {max:.1} ms); kernel drops 0; total {:.1} s",
        by_kind.join(", "),
        flood_time.as_secs_f64(),
        by_reason.join(", "),
        started.elapsed().as_secs_f64()
    );
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() -> ExitCode {
    test_main(&[("loopback_attack", loopback_attack)])
}
