//! `shutter rollback`: asks one node of a running cluster (`--via`) to roll the whole
//! cluster back to a snapshot every node holds in its checkpoint store: the newest, or
//! the one named by `--to`. Every node restores its part (state and the messages that
//! were in flight at the cut) and the cluster runs on from there. Prints the snapshot
//! gone back to; exit code 1 if the cluster could not roll back (the error says why).

use std::process::ExitCode;

use anyhow::{Result, bail};
use shutter_vclock::NodeId;

use crate::admin::{self, Reply, Request, parse_snapshot_id};
use crate::args::RollbackArgs;
use crate::key;
use crate::peers::PeersFile;
use crate::usage;

/// `shutter rollback`.
pub async fn run(args: RollbackArgs) -> Result<ExitCode> {
    let peers = PeersFile::load(&args.peers).map_err(|e| usage(e.to_string()))?;
    let to = match &args.to {
        Some(text) => Some(parse_snapshot_id(text).map_err(|e| usage(format!("--to: {e}")))?),
        None => None,
    };
    let Some(addr) = peers.admin_of(NodeId(args.via)) else {
        return Err(usage(format!(
            "{}: --via {}: no such node in the peers file",
            args.peers.display(),
            args.via
        )));
    };
    let auth = key::cluster_auth(&args.key, &peers, &args.peers)?;
    match admin::request(addr, &Request::Rollback { to }, args.timeout, &auth).await? {
        Reply::RolledBack(id) => {
            println!("the cluster rolled back to snapshot {id}");
            Ok(ExitCode::SUCCESS)
        }
        Reply::Error(e) => bail!("n{} refused: {e}", args.via),
        other => bail!("n{} answered something else: {other:?}", args.via),
    }
}
