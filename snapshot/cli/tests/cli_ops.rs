//! Operating a node: log output (`RUST_LOG`, `-v/-q`, `--log-format json`, timestamps)
//! and the Prometheus endpoint (`--metrics ADDR`).

mod cli_support;

use std::time::Duration;

use std::io::{Read, Write};
use std::net::TcpStream;

use cli_support::{NodeProcess, free_port, run, temp_dir, text, write_peers};

const LIMIT: Duration = Duration::from_secs(60);

/// A one-node run of `shutter [GLOBAL...] node ... --duration 300ms`; its stderr.
fn node_stderr(dir: &std::path::Path, global: &[&str], env: Option<(&str, &str)>) -> String {
    let peers = dir.join("peers.toml");
    write_peers(&peers, &[free_port(), free_port()]);
    let mut args: Vec<&str> = global.to_vec();
    let peers_arg = peers.to_str().unwrap().to_string();
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap().to_string();
    args.extend([
        "node",
        "--id",
        "0",
        "--peers",
        &peers_arg,
        "--data-dir",
        &data_arg,
        "--duration",
        "300ms",
        "--insecure",
    ]);
    let mut cmd = cli_support::shutter();
    cmd.env_remove("RUST_LOG");
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let out = cli_support::run_command(cmd, &args, LIMIT);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{args:?}\n{stdout}\n{stderr}");
    assert!(stdout.contains("node n0 stopped"), "{stdout}");
    stderr
}

#[test]
fn json_logs_are_one_timestamped_object_per_line() {
    let dir = temp_dir("log-json");
    let stderr = node_stderr(&dir, &["--log-format", "json"], None);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(!lines.is_empty(), "no log lines");
    for l in &lines {
        assert!(
            l["timestamp"].as_str().is_some_and(|t| t.contains('T')),
            "{l}"
        );
        assert!(l["level"].is_string(), "{l}");
    }
    // The node's own lines carry its id as a field; the insecure warning is there.
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["node"] == "n0" && l["level"] == "INFO"),
        "{stderr}"
    );
    assert!(stderr.contains("--insecure"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn text_logs_are_timestamped_and_quiet_or_rust_log_silence_them() {
    let dir = temp_dir("log-text");
    let stderr = node_stderr(&dir, &[], None);
    let line = stderr
        .lines()
        .find(|l| l.contains("no checkpoints yet"))
        .unwrap_or_else(|| panic!("no info line: {stderr}"));
    // `2026-12-01T20:50:00.123456Z  INFO ...`
    assert!(
        line.len() > 20 && line.as_bytes()[4] == b'-' && line.as_bytes()[10] == b'T',
        "{line}"
    );
    let quiet = node_stderr(&dir, &["-q"], None);
    assert!(quiet.trim().is_empty(), "-q: {quiet}");
    let errors_only = node_stderr(&dir, &[], Some(("RUST_LOG", "error")));
    assert!(
        errors_only.trim().is_empty(),
        "RUST_LOG=error: {errors_only}"
    );
    let debug = node_stderr(&dir, &["-vv"], None);
    assert!(debug.contains("DEBUG") || debug.contains("INFO"), "{debug}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verbose_and_quiet_conflict() {
    let out = run(&["-v", "-q", "report", "x"], LIMIT);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
}

/// `GET path` on 127.0.0.1:`port`; the whole response.
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn metrics_endpoint_counts_a_snapshot() {
    let dir = temp_dir("metrics");
    let peers = dir.join("peers.toml");
    write_peers(&peers, &[free_port(), free_port()]);
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let nodes: Vec<NodeProcess> = (0..2)
        .map(|i| {
            let id = i.to_string();
            let mut args = vec!["--id", &id, "--peers", peers.to_str().unwrap()];
            args.extend_from_slice(&["--duration", "40s", "--tick", "10ms"]);
            if i == 0 {
                args.extend_from_slice(&["--metrics", &metrics_addr]);
            }
            NodeProcess::start(&args, Duration::from_secs(20))
        })
        .collect();
    let out = run(
        &[
            "snapshot",
            "--peers",
            peers.to_str().unwrap(),
            "--via",
            "0",
            "--out",
            dir.to_str().unwrap(),
            "--timeout",
            "15s",
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let response = http_get(metrics_port, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("application/openmetrics-text"),
        "{response}"
    );
    for needle in [
        "shutter_snapshots_completed_total{node=\"n0\"} 1",
        "shutter_snapshot_latency_seconds_count{node=\"n0\"} 1",
        "shutter_snapshot_latency_seconds_bucket{le=\"+Inf\",node=\"n0\"} 1",
        "# TYPE shutter_delivery_latency_seconds histogram",
        "shutter_dropped_total{node=\"n0\",reason=\"auth_failed\"} 0",
        "# EOF",
    ] {
        assert!(response.contains(needle), "{needle} missing:\n{response}");
    }
    let missing = http_get(metrics_port, "/other");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_taken_metrics_port_fails_the_start() {
    let dir = temp_dir("metrics-taken");
    let peers = dir.join("peers.toml");
    write_peers(&peers, &[free_port(), free_port()]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(
        &[
            "node",
            "--id",
            "0",
            "--peers",
            peers.to_str().unwrap(),
            "--metrics",
            &addr,
            "--duration",
            "5s",
        ],
        LIMIT,
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot bind the metrics endpoint on tcp {addr}")),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the DNS watcher relies on: `NodeHandle::set_peer_addr` moves a peer. Node 0
/// starts with a stale address for node 1 (a socket that never answers, as an old pod IP);
/// its snapshot cannot complete until it is told where node 1 is now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_peer_is_reached_at_its_new_address() {
    use shutter_snapshot::bank::{Bank, BankConfig};
    use shutter_snapshot::runtime::{NodeConfig, NodeEvent, NodeHandle, RuntimeError};
    use shutter_transport::auth::{Auth, KeyRing};
    use shutter_vclock::NodeId;

    let ring = KeyRing::random().unwrap();
    let stale = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let config = |id: u32, listen: u16, zero: u16, one: std::net::SocketAddr| {
        let mut c = NodeConfig {
            id: NodeId(id),
            listen: at(listen),
            peers: vec![(NodeId(0), at(zero)), (NodeId(1), one)],
            snapshot_timeout: Duration::from_secs(20),
            ..NodeConfig::default()
        };
        c.transport.auth = Auth::Keys(ring.clone());
        c
    };
    // A port found free can be taken by a parallel test before the node binds it: the
    // node then starts on another one.
    async fn spawn_on_a_free_port(id: u32, make: impl Fn(u16) -> NodeConfig) -> (NodeHandle, u16) {
        for _ in 0..10 {
            let port = free_port();
            let bank = Bank::new(NodeId(id), BankConfig::default());
            match NodeHandle::spawn(make(port), bank).await {
                Ok(node) => return (node, port),
                Err(RuntimeError::Bind { source, .. })
                    if source.kind() == std::io::ErrorKind::AddrInUse => {}
                Err(e) => panic!("node {id}: {e}"),
            }
        }
        panic!("node {id}: every port tried was taken");
    }
    let (mut n0, p0) =
        spawn_on_a_free_port(0, |p| config(0, p, p, stale.local_addr().unwrap())).await;
    let (n1, p1) = spawn_on_a_free_port(1, |p| config(1, p, p0, at(p))).await;
    n0.set_peer_addr(NodeId(1), at(p1)).await.unwrap();
    let id = n0.initiate().await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match n0.next_event().await {
                Some(NodeEvent::Completed(s)) if s.id == id => return Ok(()),
                Some(NodeEvent::Aborted { id: a, reason }) if a == id => return Err(reason),
                Some(_) => continue,
                None => panic!("node 0 stopped"),
            }
        }
    })
    .await
    .expect("an outcome within 30 s");
    assert!(outcome.is_ok(), "{outcome:?}");
    n0.shutdown().await.unwrap();
    n1.shutdown().await.unwrap();
}

#[test]
fn demo_metrics_label_every_node() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut demo = cli_support::shutter()
        .args([
            "demo",
            "--nodes",
            "3",
            "--duration",
            "3s",
            "--interval",
            "100ms",
            "-q",
            "--metrics",
            &addr,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Bounded: the endpoint is up within the first seconds of the run.
    let mut response = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            write!(s, "GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            let _ = s.read_to_string(&mut response);
            if response.contains("# EOF") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = demo.wait().unwrap();
    assert!(status.success(), "{status:?}");
    for n in ["n0", "n1", "n2"] {
        assert!(
            response.contains(&format!("shutter_messages_sent_total{{node=\"{n}\"}}")),
            "{n} missing:\n{response}"
        );
    }
    assert!(response.contains("# TYPE shutter_snapshot_latency_seconds histogram"));
}
