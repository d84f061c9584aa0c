//! Every part at tiny size: it runs, stops by itself and produces well-formed rows
//! (no timing assertions: figures at this size mean nothing).

use shutter_bench::report::Section;
use shutter_bench::{headers, netlat, rate, simwall, snapshots, throughput};

fn well_formed(s: &Section, rows: usize) {
    assert_eq!(s.rows.len(), rows, "{}", s.render());
    for r in &s.rows {
        assert_eq!(r.len(), s.columns.len(), "{}", s.render());
    }
    assert!(!s.targets.is_empty());
    let json = serde_json::to_string(s).expect("a section serializes");
    assert!(json.contains(&s.name));
}

#[test]
fn headers_tiny() {
    let s = headers::run(&headers::Opts::tiny());
    well_formed(&s, 3);
    // Columns: N, pattern, shipped (lean), whole header, its clock, diffed %.
    for r in &s.rows {
        let f = |i: usize| r[i].as_f64().unwrap();
        // The whole header is its clock plus life, seq and framing.
        assert!(f(3) > f(4), "{}", s.render());
        // A lean header is whole only when nothing shorter exists: it costs at most its
        // own two framing bytes (keep flag, head tag) more than the whole header.
        assert!(f(2) <= f(3) + 2.0, "{}", s.render());
        assert!((0.0..=100.0).contains(&f(5)), "{}", s.render());
    }
}

#[test]
fn sim_tiny() {
    let s = simwall::run(&simwall::Opts::tiny());
    well_formed(&s, 1);
    assert_eq!(s.rows[0][7], "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_tiny() {
    let s = rate::run(&rate::Opts::tiny()).await.expect("rate runs");
    // Raw UDP, then shutter plain and sealed with 1 and 64 sender tasks and batches.
    well_formed(&s, 7);
    // Reliable delivery: every shutter message arrived, plain and sealed.
    for row in &s.rows[1..] {
        assert_eq!(row[6], 100, "{}", s.render());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_tiny() {
    let o = snapshots::Opts::tiny();
    let s = snapshots::run(&o).await.expect("snapshots run");
    well_formed(&s, o.sizes.len() * o.losses.len() * 4);
    for r in &s.rows {
        assert_eq!(r[10], 0, "a snapshot failed its checks: {}", s.render());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_tiny() {
    let s = throughput::run(&throughput::Opts::tiny())
        .await
        .expect("throughput runs");
    well_formed(&s, 3);
    for r in &s.rows {
        assert_eq!(r[9], 0, "a snapshot failed its checks: {}", s.render());
    }
}

#[test]
fn netlat_tiny() {
    let s = netlat::run(&netlat::Opts::tiny()).expect("netlat runs");
    if s.notes.iter().any(|n| n.starts_with("SKIPPED")) {
        println!("netlat SKIPPED: {:?}", s.notes);
        assert!(s.rows.is_empty());
        return;
    }
    // shutter Endpoint plain, sealed and low_latency, shutter Host, TCP, KCP.
    well_formed(&s, 6);
    // Reliable protocols: shutter, in each setting, delivers everything at 5% drop in
    // the time given.
    for row in &s.rows[..4] {
        assert_eq!(row[3], 0, "{}", s.render());
        // The sender's own counts: numbers for shutter, none for TCP and KCP.
        assert!(row[8].is_number(), "{}", s.render());
    }
    for row in &s.rows[4..] {
        assert_eq!(row[8], "-", "{}", s.render());
    }
}
