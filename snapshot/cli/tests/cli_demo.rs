//! `shutter demo` end to end: consistent snapshots under faults, JSON keys, report files
//! that parse back, `shutter report` and `shutter inspect` on what the demo wrote.

mod cli_support;

use std::time::Duration;

use cli_support::{check_xml, run, temp_dir, text};
use serde_json::Value;
use shutter_snapshot::bank::BankInvariant;
use shutter_snapshot::report::{parse_hgrm, read_hlog};
use shutter_snapshot::{persist, verify};

const LIMIT: Duration = Duration::from_secs(120);

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("JSON key {key} missing or not a number: {v}"))
}

#[test]
fn demo_under_faults_is_consistent_and_writes_a_well_formed_report() {
    let dir = temp_dir("demo");
    let json = dir.join("summary.json");
    let out_dir = dir.join("report");
    let out = run(
        &[
            "demo",
            "--nodes",
            "4",
            "--snapshots",
            "5",
            "--interval",
            "200ms",
            "--loss",
            "0.2",
            "--dup",
            "0.1",
            "--seed",
            "7",
            "--quiet",
            "--json",
            json.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("result: PASS"), "{stdout}");

    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(u(&v, "nodes"), 4);
    // What wrote the file, when and how (the JSON had none of it).
    assert_eq!(u(&v, "schema_version"), 2, "{v}");
    assert_eq!(
        v["tool"],
        concat!("shutter ", env!("CARGO_PKG_VERSION")),
        "{v}"
    );
    let started_at = v["started_at"].as_str().unwrap_or_default();
    assert!(
        started_at.len() == 20 && started_at.ends_with('Z') && &started_at[10..11] == "T",
        "{v}"
    );
    let argv: Vec<&str> = v["command_line"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(argv.windows(2).any(|w| w == ["--seed", "7"]), "{v}");
    // The terminal shows the snapshot latency as an ASCII histogram.
    assert!(stdout.contains("snapshot latency (ms"), "{stdout}");
    assert!(stdout.contains(" #"), "{stdout}");
    let started = u(&v, "snapshots_started");
    let completed = u(&v, "snapshots_completed");
    let aborted = u(&v, "snapshots_aborted");
    assert_eq!(started, 5, "{v}");
    assert_eq!(u(&v, "snapshots_consistent"), completed, "{v}");
    assert_eq!(completed, started - aborted, "{v}");
    assert!(completed >= 1, "{v}");
    assert_eq!(u(&v, "invariant_violations"), 0);
    assert_eq!(u(&v, "duplicates_delivered"), 0);
    assert!(u(&v, "messages_sent") > 0);
    assert_eq!(u(&v, "messages_sent"), u(&v, "messages_delivered"));
    assert!(
        u(&v, "retransmits") > 0,
        "20% loss must cause retransmissions: {v}"
    );
    for key in ["snapshot_latency_us", "delivery_latency_us"] {
        for p in ["p50", "p90", "p99", "max"] {
            assert!(v[key][p].is_u64(), "{key}.{p} in {v}");
        }
        assert!(v[key]["p50"].as_u64() <= v[key]["max"].as_u64());
    }

    // Report files parse back.
    for name in ["delivery.hgrm", "snapshot.hgrm"] {
        let text = std::fs::read_to_string(out_dir.join(name)).unwrap();
        let rows = parse_hgrm(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!rows.is_empty(), "{name} has rows");
        assert_eq!(rows.last().unwrap().percentile, 1.0);
    }
    let hlog = std::fs::read(out_dir.join("latency.hlog")).unwrap();
    let intervals = read_hlog(&hlog).unwrap();
    let snapshots: u64 = intervals
        .iter()
        .filter(|(tag, _)| tag == "snapshot")
        .map(|(_, h)| h.len())
        .sum();
    assert_eq!(
        snapshots, completed,
        "every completed snapshot is in the interval log"
    );
    assert!(
        intervals
            .iter()
            .any(|(tag, h)| tag == "delivery" && !h.is_empty())
    );
    let svg = std::fs::read_to_string(out_dir.join("latency.svg")).unwrap();
    assert_eq!(check_xml(&svg), Ok("svg".to_string()));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(u(&report, "snapshots_completed"), completed);
    assert_eq!(report["histograms"].as_array().unwrap().len(), 2);
    // Buckets hold per-bucket counts, so they are not named `le` (Prometheus' cumulative
    // bound); they add up to the histogram's count.
    for h in report["histograms"].as_array().unwrap() {
        let buckets = h["buckets"].as_array().unwrap();
        assert!(buckets.iter().all(|b| b.get("le").is_none()), "{h}");
        let sum: u64 = buckets.iter().map(|b| u(b, "count")).sum();
        assert_eq!(sum, u(&h["percentiles"], "count"), "{h}");
        assert!(buckets.iter().all(|b| b["upper_us"].is_u64()), "{h}");
    }

    // The last snapshot was saved and verifies.
    let snap = persist::load(&out_dir.join("last.snap")).unwrap();
    verify::check_all(&snap, &[&BankInvariant { total: 4_000 }]).unwrap();

    // `shutter report DIR` re-prints the table; `.hlog` works too.
    let out = run(&["report", out_dir.to_str().unwrap()], LIMIT);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("snapshots started            5"),
        "{stdout}"
    );
    let hlog_path = out_dir.join("latency.hlog");
    let out = run(&["report", hlog_path.to_str().unwrap()], LIMIT);
    assert!(out.status.success());
    assert!(text(&out).0.contains("snapshot"), "{}", text(&out).0);
    assert!(text(&out).0.contains("99.99% ms"), "{}", text(&out).0);

    // `shutter inspect` on the saved snapshot.
    let last = out_dir.join("last.snap");
    let out = run(&["inspect", last.to_str().unwrap()], LIMIT);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("ok    cut consistency"), "{stdout}");
    assert!(
        stdout.contains("ok    money conserved (total 4000)"),
        "{stdout}"
    );
    // Several files at once (what `inspect snaps/*.snap` expands to): each printed and
    // checked under its name.
    let copy = out_dir.join("copy.snap");
    std::fs::copy(&last, &copy).unwrap();
    let out = run(
        &["inspect", last.to_str().unwrap(), copy.to_str().unwrap()],
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.matches("ok    cut consistency").count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("copy.snap =="), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chandy_lamport_demo_over_fifo_transport_is_consistent() {
    let out = run(
        &[
            "demo",
            "--nodes",
            "3",
            "--snapshots",
            "3",
            "--interval",
            "200ms",
            "--algorithm",
            "chandy-lamport",
            "--json",
            "-",
        ],
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("stdout is only JSON with --json -");
    assert_eq!(v["algorithm"], "chandy-lamport");
    assert_eq!(u(&v, "snapshots_consistent"), u(&v, "snapshots_completed"));
    assert!(
        stderr.contains("result: PASS"),
        "table goes to stderr: {stderr}"
    );
}

#[test]
fn partition_aborts_snapshots_but_never_reports_an_inconsistent_one() {
    let out = run(
        &[
            "demo",
            "--nodes",
            "4",
            "--snapshots",
            "8",
            "--interval",
            "250ms",
            "--partition",
            "600ms..1600ms:0,1|2,3",
            "--snapshot-timeout",
            "700ms",
            "--json",
            "-",
        ],
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        u(&v, "snapshots_aborted") >= 1,
        "the partition aborts some: {v}"
    );
    assert_eq!(u(&v, "snapshots_consistent"), u(&v, "snapshots_completed"));
    assert_eq!(
        u(&v, "snapshots_completed") + u(&v, "snapshots_aborted"),
        u(&v, "snapshots_started")
    );
    assert_eq!(v["faults"]["partitions"].as_array().unwrap().len(), 1);
}

/// SIGTERM (what `kill`, systemd and container runtimes send) mid-run: the demo starts no
/// more snapshots, finishes the running ones, prints the summary of what ran, writes its
/// JSON and exits 130. It used to die with nothing written.
#[test]
fn sigterm_keeps_the_results_of_what_ran() {
    let dir = cli_support::temp_dir("demo-sigterm");
    let json = dir.join("summary.json");
    let mut child = cli_support::shutter()
        .args([
            "demo",
            "--nodes",
            "3",
            "--duration",
            "60s",
            "--interval",
            "100ms",
            "--quiet",
            "--json",
            json.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the demo did not stop within 40 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = cli_support::text(&out);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("snapshots started"),
        "no summary:\n{stdout}"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(
        summary["snapshots_completed"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert_eq!(
        summary["snapshots_completed"].as_u64().unwrap(),
        summary["snapshots_consistent"].as_u64().unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
