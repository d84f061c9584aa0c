//! Kill -9 and automatic cluster-wide rollback on real `shutter node` processes.
//!
//! `kill_restart_rolls_back_with_the_money_exact`: four processes on 127.0.0.1 with 10%
//! injected loss, duplication, reordering and jitter, each with its checkpoint store (the
//! default `shutter-data/n<ID>` beside the peers file) and the default `--on-restart
//! rollback`. After a first snapshot has committed everywhere, every round kills a
//! seeded victim with SIGKILL — while idle or a few milliseconds after a snapshot was
//! requested — keeps it down for a while (the others go on sending it transfers), and
//! starts it again with the same command line. Checked:
//!
//! - the restarted node logs that the cluster rolled back to a snapshot, and so does
//!   every other node;
//! - afterwards a snapshot through every node completes within a few attempts;
//! - every snapshot saved during the whole run (before, during and after rollbacks) has
//!   a consistent cut, sane channels, and exactly the opening money (4 x 1000): nothing
//!   lost with the dead process or the transfers in flight to it, nothing created.
//!
//! The seed is printed with the replay command; `SHUTTER_ROLLBACK_SEED`,
//! `SHUTTER_ROLLBACK_ROUNDS` replay or extend. `harness = false`: the binary is also the
//! `shutter` executable of its child processes.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Output};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shutter_snapshot::bank::BankInvariant;
use shutter_snapshot::{persist, verify};
use shutter_tests::procs::{
    Launcher, NodeProcess, loopback_addrs, lossy_faults, saved_path, temp_dir, test_main, text,
    write_peers,
};

const NODES: usize = 4;
const TOTAL: u64 = NODES as u64 * 1_000;
const DEFAULT_ROUNDS: usize = 5;
const DEFAULT_SEED: u64 = 11;
const SEED_ENV: &str = "SHUTTER_ROLLBACK_SEED";
const ROUNDS_ENV: &str = "SHUTTER_ROLLBACK_ROUNDS";
const READY_LIMIT: Duration = Duration::from_secs(20);
const COMMAND_LIMIT: Duration = Duration::from_secs(30);
/// How long the cluster may take to roll back after the victim is started again.
const ROLLBACK_LIMIT: Duration = Duration::from_secs(30);
const ATTEMPTS: u32 = 10;
const ATTEMPT_PAUSE: Duration = Duration::from_millis(300);

struct Cluster {
    host: Launcher,
    dir: PathBuf,
    peers: PathBuf,
    snaps: PathBuf,
    nodes: Vec<NodeProcess>,
    /// Each node's current log.
    logs: Vec<PathBuf>,
}

impl Cluster {
    fn start(dir: &Path, fault_seed: u64, loss: f64) -> Cluster {
        let peers = dir.join("peers.toml");
        write_peers(
            &peers,
            &loopback_addrs(NODES),
            &lossy_faults(fault_seed, loss),
        );
        let mut c = Cluster {
            host: Launcher::host(),
            dir: dir.to_owned(),
            peers,
            snaps: dir.join("snaps"),
            nodes: Vec::new(),
            logs: Vec::new(),
        };
        for i in 0..NODES {
            let (node, log) = c.launch(i, 0, &[]);
            c.nodes.push(node);
            c.logs.push(log);
        }
        c
    }

    /// Life `life` of node `i`: always the same command line (plus `extra`).
    fn launch(&self, i: usize, life: usize, extra: &[&str]) -> (NodeProcess, PathBuf) {
        let id = i.to_string();
        let log = self.dir.join(format!("n{i}-life{life}.log"));
        let peers = self.peers.to_str().expect("utf-8 path");
        let mut args = vec![
            "--id",
            &id,
            "--peers",
            peers,
            "--tick",
            "10ms",
            "--snapshot-timeout",
            "3s",
            // Bound: the nodes stop by themselves even if this process is killed.
            "--duration",
            "240s",
        ];
        args.extend_from_slice(extra);
        (self.host.node(&args, &log, READY_LIMIT), log)
    }

    fn restart(&mut self, i: usize, life: usize) {
        let (node, log) = self.launch(i, life, &[]);
        self.nodes[i] = node;
        self.logs[i] = log;
    }

    fn snapshot(&self, via: usize) -> Output {
        let via = via.to_string();
        let args = [
            "snapshot",
            "--peers",
            self.peers.to_str().expect("utf-8 path"),
            "--via",
            &via,
            "--out",
            self.snaps.to_str().expect("utf-8 path"),
            "--timeout",
            "6s",
            // The money of all four, also after one is removed (its heir holds it).
            "--total",
            &TOTAL.to_string(),
        ];
        self.host.run(&args, COMMAND_LIMIT)
    }

    /// A snapshot through `via` within [`ATTEMPTS`] attempts; its file.
    fn snapshot_eventually(&self, via: usize, ctx: &str) -> PathBuf {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let out = self.snapshot(via);
            let (stdout, stderr) = text(&out);
            if out.status.success()
                && let Some(path) = saved_path(&stdout)
            {
                return path;
            }
            last = format!("{stdout}{stderr}");
            std::thread::sleep(ATTEMPT_PAUSE);
        }
        panic!("{ctx}: no snapshot via n{via} in {ATTEMPTS} attempts; last:\n{last}");
    }

    /// Runs `shutter remove`/`add`; panics with the output and the logs of `nodes` if
    /// it fails. Returns its stdout.
    fn member_command(&self, args: &[&str], nodes: &[usize]) -> String {
        let out = self.host.run(args, COMMAND_LIMIT);
        let (stdout, stderr) = text(&out);
        if !out.status.success() {
            let logs: Vec<String> = nodes
                .iter()
                .map(|&i| format!("--- n{i}:\n{}", tail(&self.log(i))))
                .collect();
            panic!(
                "shutter {} failed\n{stdout}\n{stderr}\n{}",
                args[0],
                logs.join("\n")
            );
        }
        stdout
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.logs[i]).unwrap_or_default()
    }

    /// Waits until the current log of node `i` has at least `counts[i]` rollback lines,
    /// for the first `counts.len()` nodes; returns how long that took.
    fn wait_rolled_back(&self, counts: &[usize], ctx: &str) -> Duration {
        let start = Instant::now();
        let nodes = 0..counts.len();
        loop {
            let now: Vec<usize> = nodes.clone().map(|i| rollbacks(&self.log(i))).collect();
            if now.iter().zip(counts).all(|(a, b)| a >= b) {
                return start.elapsed();
            }
            if start.elapsed() > ROLLBACK_LIMIT {
                let logs: Vec<String> = nodes
                    .map(|i| format!("--- n{i}:\n{}", tail(&self.log(i))))
                    .collect();
                panic!(
                    "{ctx}: the cluster did not roll back within {ROLLBACK_LIMIT:?} (rollbacks per node {now:?}, wanted {counts:?})\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Rollback lines in a node log.
fn rollbacks(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("the cluster rolled back to snapshot"))
        .count()
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Every saved snapshot: consistent, sane channels, exactly the opening money.
fn check_all_saved(snaps: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(snaps).expect("snapshot dir") {
        let path = entry.expect("dir entry").path();
        let snap = persist::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        verify::check_all(&snap, &[&BankInvariant { total: TOTAL }])
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    n
}

/// Average size and count of the regular (non-genesis) checkpoint files under `dir`.
fn checkpoint_bytes(dir: &Path) -> (u64, usize) {
    let mut sizes = Vec::new();
    for node in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(node.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".ckpt") && !name.ends_with("-n0-0.ckpt") {
                sizes.push(f.metadata().map(|m| m.len()).unwrap_or(0));
            }
        }
    }
    let n = sizes.len().max(1) as u64;
    (sizes.iter().sum::<u64>() / n, sizes.len())
}

fn seed_from_env() -> u64 {
    std::env::var(SEED_ENV)
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{SEED_ENV}={s:?} is not a u64"))
        })
        .unwrap_or(DEFAULT_SEED)
}

fn kill_restart_rolls_back_with_the_money_exact() {
    let seed = seed_from_env();
    let rounds: usize = std::env::var(ROUNDS_ENV)
        .ok()
        .map(|r| {
            r.trim()
                .parse()
                .expect("SHUTTER_ROLLBACK_ROUNDS is a number")
        })
        .unwrap_or(DEFAULT_ROUNDS);
    let replay = format!(
        "{SEED_ENV}={seed} {ROUNDS_ENV}={rounds} cargo test -p shutter-tests --test cluster_rollback -- --nocapture"
    );
    println!("    seed {seed}, {rounds} rounds; replay with:\n    {replay}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Injected loss on every link (default 10%); SHUTTER_ROLLBACK_LOSS=0 for a clean run.
    let loss: f64 = std::env::var("SHUTTER_ROLLBACK_LOSS")
        .ok()
        .map(|l| {
            l.trim()
                .parse()
                .expect("SHUTTER_ROLLBACK_LOSS is a probability")
        })
        .unwrap_or(0.1);
    let dir = temp_dir("rollback");
    let mut cluster = Cluster::start(&dir, seed & 0x7fff_ffff, loss);
    // From the restarted node's ready line to every node's "rolled back" line.
    let mut recovery_ms: Vec<f64> = Vec::new();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    // A snapshot every node holds: what the first rollback goes back to.
    cluster.snapshot_eventually(0, "before any kill");
    std::thread::sleep(Duration::from_millis(300));

    let mut rolled = vec![0usize; NODES];
    for round in 1..=rounds {
        let victim = rng.random_range(0..NODES);
        let during = rng.random_bool(0.5);
        let kill_delay = Duration::from_millis(rng.random_range(0..=8));
        let down = Duration::from_millis(rng.random_range(100..=1500));
        let ctx = format!("round {round}");
        let in_flight = if during {
            let via = (victim + 1) % NODES;
            let host = cluster.host.clone();
            let peers = cluster.peers.clone();
            let snaps = cluster.snaps.clone();
            let handle = std::thread::spawn(move || {
                let via = via.to_string();
                host.run(
                    &[
                        "snapshot",
                        "--peers",
                        peers.to_str().expect("utf-8"),
                        "--via",
                        &via,
                        "--out",
                        snaps.to_str().expect("utf-8"),
                        "--timeout",
                        "6s",
                    ],
                    COMMAND_LIMIT,
                )
            });
            std::thread::sleep(kill_delay);
            println!(
                "round {round}: kill -9 n{victim} ~{} ms after a snapshot was requested, down {} ms",
                kill_delay.as_millis(),
                down.as_millis()
            );
            Some(handle)
        } else {
            println!(
                "round {round}: kill -9 n{victim} while idle, down {} ms",
                down.as_millis()
            );
            None
        };
        cluster.nodes[victim].kill();
        // The others go on sending the dead node transfers meanwhile.
        std::thread::sleep(down);
        if let Some(h) = in_flight {
            // Completed, aborted or refused: any outcome; what it saved is checked below.
            let _ = h.join();
        }
        cluster.restart(victim, round);
        rolled[victim] = 0;
        for (i, r) in rolled.iter_mut().enumerate() {
            if i != victim {
                *r += 1;
            }
        }
        rolled[victim] = 1;
        let took = cluster.wait_rolled_back(&rolled, &ctx);
        recovery_ms.push(took.as_secs_f64() * 1000.0);
        println!(
            "    every node rolled back {:.1} ms after the restart was ready",
            took.as_secs_f64() * 1000.0
        );
        for via in 0..NODES {
            cluster.snapshot_eventually(via, &format!("{ctx}, after the rollback"));
        }
    }
    let checked = check_all_saved(&cluster.snaps);
    let bytes = checkpoint_bytes(&dir.join("shutter-data"));
    recovery_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| recovery_ms[((recovery_ms.len() - 1) as f64 * p).round() as usize];
    println!(
        "    summary: seed {seed}, loss {loss}, {rounds} kills, {checked} saved snapshots all consistent with exactly {TOTAL}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "    restart ready -> cluster running again (logs polled every 2 ms): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} kills; checkpoint files: {} B average over {} files",
        pct(0.5),
        pct(0.99),
        recovery_ms[recovery_ms.len() - 1],
        recovery_ms.len(),
        bytes.0,
        bytes.1
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cluster with 10% loss in a fresh directory for test `case` (its replay command is
/// printed), running, with one snapshot through `via` committed everywhere.
fn with_a_committed_snapshot(case: &str, via: usize) -> (PathBuf, Cluster) {
    let seed = seed_from_env();
    println!(
        "    seed {seed}; replay with: {SEED_ENV}={seed} cargo test -p shutter-tests --test cluster_rollback -- {case} --nocapture"
    );
    let dir = temp_dir(case);
    let cluster = Cluster::start(&dir, seed & 0x7fff_ffff, 0.1);
    std::thread::sleep(Duration::from_millis(300));
    cluster.snapshot_eventually(via, "before the kill");
    std::thread::sleep(Duration::from_millis(300));
    (dir, cluster)
}

/// True if a node log shows it was asked to remove node `gone`.
fn removed(log: &str, gone: usize) -> bool {
    log.lines()
        .any(|l| l.contains(&format!("admin request: removing n{gone}")))
}

/// `remove_a_dead_node_then_restart_a_survivor`: n3 is killed for good after a snapshot
/// through n0 committed (n0 keeps every member's part of it). `shutter remove --node 3
/// --via 1`: the other three go back to that snapshot, n0 inherits n3's money and the
/// transfers that were on their way to it. Checked: the command succeeds; snapshots
/// through every survivor complete afterwards (nothing waits for n3); the peers file
/// without n3, a survivor killed and restarted rolls the smaller cluster back by itself
/// (its store moved to the new membership); every saved snapshot, before and after,
/// holds exactly the opening money of all four. Then a new node n4 started with
/// `--join` is added with `shutter add`; snapshots through every member, n4 included,
/// complete with the same money.
fn remove_a_dead_node_then_restart_a_survivor() {
    let (dir, mut cluster) = with_a_committed_snapshot("remove", 0);
    println!("    kill -9 n3 for good; the others go on sending it transfers");
    cluster.nodes[3].kill();
    std::thread::sleep(Duration::from_millis(700));
    let peers = cluster.peers.to_str().expect("utf-8 path").to_owned();
    let stdout = cluster.member_command(
        &["remove", "--peers", &peers, "--node", "3", "--via", "1"],
        &[1],
    );
    assert!(stdout.contains("n3 removed"), "{stdout}");
    assert!(removed(&cluster.log(1), 3), "n1 logs the removal");
    println!("    {}", stdout.lines().next().unwrap_or_default());
    for via in 0..3 {
        cluster.snapshot_eventually(via, "after the removal");
    }
    // The operator's part: n3 leaves the peers file (the key stays the same).
    let text_before = std::fs::read_to_string(&cluster.peers).expect("peers file");
    let start = text_before.find("[[nodes]]\nid = 3\n").expect("n3's entry");
    let end = text_before[start..]
        .find("\n\n")
        .map_or(text_before.len(), |e| start + e + 2);
    let without = format!("{}{}", &text_before[..start], &text_before[end..]);
    std::fs::write(&cluster.peers, without).expect("rewrite peers file");
    println!("    n3 deleted from the peers file; kill -9 n2 and start it again");
    cluster.nodes[2].kill();
    std::thread::sleep(Duration::from_millis(400));
    let before: Vec<usize> = (0..3).map(|i| rollbacks(&cluster.log(i))).collect();
    cluster.restart(2, 1);
    cluster.wait_rolled_back(
        &[before[0] + 1, before[1] + 1, 1],
        "the three after n2's restart",
    );
    for via in 0..3 {
        cluster.snapshot_eventually(via, "after the survivor's restart");
    }
    // A new node n4: the peers file lists it, it starts with --join and waits; `shutter
    // add` brings it in with an empty account.
    let (udp, admin) = loopback_addrs(1)[0];
    let mut text_now = std::fs::read_to_string(&cluster.peers).expect("peers file");
    if let Some(faults) = text_now.find("[faults]") {
        text_now.insert_str(
            faults,
            &format!("[[nodes]]\nid = 4\naddr = \"{udp}\"\nadmin = \"{admin}\"\n\n"),
        );
    }
    std::fs::write(&cluster.peers, text_now).expect("rewrite peers file");
    let (n4, log4) = cluster.launch(4, 0, &["--join"]);
    cluster.nodes.push(n4);
    cluster.logs.push(log4);
    let stdout = cluster.member_command(
        &["add", "--peers", &peers, "--node", "4", "--via", "0"],
        &[0, 4],
    );
    println!("    {}", stdout.lines().next().unwrap_or_default());
    // Transfers flow to and from the new node, and snapshots through every member
    // (the new one included) complete with the money unchanged.
    std::thread::sleep(Duration::from_millis(500));
    for via in [0, 1, 2, 4] {
        let path = cluster.snapshot_eventually(via, "after the addition");
        let snap = persist::load(&path).expect("saved snapshot");
        let nodes: Vec<u32> = snap.nodes().map(|n| n.0).collect();
        assert_eq!(nodes, [0, 1, 2, 4], "{}", path.display());
    }
    let n4_final = cluster.nodes[4].stop(Duration::from_secs(20));
    let n4_final: serde_json::Value = serde_json::from_str(&n4_final).expect("final status");
    assert!(
        n4_final["messages_delivered"].as_u64().unwrap_or(0) > 0,
        "n4 never received a transfer: {n4_final}"
    );
    let checked = check_all_saved(&cluster.snaps);
    println!(
        "    summary: {checked} saved snapshots (4 nodes, then 3, then 4) all consistent with exactly {TOTAL}"
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `lost_disk_gets_its_part_from_the_initiator`: n2 is killed with SIGKILL and its data
/// dir is deleted (the disk is lost too), then started again with the same command
/// line. It comes back knowing nothing, as on a first start; the others see it restart
/// and roll the cluster back. n1 initiated the committed snapshot and keeps every
/// member's part of it, so the cluster goes back to that snapshot (not to the genesis
/// one) and n2 restores the part n1 sends it. Checked: every node rolls back, not to
/// the start; n2 restored a supplied part; snapshots through every node complete
/// afterwards; every saved snapshot holds exactly the opening money.
fn lost_disk_gets_its_part_from_the_initiator() {
    let (dir, mut cluster) = with_a_committed_snapshot("lost_disk", 1);
    cluster.nodes[2].kill();
    let data = dir.join("shutter-data").join("n2");
    std::fs::remove_dir_all(&data).expect("delete n2's data dir");
    println!("    kill -9 n2 and delete {}", data.display());
    std::thread::sleep(Duration::from_millis(300));
    let before: Vec<usize> = (0..NODES).map(|i| rollbacks(&cluster.log(i))).collect();
    cluster.restart(2, 1);
    let mut wanted: Vec<usize> = before.iter().map(|b| b + 1).collect();
    wanted[2] = 1;
    let took = cluster.wait_rolled_back(&wanted, "after the disk was lost");
    println!(
        "    every node rolled back {:.1} ms after n2 was ready again",
        took.as_secs_f64() * 1000.0
    );
    let log = cluster.log(0);
    assert!(
        log.contains("the cluster rolled back to snapshot")
            && !log.contains("rolled back to snapshot n0@0"),
        "the cluster goes back to a committed snapshot, not to the start\n{}",
        tail(&log)
    );
    assert!(
        cluster
            .log(2)
            .contains("restored from a part another member's replica supplied"),
        "n2 restores the part the initiator kept\n{}",
        tail(&cluster.log(2))
    );
    for via in 0..NODES {
        cluster.snapshot_eventually(via, "after the rollback");
    }
    let checked = check_all_saved(&cluster.snaps);
    println!("    summary: {checked} saved snapshots all consistent with exactly {TOTAL}");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() -> ExitCode {
    test_main(&[
        (
            "kill_restart_rolls_back_with_the_money_exact",
            kill_restart_rolls_back_with_the_money_exact,
        ),
        (
            "remove_a_dead_node_then_restart_a_survivor",
            remove_a_dead_node_then_restart_a_survivor,
        ),
        (
            "lost_disk_gets_its_part_from_the_initiator",
            lost_disk_gets_its_part_from_the_initiator,
        ),
    ])
}
