//! Helpers of the `shutter` binary tests: bounded runs, temp dirs, free loopback ports.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn shutter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shutter"))
}

/// Runs `shutter ARGS` to completion, killing it (and failing) after `limit`.
pub fn run(args: &[&str], limit: Duration) -> Output {
    run_command(shutter(), args, limit)
}

/// Like [`run`] with a prepared command (environment, working directory).
pub fn run_command(mut command: Command, args: &[&str], limit: Duration) -> Output {
    let mut child = command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shutter");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "shutter {args:?} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stdout and stderr as text, for assertion messages.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shutter-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[path = "../../../../tests/src/ports.rs"]
mod ports;
// Each test binary compiles this module; not all of them start nodes on fixed ports.
#[allow(unused_imports)]
pub use ports::free_port;

/// A running `shutter node`, killed on drop.
pub struct NodeProcess {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl NodeProcess {
    /// Starts `shutter node ARGS` and waits (at most `limit`) for its ready line.
    pub fn start(args: &[&str], limit: Duration) -> NodeProcess {
        let mut child = shutter()
            .arg("node")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn shutter node");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let node = NodeProcess { child, lines };
        let line = node
            .lines
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("node {args:?} printed no ready line within {limit:?}"));
        assert!(line.contains("ready"), "{line}");
        node
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal XML well-formedness: balanced, properly nested tags; returns the root name.
pub fn check_xml(text: &str) -> Result<String, String> {
    let mut stack: Vec<String> = Vec::new();
    let mut root = None;
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        if after.starts_with("?") || after.starts_with("!") {
            let end = after.find('>').ok_or("unterminated declaration")?;
            rest = &after[end + 1..];
            continue;
        }
        let end = after.find('>').ok_or("unterminated tag")?;
        let tag = &after[..end];
        rest = &after[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack
                .pop()
                .ok_or(format!("</{name}> without an open tag"))?;
            if top != name.trim() {
                return Err(format!("</{name}> closes <{top}>"));
            }
        } else {
            let name: String = tag
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '/')
                .collect();
            if name.is_empty() {
                return Err(format!("empty tag <{tag}>"));
            }
            if root.is_none() {
                root = Some(name.clone());
            } else if stack.is_empty() {
                return Err(format!("second root element <{name}>"));
            }
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
    }
    if let Some(open) = stack.pop() {
        return Err(format!("<{open}> is never closed"));
    }
    root.ok_or_else(|| "no element".to_string())
}

/// Writes a peers file for `(id, port)` pairs on 127.0.0.1 (admin = same port over TCP),
/// with a fresh cluster key in `cluster.key` beside it: the nodes run secured.
pub fn write_peers(path: &Path, ports: &[u16]) {
    let key = path.with_file_name("cluster.key");
    let ring = shutter_transport::KeyRing::random().unwrap();
    std::fs::write(&key, ring.to_text()).unwrap();
    let mut text = String::from("key_file = \"cluster.key\"\n\n");
    for (i, p) in ports.iter().enumerate() {
        text.push_str(&format!(
            "[[nodes]]\nid = {i}\naddr = \"127.0.0.1:{p}\"\n\n"
        ));
    }
    std::fs::write(path, text).unwrap();
}
