//! Command-line arguments (clap derive) and the value parsers they use.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::faults::PartitionSpec;
use crate::logging::LogFormat;

/// Consistent global snapshots over lossy UDP.
#[derive(Debug, Parser)]
#[command(name = "shutter", version, about, long_about = None)]
pub struct Cli {
    /// More log output on stderr: -v info from every crate, -vv debug, -vvv trace
    /// (`RUST_LOG`, when set, decides instead).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output: errors only on stderr, no progress lines.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log line format on stderr: `text` (timestamped lines) or `json` (one object per
    /// line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a local cluster of bank nodes under injected faults, take and verify periodic
    /// snapshots, and report (the main demo; no setup needed).
    Demo(DemoArgs),
    /// Run one bank node of a cluster described by a peers file, until Ctrl-C or --duration.
    Node(NodeArgs),
    /// Ask a running cluster for a snapshot (through a node's admin channel) and save it.
    Snapshot(SnapshotArgs),
    /// Ask every node of a running cluster (or one) for its status and print a table.
    Status(StatusArgs),
    /// Roll the whole running cluster back to a snapshot every node holds in its
    /// checkpoint store (the newest, or --to ID).
    Rollback(RollbackArgs),
    /// Remove a node that is dead for good from the running cluster: the others roll
    /// back to a snapshot that holds its part and one of them inherits it.
    Remove(MemberArgs),
    /// Add a node started with `shutter node --join` to the running cluster: everyone
    /// goes back to the newest snapshot they all hold and the new node starts empty.
    Add(MemberArgs),
    /// Print and verify a saved snapshot file.
    Inspect(InspectArgs),
    /// Print the summary of a report directory (its report.json), a report.json, or the
    /// percentiles of an .hlog interval log.
    Report(ReportArgs),
    /// Write a new random cluster key file (name it in the peers file as `key_file`).
    Keygen(KeygenArgs),
}

/// Where the cluster key comes from (`node`, `snapshot`, `status`).
#[derive(Clone, Debug, Default, Args)]
pub struct KeyArgs {
    /// The cluster key file (default: the peers file's `key_file`). Every datagram and
    /// admin request is authenticated with it.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Run without authentication or encryption (plain datagrams, open admin channel).
    #[arg(long, conflicts_with = "key_file")]
    pub insecure: bool,
}

/// `shutter keygen`.
#[derive(Clone, Debug, Args)]
pub struct KeygenArgs {
    /// The key file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Which snapshot algorithm the nodes run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum AlgorithmArg {
    /// Mattern's vector-time algorithm with counting (correct over unordered channels).
    #[default]
    Mattern,
    /// The Chandy-Lamport marker baseline (the transport runs in FIFO mode).
    ChandyLamport,
}

impl AlgorithmArg {
    /// The runtime's algorithm.
    pub fn to_runtime(self) -> shutter_snapshot::runtime::Algorithm {
        match self {
            AlgorithmArg::Mattern => shutter_snapshot::runtime::Algorithm::Mattern,
            AlgorithmArg::ChandyLamport => shutter_snapshot::runtime::Algorithm::ChandyLamport,
        }
    }

    /// The runtime settings `demo` and `node` both derive from their flags: this
    /// algorithm, snapshot timeout, bank tick and seed; everything else default.
    pub(crate) fn node_config(
        self,
        snapshot_timeout: Duration,
        tick: Duration,
        seed: u64,
    ) -> shutter_snapshot::runtime::NodeConfig {
        shutter_snapshot::runtime::NodeConfig {
            algorithm: self.to_runtime(),
            snapshot_timeout,
            tick_interval: tick,
            transport: shutter_transport::Config {
                seed,
                ..shutter_transport::Config::default()
            },
            ..shutter_snapshot::runtime::NodeConfig::default()
        }
    }

    /// The name as typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AlgorithmArg::Mattern => "mattern",
            AlgorithmArg::ChandyLamport => "chandy-lamport",
        }
    }
}

/// The bank tick of `demo` and `node` (one default, so a demo behaves like a cluster).
pub const DEFAULT_TICK: &str = "20ms";
/// The snapshot timeout of `demo` and `node`.
pub const DEFAULT_SNAPSHOT_TIMEOUT: &str = "10s";

/// `shutter demo`.
#[derive(Clone, Debug, Args)]
pub struct DemoArgs {
    /// Number of bank nodes, 2 to 64 (all in this process, on 127.0.0.1).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(2..=64))]
    pub nodes: u32,
    /// Snapshots to take (default 20 unless --duration is given).
    #[arg(long)]
    pub snapshots: Option<u64>,
    /// Stop starting snapshots after this long (e.g. 15s); with --snapshots, whichever
    /// comes first.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Time between snapshot initiations (initiators rotate over the nodes).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Datagram loss probability on every link (Bernoulli).
    #[arg(long, default_value_t = 0.1, value_parser = parse_probability)]
    pub loss: f64,
    /// Datagram duplication probability.
    #[arg(long, default_value_t = 0.05, value_parser = parse_probability)]
    pub dup: f64,
    /// Probability that a datagram is held back by --reorder-delay (later ones overtake it).
    #[arg(long, default_value_t = 0.05, value_parser = parse_probability)]
    pub reorder: f64,
    /// How long a reordered datagram is held back.
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    pub reorder_delay: Duration,
    /// Uniform random extra delay per datagram, in [0, jitter].
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    pub jitter: Duration,
    /// Fixed one-way delay per datagram.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub delay: Duration,
    /// Probability that a datagram gets bits flipped (the checksum must catch it).
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
    pub corrupt: f64,
    /// Timed partition, repeatable: `START..END:A|B` cuts both ways between node lists A
    /// and B, `START..END:A>B` only A to B; e.g. `2s..4s:0,1|2,3`. Times count from the
    /// cluster start.
    #[arg(long, value_parser = PartitionSpec::parse)]
    pub partition: Vec<PartitionSpec>,
    /// Seed of the fault injection and of the bank's random transfers.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Snapshot algorithm.
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Mattern)]
    pub algorithm: AlgorithmArg,
    /// A snapshot not complete after this long is aborted.
    #[arg(long, default_value = DEFAULT_SNAPSHOT_TIMEOUT, value_parser = parse_duration)]
    pub snapshot_timeout: Duration,
    /// Bank tick: every tick each node sends a random transfer with probability 1/2.
    #[arg(long, default_value = DEFAULT_TICK, value_parser = parse_duration)]
    pub tick: Duration,
    /// Write report files (delivery.hgrm, snapshot.hgrm, latency.hlog, report.json,
    /// latency.svg, last.snap) into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the JSON summary to this file (`-` for stdout, which then carries only JSON).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Serve Prometheus metrics of every node (label `node`) at http://ADDR/metrics while
    /// the demo runs, as `shutter node --metrics` does (for long runs, e.g. `--duration 1h`).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Plain datagrams (by default the demo seals every datagram with a random key it
    /// makes for the run); for measuring what the encryption costs.
    #[arg(long)]
    pub insecure: bool,
    /// Leave the runtime's two worker threads unpinned. By default each is pinned to
    /// one CPU: the whole cluster runs in this process, and a worker stacked on the
    /// other's CPU waits a scheduler tick (64 nodes: snapshot p99 about twice as long).
    #[arg(long)]
    pub no_pin: bool,
    /// No progress bar or progress lines (set from the global `-q`).
    #[arg(skip)]
    pub quiet: bool,
}

/// `shutter node --on-restart`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnRestart {
    /// Roll the cluster back to the newest snapshot every member holds.
    Rollback,
    /// Start with a fresh application state; no rollback.
    Rejoin,
}

/// `shutter node`.
#[derive(Clone, Debug, Args)]
pub struct NodeArgs {
    /// This node's id (must be in the peers file).
    #[arg(long)]
    pub id: u32,
    /// The peers file (TOML: `key_file`, `[[nodes]]` with `id` and `addr` = HOST:PORT,
    /// optional `admin` and `[faults]`; see the README, "Nodes on several hosts").
    #[arg(long)]
    pub peers: PathBuf,
    /// UDP address to bind (default: this node's `addr` in the peers file).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// TCP admin address to bind (default: this node's `admin` in the peers file, else
    /// 127.0.0.1 with the port of its `addr`: TCP and UDP ports are separate).
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Resume from this snapshot file instead of the opening balance.
    #[arg(long)]
    pub restore: Option<PathBuf>,
    /// Checkpoint store: this node's part of every snapshot known complete is written
    /// here (atomically, checksummed). Default: `shutter-data/n<ID>` next to the peers
    /// file.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How many checkpoints the store keeps (the newest).
    #[arg(long, default_value_t = 8)]
    pub keep_checkpoints: usize,
    /// What this node does when it starts with checkpoints in its data dir (it crashed
    /// or was stopped): `rollback` rolls the whole cluster back to the newest snapshot
    /// every member holds (money stays exact); `rejoin` starts with a fresh application
    /// state and no rollback (what the previous life held is lost).
    #[arg(long, value_enum, default_value_t = OnRestart::Rollback)]
    pub on_restart: OnRestart,
    /// A new node joining a running cluster (the peers file lists it with the others):
    /// it waits until `shutter add` adds it, then runs from an empty account (the
    /// cluster's money does not change). Ignored once its data dir holds checkpoints.
    #[arg(long)]
    pub join: bool,
    /// Stop after this long instead of waiting for Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Pin the runtime's two worker threads one per CPU (the first two this process
    /// may use). For a node that has the host to itself: nodes on one host that all
    /// pin compete for the same two CPUs.
    #[arg(long)]
    pub pin: bool,
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics, e.g.
    /// `0.0.0.0:9100`: snapshot and delivery latency histograms, snapshots completed and
    /// aborted by reason, transport counters, drops by reason. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Seed of the bank's random transfers.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Opening balance.
    #[arg(long, default_value_t = shutter_snapshot::bank::BankConfig::default().initial)]
    pub initial: u64,
    /// Snapshot algorithm (every node of the cluster must use the same).
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Mattern)]
    pub algorithm: AlgorithmArg,
    /// A snapshot not complete after this long is aborted.
    #[arg(long, default_value = DEFAULT_SNAPSHOT_TIMEOUT, value_parser = parse_duration)]
    pub snapshot_timeout: Duration,
    /// Bank tick: every tick the node sends a random transfer with probability 1/2.
    #[arg(long, default_value = DEFAULT_TICK, value_parser = parse_duration)]
    pub tick: Duration,
    /// The cluster key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `shutter snapshot`.
#[derive(Clone, Debug, Args)]
pub struct SnapshotArgs {
    /// The peers file of the running cluster.
    #[arg(long)]
    pub peers: PathBuf,
    /// The node that initiates the snapshot (default: the lowest id).
    #[arg(long)]
    pub via: Option<u32>,
    /// Directory to save the snapshot in (file `snapshot-n<K>-<S>.snap`).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Give up after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The bank's total money, to check conservation (default: nodes x 1000).
    #[arg(long)]
    pub total: Option<u64>,
    /// The cluster key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `shutter status`.
#[derive(Clone, Debug, Args)]
pub struct StatusArgs {
    /// The peers file of the running cluster.
    #[arg(long)]
    pub peers: PathBuf,
    /// Ask only this node (default: every node in the file).
    #[arg(long)]
    pub via: Option<u32>,
    /// Give up on a node after this long.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print one JSON object per node instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The cluster key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `shutter rollback`.
#[derive(Clone, Debug, Args)]
pub struct RollbackArgs {
    /// The peers file of the running cluster.
    #[arg(long)]
    pub peers: PathBuf,
    /// The node that coordinates the rollback.
    #[arg(long, default_value_t = 0)]
    pub via: u32,
    /// The snapshot to go back to, as printed by `shutter snapshot` (e.g. `n0@1234`);
    /// default: the newest every node holds.
    #[arg(long)]
    pub to: Option<String>,
    /// Give up after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The cluster key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `shutter remove` and `shutter add`.
#[derive(Clone, Debug, Args)]
pub struct MemberArgs {
    /// The peers file of the running cluster (for `add`: with the new node in it, its
    /// address is taken from there).
    #[arg(long)]
    pub peers: PathBuf,
    /// The node to remove (down for good: a removed node that still runs is cut off,
    /// and its state is taken over from the snapshot) or to add (running with `shutter
    /// node --join`).
    #[arg(long)]
    pub node: u32,
    /// The member that coordinates (any other running member).
    #[arg(long, default_value_t = 0)]
    pub via: u32,
    /// Give up after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The cluster key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `shutter inspect`.
#[derive(Clone, Debug, Args)]
pub struct InspectArgs {
    /// Snapshot files (written by `shutter snapshot` or `shutter demo --out`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The bank's total money, to check conservation (default: nodes x 1000).
    #[arg(long)]
    pub total: Option<u64>,
    /// Channel messages printed per channel.
    #[arg(long, default_value_t = 8)]
    pub messages: usize,
}

/// `shutter report`.
#[derive(Clone, Debug, Args)]
pub struct ReportArgs {
    /// A report directory (reads its report.json), a report.json or an .hlog file.
    pub path: PathBuf,
}

/// The duration syntax of every shutter command and example (one parser, so `--jitter
/// 1ms` means the same everywhere): see [`shutter_transport::time::parse_duration`].
pub use shutter_transport::time::parse_duration;

/// Parses a probability in `[0, 1]`.
pub fn parse_probability(text: &str) -> Result<f64, String> {
    let p: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not a probability in [0, 1]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities() {
        assert_eq!(parse_probability("0.25"), Ok(0.25));
        assert!(
            parse_probability("1.5")
                .unwrap_err()
                .contains("not a probability")
        );
        assert!(parse_probability("NaN").is_err());
    }

    /// The demo ran with tick 10 ms and timeout 5 s, a node with 20 ms and 10 s.
    #[test]
    fn demo_and_node_share_their_defaults() {
        let demo = Cli::try_parse_from(["shutter", "demo"]).unwrap();
        let node =
            Cli::try_parse_from(["shutter", "node", "--id", "0", "--peers", "p.toml"]).unwrap();
        let (Command::Demo(d), Command::Node(n)) = (demo.command, node.command) else {
            panic!("parsed as other commands");
        };
        assert_eq!((d.tick, d.snapshot_timeout), (n.tick, n.snapshot_timeout));
    }

    #[test]
    fn help_states_limits_and_no_module_paths() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        let demo = cli
            .find_subcommand_mut("demo")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(demo.contains("2 to 64"), "{demo}");
        let node = cli
            .find_subcommand_mut("node")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(!node.contains("shutter_cli::"), "{node}");
    }

    #[test]
    fn clap_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
