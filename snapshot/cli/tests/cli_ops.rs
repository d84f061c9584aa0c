//! Operating a node: log output (`RUST_LOG`, `-v/-q`, `--log-format json`, timestamps).

mod cli_support;

use std::time::Duration;

use cli_support::{free_port, run, temp_dir, text, write_peers};

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
