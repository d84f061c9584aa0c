//! Real OS processes running the `shutter` CLI, for the multi-process tests.
//!
//! The test binary re-executes itself as `shutter` (see [`child_main`]) instead of
//! looking for the CLI binary of another crate: Cargo only exposes `CARGO_BIN_EXE_*` of
//! the crate under test, and a second binary in the workspace would make the README's
//! `cargo run --release -- demo` ambiguous. The child runs exactly
//! [`shutter_cli::main_from`], the code behind the real binary.
//!
//! Every process is bounded: nodes get `--duration`, one-shot commands a wall-clock
//! limit after which they are killed, and [`NodeProcess`] kills its child on drop (also
//! when a test panics).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Environment variable that turns the test binary into `shutter`.
pub const CHILD_ENV: &str = "SHUTTER_TESTS_AS_CLI";

/// In a child started by [`Launcher`], runs the CLI with this process's arguments and
/// returns its exit code; in the test process itself returns `None`.
pub fn child_main() -> Option<ExitCode> {
    std::env::var_os(CHILD_ENV)?;
    Some(shutter_cli::main_from(std::env::args_os()))
}

/// Starts `shutter` processes, optionally inside a network namespace (`ip netns exec`).
#[derive(Clone, Debug, Default)]
pub struct Launcher {
    netns: Option<String>,
}

impl Launcher {
    /// Processes on the host's network stack.
    pub fn host() -> Launcher {
        Launcher { netns: None }
    }

    /// Processes inside the named network namespace.
    pub fn in_netns(name: &str) -> Launcher {
        Launcher {
            netns: Some(name.to_owned()),
        }
    }

    /// A command that runs `shutter ARGS`.
    pub fn command(&self, args: &[&str]) -> Command {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(args).env(CHILD_ENV, "1");
        cmd
    }

    /// Runs `shutter ARGS` to completion; kills it and panics after `limit`.
    pub fn run(&self, args: &[&str], limit: Duration) -> Output {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shutter");
        // Drain both pipes on threads so a chatty child never blocks on a full pipe.
        let out = drain(child.stdout.take().expect("piped"));
        let err = drain(child.stderr.take().expect("piped"));
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "shutter {args:?} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&out.join().unwrap_or_default()),
                    String::from_utf8_lossy(&err.join().unwrap_or_default())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }
    }

    /// Starts `shutter node ARGS` and waits (at most `limit`) for its ready line; its
    /// stderr goes to `log`.
    pub fn node(&self, args: &[&str], log: &Path, limit: Duration) -> NodeProcess {
        let log_file = std::fs::File::create(log).expect("create node log");
        let mut child = self
            .command(&[&["node"], args].concat())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn shutter node");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let node = NodeProcess {
            child,
            lines,
            log: log.to_owned(),
        };
        match node.lines.recv_timeout(limit) {
            Ok(line) if line.contains("ready") => node,
            other => panic!(
                "node {args:?} did not print its ready line within {limit:?} (got {other:?})\nlog:\n{}",
                node.log_text()
            ),
        }
    }
}

struct Drain(std::thread::JoinHandle<Vec<u8>>);

impl Drain {
    fn join(self) -> Option<Vec<u8>> {
        self.0.join().ok()
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> Drain {
    Drain(std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    }))
}

/// A running `shutter node`, killed on drop.
pub struct NodeProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
}

impl NodeProcess {
    /// Kills the node now (a crash, as far as its peers can tell).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the node like Ctrl-C would (SIGINT) and returns the status JSON of its final
    /// `node nK stopped: {...}` line; panics if it does not stop within `limit`.
    pub fn stop(&mut self, limit: Duration) -> String {
        self.stop_with("INT", limit)
    }

    /// [`NodeProcess::stop`] with another signal (`"TERM"`: what systemd and container
    /// runtimes send).
    pub fn stop_with(&mut self, signal: &str, limit: Duration) -> String {
        let pid = self.child.id().to_string();
        // `ip netns exec` execs the node, so the pid is the node's own.
        let sent = Command::new("kill")
            .args([format!("-{signal}").as_str(), &pid])
            .status();
        assert!(
            sent.is_ok_and(|s| s.success()),
            "cannot send SIGINT to {pid}"
        );
        let start = Instant::now();
        while start.elapsed() < limit {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some((_, json)) = line.split_once(" stopped: ") {
                        let _ = self.child.wait();
                        return json.to_owned();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!(
            "node {pid} printed no final status within {limit:?}\nlog:\n{}",
            self.log_text()
        );
    }

    /// The node's stderr so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stdout and stderr as text, for assertion messages.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory under the system temp dir, named for the test and this process.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shutter-tests-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

pub use crate::ports::free_port;

/// `(udp, admin)` addresses on 127.0.0.1 for `n` nodes, every port free right now.
pub fn loopback_addrs(n: usize) -> Vec<(SocketAddr, SocketAddr)> {
    (0..n)
        .map(|_| {
            let udp = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
            (udp, admin)
        })
        .collect()
}

/// Writes a peers file: `key_file` naming a fresh random cluster key written beside it
/// (`cluster.key`), one `[[nodes]]` entry per `(udp, admin)` pair (ids 0..), then `extra`
/// verbatim (e.g. a `[faults]` table).
pub fn write_peers(path: &Path, nodes: &[(SocketAddr, SocketAddr)], extra: &str) {
    // A fresh cluster key beside the peers file: the nodes run secured.
    let key = path.with_file_name("cluster.key");
    let ring = shutter_transport::KeyRing::random().expect("random key");
    std::fs::write(&key, ring.to_text()).expect("write key file");
    let mut s = String::from("key_file = \"cluster.key\"\n\n");
    for (i, (addr, admin)) in nodes.iter().enumerate() {
        let _ = writeln!(
            s,
            "[[nodes]]\nid = {i}\naddr = \"{addr}\"\nadmin = \"{admin}\"\n"
        );
    }
    s.push_str(extra);
    std::fs::write(path, s).expect("write peers file");
}

/// A peers-file `[faults]` table with seed `seed`: Bernoulli `loss` on every link, 5%
/// duplication, 5% reordering by 5 ms, 1 ms jitter.
pub fn lossy_faults(seed: u64, loss: f64) -> String {
    format!(
        "[faults]\nseed = {seed}\n[faults.default]\n\
         loss = {{ model = \"bernoulli\", p = {loss} }}\n\
         duplicate = 0.05\nreorder = 0.05\nreorder_delay_ms = 5\njitter_ms = 1\n"
    )
}

/// The `saved PATH` line `shutter snapshot` prints.
pub fn saved_path(stdout: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("saved "))
        .map(PathBuf::from)
}

/// The `main` of a harness-less multi-process test binary: runs as the `shutter` CLI when
/// re-executed as a child ([`child_main`]), else runs the `cases` whose names contain a
/// command-line filter (all without one), each caught on panic, and prints libtest-like
/// lines.
pub fn test_main(cases: &[(&str, fn())]) -> ExitCode {
    if let Some(code) = child_main() {
        return code;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<_> = cases
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f)))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, case) in selected {
        println!("test {name} ...");
        let started = Instant::now();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(case)) {
            Ok(()) => println!(
                "test {name} ... ok ({:.1} s)",
                started.elapsed().as_secs_f64()
            ),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    if failed.is_empty() {
        println!("\ntest result: ok\n");
        ExitCode::SUCCESS
    } else {
        println!("\ntest result: FAILED: {failed:?}\n");
        ExitCode::FAILURE
    }
}
