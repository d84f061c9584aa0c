//! Three `shutter node` processes on loopback, `shutter snapshot` through the admin
//! channel, the nodes' checkpoints of it, `shutter inspect` on the saved file, then a
//! restored cluster from that file.

mod cli_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cli_support::{NodeProcess, free_port, run, temp_dir, text, write_peers};
use shutter_snapshot::bank::BankInvariant;
use shutter_snapshot::{LocalReport, SnapshotId, checkpoint, persist, verify};
use shutter_vclock::NodeId;

const LIMIT: Duration = Duration::from_secs(60);

fn start_cluster(peers: &Path, extra: &[&str]) -> Vec<NodeProcess> {
    (0..3)
        .map(|i| {
            let id = i.to_string();
            let mut args = vec!["--id", &id, "--peers", peers.to_str().unwrap()];
            args.extend_from_slice(&["--duration", "40s", "--tick", "10ms"]);
            args.extend_from_slice(extra);
            NodeProcess::start(&args, Duration::from_secs(20))
        })
        .collect()
}

fn take_snapshot(peers: &Path, via: &str, out: &Path) -> PathBuf {
    let out = run(
        &[
            "snapshot",
            "--peers",
            peers.to_str().unwrap(),
            "--via",
            via,
            "--out",
            out.to_str().unwrap(),
            "--timeout",
            "15s",
        ],
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("ok    cut consistency"), "{stdout}");
    let saved = stdout
        .lines()
        .find_map(|l| l.strip_prefix("saved "))
        .unwrap_or_else(|| panic!("no saved line: {stdout}"));
    PathBuf::from(saved)
}

/// The checkpoint of `id` in `store`, waiting a few seconds for the node to write it.
fn wait_for_checkpoint(store: &Path, id: SnapshotId) -> LocalReport {
    let start = Instant::now();
    loop {
        let found = std::fs::read_dir(store)
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|e| {
                let bytes = std::fs::read(e.path()).ok()?;
                let c = checkpoint::decode(&bytes).ok()?;
                (c.part.id == id).then_some(c.part)
            });
        if let Some(part) = found {
            return part;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no checkpoint of {id} in {}",
            store.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn node_snapshot_inspect_and_restore_across_processes() {
    let dir = temp_dir("node");
    let peers = dir.join("peers.toml");
    write_peers(&peers, &[free_port(), free_port(), free_port()]);
    let nodes = start_cluster(&peers, &[]);
    std::thread::sleep(Duration::from_millis(800));

    let file = take_snapshot(&peers, "1", &dir);
    let snap = persist::load(&file).unwrap();
    assert_eq!(snap.states.len(), 3);
    assert_eq!(snap.id.initiator.0, 1);
    verify::check_all(&snap, &[&BankInvariant { total: 3_000 }]).unwrap();
    // Every node commits its part of the completed snapshot to its checkpoint store
    // (default: shutter-data/n<ID> next to the peers file) once it learns the outcome.
    for i in 0..3u32 {
        let store = dir.join("shutter-data").join(format!("n{i}"));
        let part = wait_for_checkpoint(&store, snap.id);
        let node = NodeId(i);
        assert_eq!(Some(&part.state), snap.states.get(&node), "n{i} state");
        assert_eq!(Some(&part.cut), snap.cuts.get(&node), "n{i} cut");
    }

    // `shutter rollback`: the whole cluster goes back to a snapshot every node holds,
    // the one named, or the newest; one nobody holds is refused with the reason.
    let p = peers.to_str().unwrap();
    let first = snap.id.to_string();
    let out = run(
        &["rollback", "--peers", p, "--via", "2", "--to", &first],
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("the cluster rolled back to snapshot {first}")),
        "{stdout}"
    );
    let out = run(
        &["rollback", "--peers", p, "--via", "0", "--to", "n1@7"],
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("snapshot n1@7 is not held by every node"),
        "{stderr}"
    );
    let out = run(&["rollback", "--peers", p], LIMIT);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("the cluster rolled back to snapshot"),
        "{stdout}"
    );
    // And the cluster runs on from there with the money of the snapshot.
    let after = persist::load(&take_snapshot(&peers, "0", &dir.join("after-rollback"))).unwrap();
    verify::check_all(&after, &[&BankInvariant { total: 3_000 }]).unwrap();

    let out = run(&["inspect", file.to_str().unwrap()], LIMIT);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("n0") && stdout.contains("balance"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok    money conserved (total 3000)"),
        "{stdout}"
    );
    // Restoring one node of the live cluster is refused, saying why: the others run on.
    let mut nodes = nodes;
    drop(nodes.remove(0));
    let out = run(
        &[
            "node",
            "--id",
            "0",
            "--peers",
            peers.to_str().unwrap(),
            "--restore",
            file.to_str().unwrap(),
            "--duration",
            "5s",
        ],
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("is running") && stderr.contains("would mix two cuts"),
        "{stderr}"
    );
    drop(nodes);

    // A new cluster (new ports) resumes from the file and conserves the money.
    let peers2 = dir.join("peers2.toml");
    write_peers(&peers2, &[free_port(), free_port(), free_port()]);
    let restored = start_cluster(&peers2, &["--restore", file.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(500));
    let file2 = take_snapshot(&peers2, "2", &dir.join("after"));
    let snap2 = persist::load(&file2).unwrap();
    verify::check_all(&snap2, &[&BankInvariant { total: 3_000 }]).unwrap();
    assert!(snap2.id.s > snap.id.s || snap2.id.initiator != snap.id.initiator);
    drop(restored);
    let _ = std::fs::remove_dir_all(&dir);
}
