//! Bad input gives a clear message naming what and where, exit code 2 for usage errors
//! and 1 for runtime failures.

mod cli_support;

use std::time::Duration;

use cli_support::{run, temp_dir, text};

const LIMIT: Duration = Duration::from_secs(30);

fn fails(args: &[&str], code: i32, needles: &[&str]) {
    let out = run(args, LIMIT);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: expected {n:?} in {stderr}");
    }
}

#[test]
fn bad_flags_are_usage_errors() {
    fails(
        &["demo", "--algorithm", "paxos"],
        2,
        &[
            "invalid value 'paxos'",
            "--algorithm",
            "mattern",
            "chandy-lamport",
        ],
    );
    fails(
        &["demo", "--loss", "1.5"],
        2,
        &["--loss", "1.5 is not a probability in [0, 1]"],
    );
    fails(&["demo", "--dup", "x"], 2, &["--dup", "not a number"]);
    fails(&["demo", "--interval", "2h"], 2, &["unknown unit"]);
    // A bare number used to mean milliseconds: `--duration 15` ran 15 ms and passed.
    fails(
        &["demo", "--duration", "15"],
        2,
        &["--duration", "needs a unit: 15s or 15ms"],
    );
    fails(
        &["demo", "--partition", "1s..2s:0,1"],
        2,
        &["--partition", "'|' or '>'"],
    );
    fails(
        &["demo", "--nodes", "4", "--partition", "1s..2s:0|9"],
        2,
        &["--partition names node 9", "0..3"],
    );
    fails(&["demo", "--nodes", "1"], 2, &["--nodes"]);
    fails(&["frobnicate"], 2, &["unrecognized subcommand"]);
}

#[test]
fn bad_peers_files_say_what_and_where() {
    let dir = temp_dir("errors");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[nodes]]\nid = 0\naddr = \"127.0.0.1\"\n").unwrap();
    let bad_s = bad.to_str().unwrap();
    fails(
        &["node", "--id", "0", "--peers", bad_s],
        2,
        &["bad.toml", "line 3"],
    );

    std::fs::write(
        &bad,
        "[[nodes]]\nid = 0\naddr = \"127.0.0.1:9\"\n[[nodes]]\nid = 0\naddr = \"127.0.0.1:10\"\n",
    )
    .unwrap();
    fails(
        &["node", "--id", "0", "--peers", bad_s],
        2,
        &["nodes[1]: id 0 appears twice"],
    );
    fails(&["snapshot", "--peers", bad_s], 2, &["appears twice"]);

    std::fs::write(
        &bad,
        "[[nodes]]\nid = 0\naddr = \"127.0.0.1:9\"\nport = 1\n",
    )
    .unwrap();
    fails(
        &["node", "--id", "0", "--peers", bad_s],
        2,
        &["bad.toml", "port"],
    );

    std::fs::write(&bad, "[[nodes]]\nid = 0\naddr = \"127.0.0.1:9\"\n").unwrap();
    fails(
        &["node", "--id", "5", "--peers", bad_s],
        2,
        &["no node with id 5"],
    );

    let missing = dir.join("missing.toml");
    fails(
        &["node", "--id", "0", "--peers", missing.to_str().unwrap()],
        2,
        &["cannot read peers file", "missing.toml"],
    );
    fails(
        &["status", "--peers", missing.to_str().unwrap()],
        2,
        &["cannot read peers file", "missing.toml"],
    );
    fails(
        &["status", "--peers", bad_s, "--via", "5"],
        2,
        &["--via 5: no such node"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_files_are_runtime_errors() {
    let dir = temp_dir("badfiles");
    let junk = dir.join("junk.snap");
    std::fs::write(&junk, b"definitely not a snapshot").unwrap();
    fails(
        &["inspect", junk.to_str().unwrap()],
        1,
        &["junk.snap", "not a shutter snapshot file"],
    );
    fails(
        &["report", dir.join("nope").to_str().unwrap()],
        1,
        &["nope"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_demo_that_completes_no_snapshot_fails() {
    // The only snapshot starts inside a partition and aborts: nothing was proven.
    let out = run(
        &[
            "demo",
            "--nodes",
            "2",
            "--snapshots",
            "1",
            "--quiet",
            "--snapshot-timeout",
            "300ms",
            "--partition",
            "0s..1s:0|1",
        ],
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("no snapshot completed") && stdout.contains("result: FAIL"),
        "{stdout}"
    );
}

#[test]
fn each_cause_is_said_once() {
    // The io error used to be printed twice: "...: No such file (os error 2): No such
    // file (os error 2)".
    let out = run(
        &["status", "--peers", "/nonexistent/peers.toml", "--insecure"],
        LIMIT,
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/peers.toml"), "{stderr}");
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    // `shutter report DIR | head -1`: the reader leaves before the table is written. It
    // used to print "error: Broken pipe" and exit 1.
    let dir = temp_dir("closed-pipe");
    let out = run(
        &[
            "demo",
            "--nodes",
            "2",
            "--snapshots",
            "2",
            "--interval",
            "100ms",
            "--quiet",
            "--out",
            dir.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let mut child = cli_support::shutter()
        .args(["report", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert!(out.status.success(), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkpoint directory that cannot be created stops `shutter node` before it joins the
/// cluster, with an error naming the directory.
#[test]
fn an_unusable_data_dir_is_named() {
    let dir = temp_dir("datadir");
    let peers = dir.join("peers.toml");
    cli_support::write_peers(
        &peers,
        &[cli_support::free_port(), cli_support::free_port()],
    );
    let file = dir.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let data = file.join("data");
    fails(
        &[
            "node",
            "--id",
            "0",
            "--peers",
            peers.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        1,
        &["checkpoint directory", data.to_str().unwrap()],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Report paths that cannot be written are refused before the run (they used to fail
/// only after it, losing the summary), as usage errors naming the flag.
#[test]
fn unusable_output_paths_are_refused_before_the_run() {
    let dir = temp_dir("outputs");
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let quick = ["demo", "--nodes", "2", "--snapshots", "2", "-q"];
    let with = |extra: &[&str]| -> Vec<String> {
        quick.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let args = with(&["--out", file.to_str().unwrap()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails(&args, 2, &["--out", "exists and is not a directory"]);
    let missing = dir.join("missing").join("summary.json");
    let args = with(&["--json", missing.to_str().unwrap()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails(&args, 2, &["--json", "does not exist"]);
    let args = with(&["--json", dir.to_str().unwrap()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails(&args, 2, &["is a directory"]);
    // `--out D --json D/summary.json` (the README's) is fine: --out creates D first.
    let d = dir.join("report");
    let j = d.join("summary.json");
    let out = run(
        &[
            "demo",
            "--nodes",
            "2",
            "--snapshots",
            "2",
            "--interval",
            "100ms",
            "-q",
            "--out",
            d.to_str().unwrap(),
            "--json",
            j.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(j.is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// User-facing messages carry no Rust `Debug` text (`[NodeId(0), ...]` was printed).
#[test]
fn messages_carry_no_debug_text() {
    let dir = temp_dir("debug-text");
    let peers = dir.join("peers.toml");
    cli_support::write_peers(
        &peers,
        &[cli_support::free_port(), cli_support::free_port()],
    );
    let out = run(
        &[
            "node",
            "--id",
            "9",
            "--peers",
            peers.to_str().unwrap(),
            "--insecure",
        ],
        LIMIT,
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no node with id 9 (the file has ids 0, 1)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("NodeId(") && !stderr.contains('['),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
