//! `shutter rollback`: asks one node of a running cluster (`--via`) to roll the whole
//! cluster back to a snapshot every node holds in its checkpoint store: the newest, or
//! the one named by `--to`. Every node restores its part (state and the messages that
//! were in flight at the cut) and the cluster runs on from there. Prints the snapshot
//! gone back to; exit code 1 if the cluster could not roll back (the error says why).
//!
//! `shutter remove` is the same round without one member that is dead for good: the
//! others go back to a snapshot whose initiator kept that member's part, and it
//! inherits it (the bank: the member's money and the transfers on their way to it).

use std::process::ExitCode;

use anyhow::{Result, bail};
use shutter_vclock::NodeId;

use crate::admin::{self, Reply, Request, parse_snapshot_id};
use crate::args::{KeyArgs, MemberArgs, RollbackArgs};
use crate::key;
use crate::peers::PeersFile;
use crate::usage;

/// Asks node `via` (from the peers file at `path`) to coordinate `request`, a
/// rollback round, and waits for it: the snapshot the cluster went back to, or an error
/// saying why not.
async fn round(
    peers: &PeersFile,
    path: &std::path::Path,
    via: u32,
    key: &KeyArgs,
    timeout: std::time::Duration,
    request: &Request,
) -> Result<String> {
    let addr = peers.admin_of(NodeId(via)).ok_or_else(|| {
        usage(format!(
            "{}: --via {via}: no such node in the peers file",
            path.display()
        ))
    })?;
    let auth = key::cluster_auth(key, peers, path)?;
    match admin::request(addr, request, timeout, &auth).await? {
        Reply::RolledBack(id) => Ok(id),
        Reply::Error(e) => bail!("n{via} refused: {e}"),
        other => bail!("n{via} answered something else: {other:?}"),
    }
}

/// `shutter rollback`.
pub async fn run(args: RollbackArgs) -> Result<ExitCode> {
    let peers = PeersFile::load(&args.peers).map_err(|e| usage(e.to_string()))?;
    let to = match &args.to {
        Some(text) => Some(parse_snapshot_id(text).map_err(|e| usage(format!("--to: {e}")))?),
        None => None,
    };
    let request = Request::Rollback { to };
    let id = round(
        &peers,
        &args.peers,
        args.via,
        &args.key,
        args.timeout,
        &request,
    )
    .await?;
    println!("the cluster rolled back to snapshot {id}");
    Ok(ExitCode::SUCCESS)
}

/// The peers file of `shutter remove`/`add`, the node's id and address: refused as a
/// usage error if the file does not list the node (`missing` says why that matters) or
/// if `--via` names the node itself (`itself` says what to do).
fn member_target(
    args: &MemberArgs,
    missing: &str,
    itself: &str,
) -> Result<(PeersFile, NodeId, std::net::SocketAddr)> {
    let peers = PeersFile::load(&args.peers).map_err(|e| usage(e.to_string()))?;
    let node = NodeId(args.node);
    let Some(addr) = peers.addr_of(node) else {
        return Err(usage(format!(
            "{}: --node {}: {missing}",
            args.peers.display(),
            args.node
        )));
    };
    if args.via == args.node {
        return Err(usage(format!("--via {}: {itself}", args.via)));
    }
    Ok((peers, node, addr))
}

/// `shutter remove`.
pub async fn remove(args: MemberArgs) -> Result<ExitCode> {
    let (peers, gone, _) = member_target(
        &args,
        "no such node in the peers file",
        "the node being removed cannot coordinate its own removal; name another",
    )?;
    let request = Request::Remove { node: gone };
    let id = round(
        &peers,
        &args.peers,
        args.via,
        &args.key,
        args.timeout,
        &request,
    )
    .await?;
    println!(
        "{gone} removed: the cluster went back to snapshot {id}, and a member inherited {gone}'s part"
    );
    println!(
        "delete {gone} from {} before restarting any node (its checkpoints now belong to the smaller cluster)",
        args.peers.display()
    );
    println!(
        "the money stays the opening money of all {} nodes: check later snapshots with `--total` (default: the nodes in the snapshot x 1000)",
        peers.members().len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `shutter add`.
pub async fn add(args: MemberArgs) -> Result<ExitCode> {
    let (peers, new, addr) = member_target(
        &args,
        "the peers file must list the new node (with its address)",
        "the new node cannot coordinate its own addition; name a running member",
    )?;
    let request = Request::Add { node: new, addr };
    let id = round(
        &peers,
        &args.peers,
        args.via,
        &args.key,
        args.timeout,
        &request,
    )
    .await?;
    println!(
        "{new} added: the cluster went back to snapshot {id} and {new} started from an empty account"
    );
    Ok(ExitCode::SUCCESS)
}
