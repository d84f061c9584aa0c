//! `shutter snapshot`: asks a running cluster for a snapshot through one node's admin
//! channel, checks it (file checksum, cut consistency, channel states, money conserved)
//! and saves it atomically with [`shutter_snapshot::persist::save`] as
//! `OUT/snapshot-n<K>-<S>.snap`. Exit code 1 if the snapshot aborted or fails a check.

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use shutter_vclock::NodeId;

use crate::admin::{self, Reply, Request};
use crate::args::SnapshotArgs;
use crate::inspect;
use crate::key;
use crate::peers::PeersFile;
use crate::usage;
use shutter_snapshot::persist;

/// `shutter snapshot`.
pub async fn run(args: SnapshotArgs) -> Result<ExitCode> {
    let peers = PeersFile::load(&args.peers).map_err(|e| usage(e.to_string()))?;

    let via = match args.via {
        Some(v) => NodeId(v),
        None => peers.members()[0].0,
    };
    let Some(addr) = peers.admin_of(via) else {
        return Err(usage(format!(
            "{}: --via {}: no such node in the peers file",
            args.peers.display(),
            via.0
        )));
    };
    let auth = key::cluster_auth(&args.key, &peers, &args.peers)?;
    let reply = admin::request(
        addr,
        &Request::Snapshot {
            timeout: args.timeout,
        },
        args.timeout + std::time::Duration::from_secs(2),
        &auth,
    )
    .await
    .with_context(|| format!("asking {via} for a snapshot"))?;
    let bytes = match reply {
        Reply::Snapshot(bytes) => bytes,
        Reply::Aborted(why) => {
            eprintln!("snapshot aborted: {why}");
            return Ok(ExitCode::FAILURE);
        }
        Reply::Error(e) => bail!("{via} refused: {e}"),
        Reply::Status(_) | Reply::RolledBack(_) => {
            bail!("{via} answered something else than a snapshot")
        }
    };
    let snap = persist::decode(&bytes).context("the snapshot received does not decode")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let path = args
        .out
        .join(format!("snapshot-{}-{}.snap", snap.id.initiator, snap.id.s));
    persist::save(&path, &snap).with_context(|| format!("saving {}", path.display()))?;
    let total = args.total.unwrap_or_else(|| inspect::default_total(&snap));
    let mut ok = true;
    println!(
        "snapshot {} of {} nodes, {} recorded messages, {:.1} ms",
        snap.id,
        snap.states.len(),
        snap.recorded_messages(),
        snap.timings.latency_micros() as f64 / 1000.0
    );
    for (name, r) in inspect::verify(&snap, total) {
        match r {
            Ok(()) => println!("  ok    {name}"),
            Err(e) => {
                ok = false;
                println!("  FAIL  {name}: {e}");
            }
        }
    }
    println!("saved {}", path.display());
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
