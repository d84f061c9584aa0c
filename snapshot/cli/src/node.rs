//! `shutter node`: one bank node of a cluster described by a peers file, on real
//! sockets, until Ctrl-C or `--duration`. It serves the [`admin`]
//! channel, so `shutter snapshot` can ask it to initiate a snapshot.
//!
//! On start it prints one line `node nK ready: udp ADDR admin tcp ADDR` on stdout (scripts
//! and tests wait for it); on exit a final line with its balance and counters.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Serialize;
use shutter_vclock::NodeId;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::admin::{self, AdminRequest, Reply, Request};
use crate::app::{Shared, TaggedBank};
use crate::args::{NodeArgs, OnRestart};
use crate::key;
use crate::metrics;
use crate::peers::PeersFile;
use crate::resolve;
use crate::usage;
use shutter_snapshot::bank::{Bank, BankConfig, BankState};
use shutter_snapshot::checkpoint::CheckpointStore;
use shutter_snapshot::persist;
use shutter_snapshot::runtime::{NodeConfig, NodeEvent, NodeHandle};
use shutter_snapshot::wire::SnapshotId;

/// What `STATUS` answers and the node prints when it stops.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub id: u32,
    /// Current balance.
    pub balance: u64,
    /// Transfers sent.
    pub messages_sent: u64,
    /// Transfers delivered.
    pub messages_delivered: u64,
    /// The members now (smaller after `shutter remove`).
    #[serde(default)]
    pub members: Vec<u32>,
    /// Transfers refunded: the stack gave them back because their receiver restarted.
    #[serde(default)]
    pub messages_refunded: u64,
    /// Transfers delivered twice (must be 0).
    pub duplicates_delivered: u64,
    /// Transport retransmissions.
    pub retransmits: u64,
    /// Snapshots initiated here that completed.
    pub snapshots_completed: u64,
    /// Snapshots initiated here that aborted.
    pub snapshots_aborted: u64,
    /// Snapshots initiated here that failed the check before completion (must be 0).
    #[serde(default)]
    pub snapshots_failed_check: u64,
    /// What was dropped, by reason.
    #[serde(default)]
    pub dropped: Dropped,
    /// The snapshot this node was started from with `--restore`, if any.
    #[serde(default)]
    pub restored_from: Option<String>,
}

/// Datagrams, messages and admin requests refused, by reason (all counters only grow).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Dropped {
    /// Sealed datagrams failing authentication (forged, damaged, wrong key).
    pub auth_failed: u64,
    /// Authenticated datagrams seen before (replays, network duplicates).
    pub replayed: u64,
    /// Plain datagrams at a sealed node, or the reverse.
    pub wrong_protection: u64,
    /// Plain datagrams failing the CRC32C.
    pub corrupt: u64,
    /// Datagrams or envelopes that do not parse, or break the protocol.
    pub malformed: u64,
    /// Datagrams from a node outside the membership, or from an address other than the
    /// sender's.
    pub unknown_peer: u64,
    /// Datagrams of an older life of a peer, or for an older life of this node.
    pub stale_incarnation: u64,
    /// Admin connections that failed authentication.
    pub admin_refused: u64,
}

impl Dropped {
    /// The counters of `stats` and the admin channel's refusals.
    pub fn from_stats(stats: &shutter_snapshot::runtime::NodeStats, admin_refused: u64) -> Dropped {
        let c = &stats.transport.core;
        Dropped {
            auth_failed: c.auth_failed_dropped,
            replayed: c.replayed_dropped,
            wrong_protection: c.wrong_protection_dropped,
            corrupt: c.corrupt_dropped,
            malformed: c.malformed_dropped + stats.malformed_envelopes + stats.lean_undecodable,
            unknown_peer: c.unknown_peer_dropped
                + c.sender_mismatch_dropped
                + stats.non_member_dropped
                + stats.transport.driver.unknown_source_dropped,
            stale_incarnation: c.stale_incarnation_dropped,
            admin_refused,
        }
    }

    /// Every counter with its reason's name (the names of the JSON fields and of the
    /// metrics' `reason` label); `admin_refused` last, the only one not about datagrams.
    pub fn by_reason(&self) -> [(&'static str, u64); 8] {
        [
            ("auth_failed", self.auth_failed),
            ("replayed", self.replayed),
            ("wrong_protection", self.wrong_protection),
            ("corrupt", self.corrupt),
            ("malformed", self.malformed),
            ("unknown_peer", self.unknown_peer),
            ("stale_incarnation", self.stale_incarnation),
            ("admin_refused", self.admin_refused),
        ]
    }

    /// Sum over every reason.
    pub fn total(&self) -> u64 {
        self.by_reason().iter().map(|(_, n)| n).sum()
    }
}

async fn status(
    node: &NodeHandle,
    shared: &Shared,
    restored_from: Option<SnapshotId>,
) -> Result<NodeStatus> {
    // One request, so a transfer delivered in between cannot show in the balance but
    // not in the counters (the final money check relies on the two agreeing).
    let (stats, state): (_, BankState) = node.stats_and_state().await?;
    Ok(NodeStatus {
        id: node.id().0,
        balance: state.balance,
        messages_sent: stats.app_messages_sent,
        messages_delivered: stats.app_messages_delivered,
        members: stats.members.iter().map(|n| n.0).collect(),
        messages_refunded: stats.app_messages_returned,
        duplicates_delivered: shared.duplicates.load(Ordering::Relaxed),
        retransmits: stats.transport.core.retransmits,
        snapshots_completed: stats.snapshots.completed(),
        snapshots_aborted: stats.snapshots.aborted(),
        snapshots_failed_check: stats.snapshots.failed_checks(),
        dropped: Dropped::from_stats(&stats, shared.admin_refused.load(Ordering::Relaxed)),
        restored_from: restored_from.map(|id| id.to_string()),
    })
}

/// Restoring one node of a running cluster from a snapshot mixes two cuts (the others
/// keep their current states and the messages in flight), which creates or destroys
/// money silently. So before `--restore`, every other member is asked for its status: one
/// that answers and was not itself restored from the same snapshot is running on, and
/// the restore is refused, saying what to do instead.
async fn refuse_restore_into_a_live_cluster(
    peers: &PeersFile,
    me: NodeId,
    snapshot: SnapshotId,
    auth: &shutter_transport::Auth,
) -> Result<()> {
    let asks: Vec<_> = peers
        .members()
        .into_iter()
        .filter(|(n, _)| *n != me)
        .filter_map(|(n, _)| peers.admin_of(n).map(|a| (n, a)))
        .map(|(n, addr)| {
            let auth = auth.clone();
            tokio::spawn(async move {
                let reply =
                    admin::request(addr, &Request::Status, Duration::from_secs(1), &auth).await;
                (n, reply)
            })
        })
        .collect();
    for ask in asks {
        let Ok((n, Ok(Reply::Status(json)))) = ask.await else {
            continue; // not running (or not answering): nothing to mix with
        };
        let from = serde_json::from_str::<NodeStatus>(&json)
            .ok()
            .and_then(|s| s.restored_from);
        if from.as_deref() != Some(snapshot.to_string().as_str()) {
            anyhow::bail!(
                "{n} is running{}: restoring {me} alone from snapshot {snapshot} would mix two \
                 cuts and create or destroy money. Stop every node and restore all of them \
                 from the same file, or roll the running cluster back with \
                 `shutter rollback --to {snapshot}`",
                from.map(|f| format!(" (restored from {f})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `shutter node`.
pub async fn run(args: NodeArgs) -> Result<ExitCode> {
    let (peers, names) =
        PeersFile::load_with_names(&args.peers).map_err(|e| usage(e.to_string()))?;
    let id = NodeId(args.id);
    let Some(addr) = peers.addr_of(id) else {
        return Err(usage(format!(
            "{}: no node with id {} (the file has ids {})",
            args.peers.display(),
            args.id,
            peers
                .members()
                .iter()
                .map(|(n, _)| n.0.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let listen = args.listen.unwrap_or(addr);
    let admin_addr: SocketAddr = args
        .admin
        .or_else(|| peers.admin_of(id))
        .expect("the node is in the file");
    if args.tick.is_zero() || args.snapshot_timeout.is_zero() {
        return Err(usage("--tick and --snapshot-timeout must be positive"));
    }
    let auth = key::cluster_auth(&args.key, &peers, &args.peers)?;
    let mut cfg = NodeConfig {
        id,
        listen,
        peers: peers.members(),
        faults: peers.faults.clone(),
        channels: peers.channels_of(id),
        ..args
            .algorithm
            .node_config(args.snapshot_timeout, args.tick, args.seed)
    };
    cfg.transport.auth = auth.clone();
    let shared = Arc::new(Shared::default());
    let bank = BankConfig {
        seed: args.seed,
        // A joining node brings no money: the cluster's total stays what it was.
        initial: if args.join { 0 } else { args.initial },
        ..BankConfig::default()
    };
    let process = TaggedBank::new(Bank::new(id, bank), shared.clone());
    let data_dir = args.data_dir.clone().unwrap_or_else(|| {
        args.peers
            .parent()
            .unwrap_or(Path::new("."))
            .join("shutter-data")
            .join(format!("n{}", id.0))
    });
    let members: Vec<NodeId> = peers.members().iter().map(|(n, _)| *n).collect();
    // Opened here to report what is there; the node's runtime owns it from now on.
    let (_, scan) = CheckpointStore::open(&data_dir, id, &members, args.keep_checkpoints)?;
    for skipped in &scan.skipped {
        tracing::warn!(node = %id, "checkpoint skipped: {skipped}");
    }
    match scan.checkpoints.last() {
        Some((path, c)) => tracing::info!(
            node = %id,
            "{} checkpoints in {}, newest {} ({})",
            scan.checkpoints.len(),
            data_dir.display(),
            c.id(),
            path.display()
        ),
        None => tracing::info!(node = %id, "no checkpoints yet in {}", data_dir.display()),
    }
    cfg.checkpoints = Some((data_dir.clone(), args.keep_checkpoints));
    cfg.roll_back_on_restart = args.on_restart == OnRestart::Rollback;
    cfg.join = args.join;
    if args.join && scan.checkpoints.is_empty() {
        tracing::info!(
            node = %id,
            "--join: waiting until a member adds this node (`shutter add --node {}`)",
            id.0
        );
    }
    if let (OnRestart::Rejoin, Some((_, c))) = (args.on_restart, scan.checkpoints.last()) {
        tracing::warn!(
            node = %id,
            "--on-restart rejoin: starting with a fresh state; the state of snapshot {} and everything after it is not restored",
            c.id()
        );
    }
    // Bind the admin channel first: if it is taken, fail before joining the cluster.
    let listener = TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("cannot bind the admin channel on tcp {admin_addr}"))?;
    let metrics_listener = match args.metrics {
        Some(addr) => Some(crate::metrics::bind(addr).await?),
        None => None,
    };
    let mut restored_from = None;
    let mut node = match &args.restore {
        Some(path) => {
            let snap = persist::load(path)
                .with_context(|| format!("cannot load snapshot {}", path.display()))?;
            refuse_restore_into_a_live_cluster(&peers, id, snap.id, &auth).await?;
            restored_from = Some(snap.id);
            NodeHandle::restore(cfg, process, &snap)
                .await
                .with_context(|| format!("cannot restore {id} from {}", path.display()))?
        }
        None => NodeHandle::spawn(cfg, process)
            .await
            .with_context(|| format!("cannot start {id}"))?,
    };
    println!(
        "node {id} ready: udp {} admin tcp {}{}",
        node.local_addr(),
        listener.local_addr().unwrap_or(admin_addr),
        args.restore
            .as_ref()
            .map(|p| format!(" (restored from {})", p.display()))
            .unwrap_or_default()
    );
    std::io::stdout().flush()?;
    let (scrape_tx, mut scrapes) = mpsc::channel::<metrics::Scrape>(4);
    let metrics_server = metrics_listener.map(|l| {
        tracing::info!(node = %id, "metrics on http://{}/metrics", l.local_addr().map(|a| a.to_string()).unwrap_or_default());
        tokio::spawn(metrics::serve(l, scrape_tx))
    });
    let mut aborted_by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
    // Peers named by DNS are looked up again while the node runs (see `resolve`).
    let (move_tx, mut moves) = mpsc::channel::<(NodeId, SocketAddr)>(16);
    let look_now = Arc::new(tokio::sync::Notify::new());
    let names: BTreeMap<NodeId, String> = names.into_iter().filter(|(n, _)| *n != id).collect();
    let resolver = (!names.is_empty()).then(|| {
        let current = peers
            .members()
            .into_iter()
            .filter(|(n, _)| names.contains_key(n))
            .collect();
        tokio::spawn(resolve::watch(
            names,
            current,
            resolve::RECHECK,
            look_now.clone(),
            resolve::system_lookup,
            move_tx,
        ))
    });

    let (tx, mut requests) = mpsc::channel::<AdminRequest>(16);
    let server = tokio::spawn(admin::serve(
        listener,
        tx,
        auth,
        shared.admin_refused.clone(),
    ));
    let mut pending: BTreeMap<SnapshotId, oneshot::Sender<Reply>> = BTreeMap::new();
    // Rollbacks (and removals) requested here, waiting for the cluster to run again.
    // With a membership change: the node, and whether it is added (else removed).
    type Waiting = (
        Option<SnapshotId>,
        Option<(NodeId, bool)>,
        oneshot::Sender<Reply>,
    );
    let mut rollbacks: Vec<Waiting> = Vec::new();
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    // Ctrl-C or SIGTERM stops the node (with its final line), also when `--duration` is set.
    let stop = async {
        let interrupted = crate::stop_requested();
        match deadline {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = interrupted => {}
                }
            }
            None => interrupted.await,
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some((peer, addr)) = moves.recv() => {
                match node.set_peer_addr(peer, addr).await {
                    Ok(()) => tracing::info!(node = %id, "{peer} now resolves to {addr}: sending there"),
                    Err(e) => tracing::warn!(node = %id, "{peer} now resolves to {addr}, not usable: {e}"),
                }
            }
            Some(scrape) = scrapes.recv() => {
                let text = match node.stats().await {
                    Ok(stats) => metrics::render(&[metrics::NodeSample {
                        stats,
                        aborted_by_reason: aborted_by_reason.clone(),
                        admin_refused: shared.admin_refused.load(Ordering::Relaxed),
                    }]),
                    Err(e) => format!("# node stopped: {e}\n# EOF\n"),
                };
                let _ = scrape.send(text);
            }
            req = requests.recv() => {
                let Some(req) = req else { break };
                match req.request {
                    Request::Status => {
                        let reply = match status(&node, &shared, restored_from).await {
                            Ok(s) => Reply::Status(serde_json::to_string(&s)?),
                            Err(e) => Reply::Error(format!("{e:#}")),
                        };
                        let _ = req.reply.send(reply);
                    }
                    Request::Rollback { to } => match node.roll_back(to).await {
                        Ok(()) => {
                            tracing::info!(node = %id, "admin request: rolling the cluster back");
                            rollbacks.push((to, None, req.reply));
                        }
                        Err(e) => {
                            let _ = req.reply.send(Reply::Error(e.to_string()));
                        }
                    },
                    Request::Add { node: new, addr } => match node.add_member(new, addr).await {
                        Ok(()) => {
                            tracing::info!(node = %id, "admin request: adding {new} at {addr}");
                            rollbacks.push((None, Some((new, true)), req.reply));
                        }
                        Err(e) => {
                            let _ = req.reply.send(Reply::Error(e.to_string()));
                        }
                    },
                    Request::Remove { node: gone } => match node.remove_member(gone).await {
                        Ok(()) => {
                            tracing::info!(node = %id, "admin request: removing {gone} from the cluster");
                            rollbacks.push((None, Some((gone, false)), req.reply));
                        }
                        Err(e) => {
                            let _ = req.reply.send(Reply::Error(e.to_string()));
                        }
                    },
                    Request::Snapshot { .. } => match node.initiate().await {
                        Ok(sid) => {
                            tracing::info!(node = %id, "admin request: initiated snapshot {sid}");
                            pending.insert(sid, req.reply);
                        }
                        Err(e) => {
                            let _ = req.reply.send(Reply::Error(e.to_string()));
                        }
                    },
                }
            }
            event = node.next_event() => {
                let Some(event) = event else {
                    anyhow::bail!("node {id} stopped unexpectedly");
                };
                match event {
                    NodeEvent::Completed(snap) => {
                        tracing::info!(
                            node = %id,
                            "snapshot {} completed in {:.1} ms",
                            snap.id,
                            snap.timings.latency_micros() as f64 / 1000.0
                        );
                        if let Some(reply) = pending.remove(&snap.id) {
                            let _ = reply.send(Reply::Snapshot(persist::encode(&snap)));
                        }
                    }
                    NodeEvent::Aborted { id: sid, reason } => {
                        tracing::warn!(node = %id, "snapshot {sid} aborted: {reason}");
                        if matches!(reason.why, shutter_snapshot::AbortWhy::Unreachable(_)) {
                            // The peer stopped answering: perhaps its name moved.
                            look_now.notify_one();
                        }
                        if sid.initiator == id {
                            *aborted_by_reason.entry(metrics::reason_label(&reason.why)).or_default() += 1;
                        }
                        if let Some(reply) = pending.remove(&sid) {
                            let _ = reply.send(Reply::Aborted(reason.to_string()));
                        }
                    }
                    NodeEvent::Committed(_) => {}
                    NodeEvent::Resumed { to } => {
                        match to {
                            Some(sid) => tracing::warn!(node = %id, "the cluster rolled back to snapshot {sid}; running"),
                            None => tracing::warn!(node = %id, "no snapshot is held by every member: nothing rolled back; running"),
                        }
                        // Snapshots in flight died with the rollback.
                        for (_, reply) in std::mem::take(&mut pending) {
                            let _ = reply.send(Reply::Aborted("the cluster rolled back".into()));
                        }
                        let members = node.stats().await.map(|s| s.members).unwrap_or_default();
                        for (wanted, change, reply) in rollbacks.drain(..) {
                            let _ = reply.send(match (to, wanted) {
                                _ if change.is_some_and(|(n, add)| !add && members.contains(&n)) => Reply::Error(format!(
                                    "{} is still a member: no snapshot held by every other member has its part (one must complete after its initiator started keeping replicas)",
                                    change.map(|(n, _)| n.to_string()).unwrap_or_default()
                                )),
                                _ if change.is_some_and(|(n, add)| add && !members.contains(&n)) => Reply::Error(format!(
                                    "{} did not join: is it running with --join, at the address in the peers file? (see its log)",
                                    change.map(|(n, _)| n.to_string()).unwrap_or_default()
                                )),
                                (Some(sid), _) => Reply::RolledBack(sid.to_string()),
                                (None, Some(w)) => Reply::Error(format!(
                                    "snapshot {w} is not held by every node: nothing rolled back"
                                )),
                                (None, None) => Reply::Error(
                                    "no snapshot is held by every node: nothing rolled back".into(),
                                ),
                            });
                        }
                    }
                    NodeEvent::LocalCut { .. } => {}
                }
            }
        }
        // Clients that gave up leave closed senders behind.
        pending.retain(|_, reply| !reply.is_closed());
    }
    server.abort();
    for task in [metrics_server, resolver].into_iter().flatten() {
        task.abort();
    }
    shared.paused.store(true, Ordering::Relaxed);
    let last = status(&node, &shared, restored_from).await.ok();
    node.shutdown().await.context("shutting down")?;
    if let Some(s) = last {
        println!("node {id} stopped: {}", serde_json::to_string(&s)?);
    }
    Ok(ExitCode::SUCCESS)
}
