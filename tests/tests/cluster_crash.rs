//! Crash-restart rounds on a cluster of real `shutter node` processes.
//!
//! `crash_restart_rounds`: four processes on 127.0.0.1 with the transport's fault injector
//! configured from the peers file's `[faults]` table (10% loss, duplication, reordering,
//! jitter). Every round a victim drawn from a seeded RNG is killed with SIGKILL (no
//! chance to say goodbye) — sometimes while the cluster is idle, sometimes a few
//! milliseconds after a `shutter snapshot` was requested through the victim or through
//! another node — then restarted as a fresh process with the same id and the same peers
//! file (no `--restore`, and `--on-restart rejoin`: no rollback, see `cluster_rollback`). Snapshots are taken through the live nodes while it is down and
//! through every node after it is back. Checked over the whole run:
//!
//! - (a) no snapshot completes with an inconsistent cut or bad channel states: every
//!   saved file is loaded and checked with `verify::check_cut_consistency` and
//!   `verify::check_channels`; nor does an initiator assemble one and abort it as
//!   "failed its consistency check" (`AbortWhy::FailedCheck`);
//! - (b) no snapshot id is used twice: no id completes twice, no file name
//!   `snapshot-nK-S.snap` is saved twice, and no node (across its incarnations) logs
//!   `initiated snapshot nK@S` twice for one id;
//! - (c) every abort names a node (`missing nK ...` or `nK unreachable`, never
//!   `missing nobody`); while the victim is down, the aborts name the victim;
//! - (d) after the victim is back, a snapshot through the victim and one through another
//!   node each complete within [`ATTEMPTS`] attempts.
//!
//! The seed is printed with the command that replays the same choices (victims, kill
//! moments, fault seed); set `SHUTTER_CRASH_SEED` to replay, `SHUTTER_CRASH_ROUNDS` for
//! more or fewer rounds. Processes are real, so timing still varies between replays.
//!
//! `harness = false`: this binary is also the `shutter` executable of its child
//! processes (`shutter_tests::procs::test_main`), so `main` is ours.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Output};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shutter_snapshot::{persist, verify};
use shutter_tests::procs::{
    Launcher, NodeProcess, loopback_addrs, lossy_faults, saved_path, temp_dir, test_main, text,
    write_peers,
};

/// Nodes in the cluster.
const NODES: usize = 4;
/// Crash-restart rounds unless `SHUTTER_CRASH_ROUNDS` says otherwise.
const DEFAULT_ROUNDS: usize = 10;
/// Wall-clock limit of one `shutter snapshot` command (its own `--timeout` is shorter).
const COMMAND_LIMIT: Duration = Duration::from_secs(20);
/// How long a node process may take to print its ready line.
const READY_LIMIT: Duration = Duration::from_secs(20);
/// How long to wait for the initiator's log to show a requested snapshot started.
const INITIATE_LIMIT: Duration = Duration::from_secs(5);
/// Attempts for a snapshot to complete after a restart (check (d)).
const ATTEMPTS: u32 = 5;
/// Pause before each of those attempts.
const ATTEMPT_PAUSE: Duration = Duration::from_millis(300);
/// How an abort for `AbortWhy::FailedCheck` reads (`AbortReason`'s `Display`).
const FAILED_CHECK: &str = "failed its consistency check";
/// The environment variables of a replay.
const SEED_ENV: &str = "SHUTTER_CRASH_SEED";
/// The seed when none is given.
const DEFAULT_SEED: u64 = 7;
const ROUNDS_ENV: &str = "SHUTTER_CRASH_ROUNDS";

fn node_args<'a>(id: &'a str, peers: &'a str) -> Vec<&'a str> {
    vec![
        "--id",
        id,
        "--peers",
        peers,
        "--tick",
        "10ms",
        // Short, so a snapshot waiting for a dead node aborts quickly.
        "--snapshot-timeout",
        "3s",
        // Bound: the nodes stop by themselves even if this process is killed.
        "--duration",
        "180s",
        // The scenario of this test: a crashed node comes back as a fresh process and
        // the cluster goes on without rolling back (`cluster_rollback` tests rollback).
        "--on-restart",
        "rejoin",
    ]
}

/// What a snapshot command is allowed to end with, besides completing consistently or
/// aborting with a reason that names a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Nothing else.
    Normal,
    /// Its initiator was killed under it: the command may also fail without a verdict
    /// (connection reset).
    InitiatorKilled,
    /// Issued while `nV` is dead: it must abort, naming `nV`.
    AbortNaming(usize),
}

/// How one `shutter snapshot` ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Completed(String),
    Aborted(String),
    Interrupted,
    Invalid,
}

/// Everything observed over the run.
#[derive(Default)]
struct Tally {
    completed: usize,
    /// Completed with a consistent cut but the bank's total off: expected after a fresh
    /// restart (see [`Tally::classify`]).
    money_not_conserved: usize,
    aborted: usize,
    interrupted: usize,
    reasons: BTreeMap<String, usize>,
    /// Completed snapshot id -> where it was seen.
    completed_ids: BTreeMap<String, String>,
    /// Saved file -> where it was saved.
    saved_files: BTreeMap<PathBuf, String>,
    /// Reuses of initiated ids already reported.
    reuses: BTreeSet<String>,
    violations: Vec<String>,
}

impl Tally {
    fn violation(&mut self, v: String) {
        println!("    VIOLATION {v}");
        self.violations.push(v);
    }

    /// Checks one `shutter snapshot` run through `via` (described by `ctx`).
    fn classify(&mut self, output: &Output, via: usize, ctx: &str, expect: Expect) -> Outcome {
        let (stdout, stderr) = text(output);
        let code = output.status.code();
        let shown = format!("exit {code:?}\nstdout:\n{stdout}stderr:\n{stderr}");
        if let Some(path) = saved_path(&stdout) {
            return self.completed(&path, &stdout, code, via, ctx, expect, &shown);
        }
        if code == Some(0) {
            self.violation(format!("{ctx}: exited 0 without saving a file\n{shown}"));
            return Outcome::Invalid;
        }
        if let Some(reason) = stderr
            .lines()
            .find_map(|l| l.strip_prefix("snapshot aborted: "))
        {
            let reason = reason.trim().to_owned();
            self.aborted += 1;
            *self.reasons.entry(reason.clone()).or_default() += 1;
            let named = named_nodes(&reason);
            println!("    {ctx}: via n{via} aborted: {reason}");
            // (a) The initiator checks what it assembled and aborts instead of completing
            // when the check fails (`AbortWhy::FailedCheck`): that is an inconsistent
            // snapshot caught at the source, not a legitimate abort.
            if reason.contains(FAILED_CHECK) {
                self.violation(format!(
                    "{ctx}: via n{via} assembled an INCONSISTENT snapshot (aborted as \
                     {FAILED_CHECK:?}): {reason:?}\n{shown}"
                ));
            }
            if named.is_empty() || reason.contains("missing nobody") {
                self.violation(format!(
                    "{ctx}: abort reason names no node: {reason:?}\n{shown}"
                ));
            } else if let Expect::AbortNaming(v) = expect {
                if !named.contains(&format!("n{v}")) {
                    self.violation(format!(
                        "{ctx}: n{v} is dead but the abort reason does not name it: {reason:?}"
                    ));
                }
            }
            return Outcome::Aborted(reason);
        }
        if expect == Expect::InitiatorKilled {
            self.interrupted += 1;
            println!(
                "    {ctx}: via n{via} interrupted (initiator killed): {}",
                stderr.trim()
            );
            return Outcome::Interrupted;
        }
        self.violation(format!(
            "{ctx}: via n{via} neither completed nor aborted with a reason\n{shown}"
        ));
        Outcome::Invalid
    }

    #[allow(clippy::too_many_arguments)]
    fn completed(
        &mut self,
        path: &Path,
        stdout: &str,
        code: Option<i32>,
        via: usize,
        ctx: &str,
        expect: Expect,
        shown: &str,
    ) -> Outcome {
        let printed = stdout
            .lines()
            .find_map(|l| {
                l.strip_prefix("snapshot ")
                    .filter(|rest| rest.contains(" of "))
            })
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_owned();
        // (a) The CLI's own verdicts: a failing cut or channel check is an inconsistent
        // completed snapshot. "money conserved" may fail: a node restarted without
        // `--restore` opens with a fresh balance, and the transfers the killed process
        // sent or never received are gone, so the bank's total is not conserved across a
        // fresh restart. Only the cut and the channel states are checked.
        for line in stdout.lines().filter(|l| l.contains("FAIL")) {
            if line.contains("money conserved") {
                continue;
            }
            self.violation(format!(
                "{ctx}: snapshot {printed} via n{via} completed INCONSISTENT: {}\n{shown}",
                line.trim()
            ));
        }
        let money_failed = stdout
            .lines()
            .any(|l| l.contains("FAIL") && l.contains("money conserved"));
        if money_failed {
            self.money_not_conserved += 1;
        }
        match code {
            Some(0) => {}
            Some(1) if money_failed => {}
            _ => self.violation(format!(
                "{ctx}: snapshot {printed} saved a file but exited {code:?}\n{shown}"
            )),
        }
        if let Expect::AbortNaming(v) = expect {
            self.violation(format!(
                "{ctx}: snapshot {printed} via n{via} completed while n{v} was dead\n{shown}"
            ));
        }
        // (a) Our own check of the saved file.
        let snap = match persist::load(path) {
            Ok(snap) => snap,
            Err(e) => {
                self.violation(format!(
                    "{ctx}: {} does not load: {e}\n{shown}",
                    path.display()
                ));
                return Outcome::Invalid;
            }
        };
        let id = snap.id.to_string();
        if id != printed {
            self.violation(format!(
                "{ctx}: printed snapshot {printed}, the file holds {id}"
            ));
        }
        if snap.states.len() != NODES || snap.cuts.len() != NODES {
            self.violation(format!(
                "{ctx}: snapshot {id} has {} states and {} cuts, not {NODES}",
                snap.states.len(),
                snap.cuts.len()
            ));
        }
        if let Err(e) = verify::check_cut_consistency(&snap) {
            self.violation(format!(
                "{ctx}: snapshot {id} via n{via}: inconsistent cut: {e}; cuts {:?}",
                snap.cuts
            ));
        }
        if let Err(e) = verify::check_channels(&snap) {
            self.violation(format!(
                "{ctx}: snapshot {id} via n{via}: bad channel states: {e}"
            ));
        }
        // (b) No id completes twice, no file name is saved twice.
        let expected_name = format!("snapshot-{}-{}.snap", snap.id.initiator, snap.id.s);
        if path.file_name().and_then(|n| n.to_str()) != Some(expected_name.as_str()) {
            self.violation(format!(
                "{ctx}: snapshot {id} saved as {}, expected {expected_name}",
                path.display()
            ));
        }
        if let Some(first) = self.completed_ids.insert(id.clone(), ctx.to_owned()) {
            self.violation(format!(
                "{ctx}: snapshot id {id} REUSED: it already completed in {first}"
            ));
        }
        if let Some(first) = self.saved_files.insert(path.to_owned(), ctx.to_owned()) {
            self.violation(format!(
                "{ctx}: file name COLLISION: {} was already saved in {first}",
                path.display()
            ));
        }
        self.completed += 1;
        println!(
            "    {ctx}: via n{via} completed {id} ({} recorded in flight, {:.1} ms{})",
            snap.recorded_messages(),
            snap.timings.latency_micros() as f64 / 1000.0,
            if money_failed {
                ", money not conserved"
            } else {
                ""
            }
        );
        Outcome::Completed(id)
    }
}

/// The nodes an abort reason names: those after `missing` and `nK` of `nK unreachable`
/// (the format of `AbortReason`'s `Display`: `<why>; missing n1 n3`).
fn named_nodes(reason: &str) -> Vec<String> {
    let is_node = |t: &str| {
        t.strip_prefix('n')
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    let tokens: Vec<&str> = reason
        .split(|c: char| c.is_whitespace() || c == ';' || c == ',')
        .filter(|t| !t.is_empty())
        .collect();
    let mut named = Vec::new();
    let mut after_missing = false;
    for (i, t) in tokens.iter().enumerate() {
        if *t == "missing" {
            after_missing = true;
        } else if is_node(t) {
            if after_missing || tokens.get(i + 1) == Some(&"unreachable") {
                named.push((*t).to_owned());
            }
        } else {
            after_missing = false;
        }
    }
    named
}

/// Ids in the `nK: admin request: initiated snapshot nK@S` lines of a node log.
fn initiated_ids(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once("initiated snapshot "))
        .filter_map(|(_, rest)| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The cluster: its processes and every log each node's incarnations wrote.
struct Cluster {
    host: Launcher,
    dir: PathBuf,
    peers: PathBuf,
    snaps: PathBuf,
    nodes: Vec<NodeProcess>,
    logs: Vec<Vec<PathBuf>>,
}

impl Cluster {
    fn start(dir: &Path, fault_seed: u64) -> Cluster {
        let peers = dir.join("peers.toml");
        let addrs = loopback_addrs(NODES);
        write_peers(&peers, &addrs, &lossy_faults(fault_seed, 0.1));
        let mut cluster = Cluster {
            host: Launcher::host(),
            dir: dir.to_owned(),
            peers,
            snaps: dir.join("snaps"),
            nodes: Vec::new(),
            logs: vec![Vec::new(); NODES],
        };
        for i in 0..NODES {
            let node = cluster.launch(i, 0);
            cluster.nodes.push(node);
        }
        cluster
    }

    /// Starts incarnation `life` of node `i` (same id, same peers file, no `--restore`)
    /// and waits for its ready line.
    fn launch(&mut self, i: usize, life: usize) -> NodeProcess {
        let id = i.to_string();
        let log = self.dir.join(format!("n{i}-life{life}.log"));
        self.logs[i].push(log.clone());
        let peers = self.peers.to_str().expect("utf-8 path");
        self.host.node(&node_args(&id, peers), &log, READY_LIMIT)
    }

    fn restart(&mut self, i: usize, life: usize) {
        let node = self.launch(i, life);
        self.nodes[i] = node;
    }

    fn snapshot_args(&self, via: usize) -> Vec<String> {
        [
            "snapshot",
            "--peers",
            self.peers.to_str().expect("utf-8 path"),
            "--via",
            &via.to_string(),
            "--out",
            self.snaps.to_str().expect("utf-8 path"),
            "--timeout",
            "6s",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Runs `shutter snapshot --via VIA` to completion.
    fn snapshot(&self, via: usize) -> Output {
        let args = self.snapshot_args(via);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.host.run(&args, COMMAND_LIMIT)
    }

    /// Runs `shutter snapshot --via VIA` on a thread.
    fn spawn_snapshot(&self, via: usize) -> JoinHandle<Output> {
        let host = self.host.clone();
        let args = self.snapshot_args(via);
        std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            host.run(&args, COMMAND_LIMIT)
        })
    }

    /// How many snapshots node `i`'s current incarnation has initiated.
    fn initiated(&self, i: usize) -> usize {
        initiated_ids(&self.nodes[i].log_text()).len()
    }

    /// (b) across every incarnation's log: no id initiated twice.
    fn reused_initiations(&self) -> Vec<String> {
        let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut reused = Vec::new();
        for log in self.logs.iter().flatten() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            for id in initiated_ids(&text) {
                if let Some(first) = seen.insert(id.clone(), log.clone()) {
                    reused.push(format!(
                        "snapshot id {id} initiated twice: in {} and again in {}",
                        file_name(&first),
                        file_name(log)
                    ));
                }
            }
        }
        reused
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn join(handle: JoinHandle<Output>) -> Output {
    handle
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// (d) Classifies `first` (attempt 1 through `via`), then runs up to [`ATTEMPTS`] in all,
/// [`ATTEMPT_PAUSE`] apart, until one completes (aborts in between must name a node).
/// Returns the attempt that completed.
fn snapshot_eventually(
    cluster: &Cluster,
    tally: &mut Tally,
    via: usize,
    first: Output,
    ctx: &str,
) -> Option<u32> {
    let mut output = first;
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            std::thread::sleep(ATTEMPT_PAUSE);
            output = cluster.snapshot(via);
        }
        let ctx = format!("{ctx} attempt {attempt}");
        if let Outcome::Completed(_) = tally.classify(&output, via, &ctx, Expect::Normal) {
            return Some(attempt);
        }
    }
    None
}

/// The seed: `SHUTTER_CRASH_SEED`, or a fixed default so that CI makes the same
/// choices every run (the process timings vary anyway).
fn seed_from_env() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV}={s:?} is not a u64")),
        Err(_) => DEFAULT_SEED,
    }
}

fn crash_restart_rounds() {
    let seed = seed_from_env();
    let rounds: usize = std::env::var(ROUNDS_ENV)
        .ok()
        .map(|r| r.trim().parse().expect("SHUTTER_CRASH_ROUNDS is a number"))
        .unwrap_or(DEFAULT_ROUNDS);
    let replay = format!(
        "{SEED_ENV}={seed} {ROUNDS_ENV}={rounds} cargo test -p shutter-tests --test cluster_crash -- --nocapture"
    );
    println!("    seed {seed}, {rounds} rounds; replay with:\n    {replay}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = temp_dir("crash");
    // The fault injector's seed comes from the same seed (TOML integers are i64).
    let mut cluster = Cluster::start(&dir, seed & 0x7fff_ffff);
    let mut tally = Tally::default();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(500));

    for via in 0..NODES {
        let output = cluster.snapshot(via);
        tally.classify(&output, via, "before any crash", Expect::Normal);
    }

    let mut kills = 0;
    let mut rounds_done = 0;
    for round in 1..=rounds {
        // Every draw happens every round, so the sequence is the same whatever happens.
        let victim = rng.random_range(0..NODES);
        let other = (victim + rng.random_range(1..NODES)) % NODES;
        // 0: kill while idle; 1: right after a snapshot through another node was
        // requested; 2: right after one through the victim was requested.
        let during = rng.random_range(0..3u8);
        // 0: restart at once; 1: after a pause; 2: after snapshots through every live
        // node (which must abort, naming the victim).
        let down = rng.random_range(0..3u8);
        // A snapshot takes ~5 ms here: kills land before, during and after it.
        let kill_delay = Duration::from_millis(rng.random_range(0..=8));
        let idle = Duration::from_millis(rng.random_range(0..=300));
        let pause = Duration::from_millis(rng.random_range(50..=400));

        let in_flight = match during {
            0 => {
                std::thread::sleep(idle);
                println!("round {round}: kill -9 n{victim} while idle");
                None
            }
            _ => {
                let via = if during == 1 { other } else { victim };
                let before = cluster.initiated(via);
                let handle = cluster.spawn_snapshot(via);
                let asked = Instant::now();
                while cluster.initiated(via) == before && asked.elapsed() < INITIATE_LIMIT {
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(kill_delay);
                println!(
                    "round {round}: kill -9 n{victim} {} ms after a snapshot was initiated via n{via}",
                    kill_delay.as_millis()
                );
                Some((via, handle))
            }
        };
        cluster.nodes[victim].kill();
        kills += 1;
        let ctx = format!("round {round}");
        match down {
            0 => {}
            1 => std::thread::sleep(pause),
            _ => {
                let live: Vec<usize> = (0..NODES).filter(|&i| i != victim).collect();
                let handles: Vec<_> = live
                    .iter()
                    .map(|&via| (via, cluster.spawn_snapshot(via)))
                    .collect();
                for (via, h) in handles {
                    let output = join(h);
                    tally.classify(
                        &output,
                        via,
                        &format!("{ctx} (n{victim} down)"),
                        Expect::AbortNaming(victim),
                    );
                }
            }
        }
        cluster.restart(victim, round);
        println!("    n{victim} restarted (same id, same peers file, no --restore)");
        // (d) First attempts right away, through the victim and another node at once:
        // until the restarted process hears from a peer its clock knows nothing of its
        // previous life, which is when stale ids and inconsistent cuts would show.
        let first = [victim, other].map(|via| (via, cluster.spawn_snapshot(via)));
        if let Some((via, handle)) = in_flight {
            let output = join(handle);
            let expect = if via == victim {
                Expect::InitiatorKilled
            } else {
                Expect::Normal
            };
            tally.classify(
                &output,
                via,
                &format!("{ctx} (in flight at the kill)"),
                expect,
            );
        }
        // (d) Through the victim and through another node, each within a few attempts.
        for (via, handle) in first {
            let output = join(handle);
            let ctx = format!("{ctx} (after n{victim} restarted)");
            if snapshot_eventually(&cluster, &mut tally, via, output, &ctx).is_none() {
                tally.violation(format!(
                    "{ctx}: no snapshot via n{via} completed in {ATTEMPTS} attempts"
                ));
            }
        }
        for via in 0..NODES {
            let output = cluster.snapshot(via);
            tally.classify(&output, via, &format!("{ctx} (every node)"), Expect::Normal);
        }
        for reused in cluster.reused_initiations() {
            if tally.reuses.insert(reused.clone()) {
                tally.violation(format!("{ctx}: {reused}"));
            }
        }
        rounds_done = round;
        if !tally.violations.is_empty() {
            println!("    stopping after round {round}: violations found");
            break;
        }
    }

    let reasons: Vec<String> = tally
        .reasons
        .iter()
        .map(|(r, n)| format!("{n}x {r:?}"))
        .collect();
    println!(
        "    summary: seed {seed}, rounds {rounds_done}/{rounds}, kills {kills}, snapshots completed {} \
         (money not conserved in {}), aborted {}, interrupted {}, {:.1} s; abort reasons: [{}]",
        tally.completed,
        tally.money_not_conserved,
        tally.aborted,
        tally.interrupted,
        started.elapsed().as_secs_f64(),
        reasons.join(", ")
    );
    drop(cluster);
    if tally.violations.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    panic!(
        "{} violations (node logs and snapshots kept in {}):\n{}\nreplay: {replay}",
        tally.violations.len(),
        dir.display(),
        tally.violations.join("\n")
    );
}

fn main() -> ExitCode {
    test_main(&[("crash_restart_rounds", crash_restart_rounds)])
}
