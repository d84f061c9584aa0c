//! `shutter status`: asks every node of a running cluster (or the one named by `--via`)
//! for its status over the admin channel, all at once, and prints one row per node:
//! balance, transfers sent and delivered, duplicates (must be 0), retransmissions, the
//! snapshots it initiated, and everything it dropped (by reason with `--json`). A node
//! that does not answer gets a row saying why.
//! Exit code 1 if any node did not answer.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use shutter_vclock::NodeId;

use crate::admin::{self, Reply, Request};
use crate::args::StatusArgs;
use crate::key;
use crate::node::NodeStatus;
use crate::peers::PeersFile;
use crate::usage;
use shutter_transport::Auth;

/// One node's answer, or why there is none.
type Answer = (NodeId, std::result::Result<NodeStatus, String>);

async fn ask(id: NodeId, addr: std::net::SocketAddr, timeout: Duration, auth: Auth) -> Answer {
    let reply = admin::request(addr, &Request::Status, timeout, &auth).await;
    let status = match reply {
        Ok(Reply::Status(json)) => {
            serde_json::from_str(&json).map_err(|e| format!("unreadable status: {e}"))
        }
        Ok(Reply::Error(e)) => Err(format!("error: {e}")),
        Ok(_) => Err("answered something else than a status".into()),
        Err(e) => Err(format!("{e:#}")),
    };
    (id, status)
}

/// `shutter status`.
pub async fn run(args: StatusArgs) -> Result<ExitCode> {
    let peers = PeersFile::load(&args.peers).map_err(|e| usage(e.to_string()))?;
    let mut targets = Vec::new();
    for (id, _) in peers.members() {
        if args.via.is_some_and(|v| v != id.0) {
            continue;
        }
        let addr = peers.admin_of(id).expect("a member has an admin address");
        targets.push((id, addr));
    }
    if targets.is_empty() {
        return Err(usage(format!(
            "{}: --via {}: no such node in the peers file",
            args.peers.display(),
            args.via.unwrap_or_default()
        )));
    }
    let auth = key::cluster_auth(&args.key, &peers, &args.peers)?;
    // All at once: N dead nodes cost one timeout, not N.
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|(id, addr)| tokio::spawn(ask(id, addr, args.timeout, auth.clone())))
        .collect();
    let mut answers: Vec<Answer> = Vec::with_capacity(tasks.len());
    for t in tasks {
        answers.push(t.await?);
    }
    let mut all = true;
    if args.json {
        for (id, a) in &answers {
            match a {
                Ok(s) => println!("{}", serde_json::to_string(s)?),
                Err(e) => {
                    all = false;
                    println!("{}", serde_json::json!({ "id": id.0, "error": e }));
                }
            }
        }
    } else {
        println!(
            "{:>5} {:>9} {:>9} {:>10} {:>5} {:>8} {:>10} {:>8} {:>8}",
            "node", "balance", "sent", "delivered", "dup", "retx", "snaps ok", "aborted", "dropped"
        );
        for (id, a) in &answers {
            match a {
                Ok(s) => println!(
                    "{:>5} {:>9} {:>9} {:>10} {:>5} {:>8} {:>10} {:>8} {:>8}",
                    id.to_string(),
                    s.balance,
                    s.messages_sent,
                    s.messages_delivered,
                    s.duplicates_delivered,
                    s.retransmits,
                    s.snapshots_completed,
                    s.snapshots_aborted,
                    s.dropped.total()
                ),
                Err(e) => {
                    all = false;
                    println!("{:>5} no answer: {e}", id.to_string());
                }
            }
        }
    }
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
