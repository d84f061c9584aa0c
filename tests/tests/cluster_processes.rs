//! Clusters of real `shutter node` OS processes exchanging real UDP datagrams:
//!
//! - `loopback_processes_with_faults`: four processes on 127.0.0.1 with the transport's
//!   fault injector configured from the peers file's `[faults]` table (loss, duplication,
//!   reordering, jitter, corruption); snapshots through different nodes' admin channels,
//!   two of them concurrent; every one consistent with the money conserved; then one
//!   process is killed and a snapshot must abort with a reason naming it.
//! - `netns_lossy_link`: four processes, each in its own network namespace, joined by
//!   veth links through a bridge, with nftables dropping a random 20% of the datagrams
//!   each node receives (see `shutter_tests::netns`); then one node's link goes down (a
//!   snapshot aborts naming it) and up again (the next one completes). Needs root, `ip` and `nft`;
//!   otherwise prints `SKIPPED` with the reason (and fails when `CI` is set, since CI
//!   provides all three).
//!
//! `harness = false`: this binary is also the `shutter` executable of its child
//! processes (`shutter_tests::procs::test_main`), so `main` is ours. Run one case with
//! `cargo test -p shutter-tests --test cluster_processes -- NAME`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Output};
use std::time::{Duration, Instant};

use shutter_snapshot::bank::BankInvariant;
use shutter_snapshot::{persist, verify};
use shutter_tests::netns::Lab;
use shutter_tests::procs::{
    Launcher, NodeProcess, loopback_addrs, saved_path, temp_dir, test_main, text, write_peers,
};

/// Nodes per cluster.
const NODES: usize = 4;
/// Limit for one `shutter snapshot` command (its own timeout is shorter).
const COMMAND_LIMIT: Duration = Duration::from_secs(60);
/// How long a node process may take to print its ready line.
const READY_LIMIT: Duration = Duration::from_secs(20);

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

/// Runs `shutter snapshot --via VIA --out OUT` to completion.
fn snapshot_command(launcher: &Launcher, peers: &Path, via: usize, out: &Path) -> Output {
    let via = via.to_string();
    let args = [
        "snapshot",
        "--peers",
        peers.to_str().expect("utf-8 path"),
        "--via",
        &via,
        "--out",
        out.to_str().expect("utf-8 path"),
        "--timeout",
        "30s",
    ];
    launcher.run(&args, COMMAND_LIMIT)
}

/// Runs `shutter snapshot --via VIA` and checks the saved file: consistent cut, channel
/// states, money conserved. Returns the file.
fn snapshot_and_verify(launcher: &Launcher, peers: &Path, via: usize, out: &Path) -> PathBuf {
    let output = snapshot_command(launcher, peers, via, out);
    verify_output(&output, via)
}

/// Checks a successful `shutter snapshot` run and the file it saved; returns the file.
fn verify_output(output: &Output, via: usize) -> PathBuf {
    let (stdout, stderr) = text(output);
    assert!(
        output.status.success(),
        "snapshot via {via} failed\n{stdout}\n{stderr}"
    );
    for check in ["cut consistency", "channel states", "money conserved"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("ok") && l.contains(check)),
            "snapshot via {via}: no passing `{check}` line\n{stdout}"
        );
    }
    let file = saved_path(&stdout).unwrap_or_else(|| panic!("no `saved` line:\n{stdout}"));
    let snap = persist::load(&file).expect("the saved snapshot loads");
    assert_eq!(snap.states.len(), NODES, "every node in the snapshot");
    verify::check_all(
        &snap,
        &[&BankInvariant {
            total: 1_000 * NODES as u64,
        }],
    )
    .unwrap_or_else(|e| panic!("snapshot via {via} fails verification: {e}"));
    println!(
        "    snapshot {} via n{via}: {} recorded in-flight transfers, {:.1} ms",
        snap.id,
        snap.recorded_messages(),
        snap.timings.latency_micros() as f64 / 1000.0
    );
    file
}

/// After a disruption: runs `shutter snapshot` (half a second apart, at most 5 times)
/// until one completes (it saved a file; checks may still fail); aborts in between must
/// come with a reason. Returns the completed run and the attempts it took.
fn snapshot_eventually(launcher: &Launcher, peers: &Path, via: usize, out: &Path) -> (Output, u32) {
    for attempt in 1..=5 {
        std::thread::sleep(Duration::from_millis(500));
        let output = snapshot_command(launcher, peers, via, out);
        let (stdout, stderr) = text(&output);
        if saved_path(&stdout).is_some() {
            return (output, attempt);
        }
        assert!(
            stderr.contains("snapshot aborted"),
            "attempt {attempt} neither completed nor aborted with a reason\n{stdout}\n{stderr}"
        );
        println!("    attempt {attempt}: {}", stderr.trim());
    }
    panic!("no snapshot via n{via} completed in 5 attempts");
}

/// Runs [`snapshot_and_verify`] for every `(launcher, via)` at the same time.
fn snapshot_concurrently(runs: &[(Launcher, usize)], peers: &Path, out: &Path) {
    std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .map(|(launcher, via)| s.spawn(move || snapshot_and_verify(launcher, peers, *via, out)))
            .collect();
        for h in handles {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
}

fn json_u64(json: &str, key: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(json).expect("status is JSON");
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {json}"))
}

/// Stops every node gracefully and checks its final counters: no transfer delivered
/// twice, every node received transfers. Returns the total retransmissions.
fn stop_and_check(nodes: &mut [NodeProcess]) -> u64 {
    let mut retransmits = 0;
    for (i, node) in nodes.iter_mut().enumerate() {
        // SIGTERM must be as graceful as Ctrl-C: the final line comes either way.
        let signal = if i % 2 == 0 { "INT" } else { "TERM" };
        let status = node.stop_with(signal, Duration::from_secs(20));
        println!("    n{i} final {status}");
        assert_eq!(
            json_u64(&status, "duplicates_delivered"),
            0,
            "n{i} delivered a transfer twice"
        );
        assert!(
            json_u64(&status, "messages_delivered") > 0,
            "n{i} got nothing"
        );
        retransmits += json_u64(&status, "retransmits");
    }
    retransmits
}

fn loopback_processes_with_faults() {
    let dir = temp_dir("loopback");
    let peers = dir.join("peers.toml");
    let addrs = loopback_addrs(NODES);
    write_peers(
        &peers,
        &addrs,
        "[faults]\nseed = 11\n[faults.default]\n\
         loss = { model = \"bernoulli\", p = 0.2 }\n\
         duplicate = 0.1\nreorder = 0.1\nreorder_delay_ms = 5\njitter_ms = 1\ncorrupt = 0.01\n",
    );
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
    // Two initiators at once, from two processes.
    snapshot_concurrently(
        &[(host.clone(), 1), (host.clone(), 2)],
        &peers,
        &dir.join("concurrent"),
    );

    // Every node's STATUS over its admin channel, as JSON lines.
    let status = host.run(&["status", "--peers", peers_s, "--json"], COMMAND_LIMIT);
    let (json, stderr) = text(&status);
    assert!(status.status.success(), "{json}\n{stderr}");
    assert_eq!(json.lines().count(), NODES, "one status per node:\n{json}");
    for line in json.lines() {
        println!("    status {line}");
        assert!(json_u64(line, "snapshots_aborted") == 0, "{line}");
    }

    // `shutter status` shows every node; with one dead it names it and exits 1.
    let status = host.run(&["status", "--peers", peers_s], COMMAND_LIMIT);
    let (table, stderr) = text(&status);
    assert!(status.status.success(), "{table}\n{stderr}");
    assert_eq!(
        table.lines().count(),
        1 + NODES,
        "header + one row per node:\n{table}"
    );
    print!("{table}");

    // A crashed node: the snapshot cannot finish and must abort, naming it.
    nodes[3].kill();
    let status = host.run(&["status", "--peers", peers_s], COMMAND_LIMIT);
    let (table, _) = text(&status);
    assert_eq!(status.status.code(), Some(1), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.trim_start().starts_with("n3 no answer")),
        "{table}"
    );
    let output = snapshot_command(&host, &peers, 0, &dir.join("unused"));
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a snapshot with n3 dead must fail\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("snapshot aborted") && stderr.contains("n3"),
        "the abort reason names the dead node:\n{stderr}"
    );
    println!("    with n3 killed: {}", stderr.trim());

    // n3 comes back as a fresh process (new transport incarnation, new engine life, a
    // fresh opening balance). The others end their sessions with the old n3 and declare
    // what it will never get, so snapshots complete again with a consistent cut. The
    // bank's money is not conserved across such a crash (the dead node's balance and
    // the transfers it never received are gone), so only the cut is checked here.
    nodes[3] = host.node(
        &node_args(&ids[3], peers_s),
        &dir.join("n3-again.log"),
        READY_LIMIT,
    );
    let (output, _) = snapshot_eventually(&host, &peers, 0, &dir.join("after-restart"));
    let (stdout, stderr) = text(&output);
    for check in ["cut consistency", "channel states"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("ok") && l.contains(check)),
            "after n3 restarted the snapshot must complete with a passing `{check}`\n{stdout}\n{stderr}"
        );
    }
    let file = saved_path(&stdout).unwrap_or_else(|| panic!("no `saved` line:\n{stdout}"));
    let snap = persist::load(&file).expect("the saved snapshot loads");
    verify::check_cut_consistency(&snap).expect("consistent cut");
    println!(
        "    after n3 restarted: snapshot {} completed ({})",
        snap.id,
        stdout
            .lines()
            .find(|l| l.contains("money"))
            .unwrap_or("")
            .trim()
    );
    let retransmits = stop_and_check(&mut nodes);
    assert!(
        retransmits > 0,
        "20% injected loss must cause retransmissions"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn netns_lossy_link() {
    const LOSS_PERCENT: u8 = 20;
    const ROUNDS: usize = 3;
    if let Err(reason) = Lab::probe() {
        // CI runs as root and `.ci/run` installs nftables: there a skip would hide a
        // broken environment, so it fails instead.
        let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(!in_ci, "netns_lossy_link cannot run in CI: {reason}");
        println!("SKIPPED netns_lossy_link: {reason}");
        return;
    }
    let lab = Lab::create(NODES, LOSS_PERCENT).unwrap_or_else(|e| panic!("building the lab: {e}"));
    let dir = temp_dir("netns");
    let peers = dir.join("peers.toml");
    // Admin channels on each namespace's own loopback (distinct ports only because the
    // peers file insists on distinct admin addresses).
    let addrs: Vec<(SocketAddr, SocketAddr)> = (0..NODES)
        .map(|i| {
            let admin = SocketAddr::from(([127, 0, 0, 1], 7100 + i as u16));
            (SocketAddr::from((lab.addr(i), 7000)), admin)
        })
        .collect();
    write_peers(&peers, &addrs, "");
    let peers_s = peers.to_str().expect("utf-8 path");
    let ids: Vec<String> = (0..NODES).map(|i| i.to_string()).collect();
    let mut nodes: Vec<NodeProcess> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            Launcher::in_netns(lab.netns(i)).node(
                &node_args(id, peers_s),
                &dir.join(format!("n{id}.log")),
                READY_LIMIT,
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    let start = Instant::now();
    for round in 0..ROUNDS {
        for via in 0..NODES {
            let out = dir.join(format!("round{round}"));
            snapshot_and_verify(&Launcher::in_netns(lab.netns(via)), &peers, via, &out);
        }
        // Two initiators at once, from two namespaces.
        let pair = [0, NODES - 1].map(|via| (Launcher::in_netns(lab.netns(via)), via));
        snapshot_concurrently(&pair, &peers, &dir.join(format!("concurrent{round}")));
    }
    let elapsed = start.elapsed();

    // Pull n3's cable: a snapshot cannot finish and must abort naming n3; plug it back
    // in and the next snapshot completes (same processes, no restart).
    lab.set_link(NODES - 1, false)
        .unwrap_or_else(|e| panic!("{e}"));
    let n0 = Launcher::in_netns(lab.netns(0));
    let output = snapshot_command(&n0, &peers, 0, &dir.join("cut-off"));
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a snapshot with n3 cut off must fail\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("snapshot aborted") && stderr.contains("n3"),
        "the abort reason names the cut-off node:\n{stderr}"
    );
    println!("    n3's link down: {}", stderr.trim());
    lab.set_link(NODES - 1, true)
        .unwrap_or_else(|e| panic!("{e}"));
    // Right after the heal, verdicts of the outage may still land (n3's idle timers
    // declare peers unreachable that it has not heard from yet) and abort a snapshot, with
    // a reason. Within a few attempts one must complete, and pass every check.
    let (output, attempts) = snapshot_eventually(&n0, &peers, 0, &dir.join("healed"));
    verify_output(&output, 0);
    println!("    n3's link up again: a snapshot completed and verified (attempt {attempts})");

    let retransmits = stop_and_check(&mut nodes);
    assert!(
        retransmits > 0,
        "{LOSS_PERCENT}% kernel drop must cause retransmissions"
    );
    let (mut dropped, mut passed) = (0, 0);
    for i in 0..NODES {
        let c = lab.counters(i).unwrap_or_else(|e| panic!("{e}"));
        println!(
            "    n{i} ({}): nftables dropped {} / passed {} datagrams",
            lab.netns(i),
            c.dropped,
            c.passed
        );
        dropped += c.dropped;
        passed += c.passed;
    }
    let share = dropped as f64 / (dropped + passed).max(1) as f64;
    println!(
        "    {} snapshots in {:.1} s; kernel dropped {dropped} of {} datagrams ({:.1}%)",
        ROUNDS * (NODES + 2),
        elapsed.as_secs_f64(),
        dropped + passed,
        share * 100.0
    );
    assert!(
        dropped > 0 && passed > 0,
        "the nftables rules saw no traffic"
    );
    // Binomial with n in the thousands: 20% +- a few points; a wide band still proves
    // the rule is the one dropping.
    assert!(
        (0.10..=0.30).contains(&share),
        "drop share {share} far from {LOSS_PERCENT}%"
    );
    drop(nodes);
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() -> ExitCode {
    test_main(&[
        (
            "loopback_processes_with_faults",
            loopback_processes_with_faults as fn(),
        ),
        ("netns_lossy_link", netns_lossy_link),
    ])
}
