//! Two endpoints on 127.0.0.1 (ephemeral ports) with the same seeded faults on both
//! directions: node 0 sends `--messages` messages to node 1 (which only acknowledges), and
//! the run ends when every message is delivered and acknowledged, or at `--timeout`.
//!
//! ```text
//! cargo run --release -p shutter-transport --example pingpong -- \
//!     --messages 20000 --loss 0.3 --dup 0.1 --reorder 0.2 --corrupt 0.01 --seed 7 --json
//! ```
//!
//! Prints one JSON object (`--json`) or a short summary; exits with status 1 if any
//! message is missing or was delivered twice to the application.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use shutter_transport::driver::{Endpoint, EndpointConfig, EndpointStats};
use shutter_transport::faults::{FaultPlan, LinkFaults, LossModel};
use shutter_transport::time::parse_duration;
use shutter_transport::{Auth, Config, Event, KeyRing};
use shutter_vclock::NodeId;

/// Measure reliable delivery between two endpoints over faulty loopback UDP.
#[derive(Parser, Debug)]
struct Args {
    /// Messages to send from node 0 to node 1.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Size of each message in bytes (at least 8: the sequence number).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Bernoulli loss probability per datagram, each direction.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Duplication probability per datagram.
    #[arg(long, default_value_t = 0.0)]
    dup: f64,
    /// Probability a datagram is held back by --reorder-delay.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Hold-back of reordered datagrams (e.g. 2ms; a unit is required, as in `shutter`).
    #[arg(long, default_value = "2ms", value_parser = parse_duration)]
    reorder_delay: Duration,
    /// Probability a datagram has 1-3 bits flipped.
    #[arg(long, default_value_t = 0.0)]
    corrupt: f64,
    /// Fixed one-way delay (e.g. 5ms).
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    delay: Duration,
    /// Uniform extra delay 0..jitter (e.g. 1ms), the flag `shutter demo` has.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    jitter: Duration,
    /// Seed of every fault decision.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Unacknowledged messages allowed in flight (the core's window).
    #[arg(long, default_value_t = Config::default().max_in_flight)]
    window: usize,
    /// Give up after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
    /// Seal every datagram (AES-256-GCM with a random key) instead of plain CRC.
    #[arg(long)]
    sealed: bool,
}

/// What node 1 saw and node 0 got acknowledged.
#[derive(Default)]
struct Tally {
    /// Application-level deliveries per sequence number.
    seen: HashMap<u64, u32>,
    delivered: u64,
    acked: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(ok) => {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("pingpong: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    let faults = LinkFaults {
        loss: if args.loss > 0.0 {
            LossModel::Bernoulli { p: args.loss }
        } else {
            LossModel::None
        },
        duplicate: args.dup,
        delay: args.delay,
        jitter: args.jitter,
        reorder: args.reorder,
        reorder_delay: args.reorder_delay,
        corrupt: args.corrupt,
        bandwidth_bytes_per_sec: None,
    };
    let (a, b) = (NodeId(0), NodeId(1));
    let auth = if args.sealed {
        Auth::Keys(KeyRing::random()?)
    } else {
        Auth::Insecure
    };
    let endpoint = |node: NodeId| {
        let mut cfg = EndpointConfig::new(
            Config {
                local: node,
                max_in_flight: args.window,
                dedup_window: (args.window as u64).max(Config::default().dedup_window),
                seed: args.seed,
                auth: auth.clone(),
                ..Config::default()
            },
            "127.0.0.1:0".parse().expect("literal address"),
        );
        // Both directions get the same faults but distinct streams (the link endpoints
        // are mixed into each link's seed).
        cfg.faults = Some(FaultPlan::uniform(args.seed, faults.clone()));
        Endpoint::bind(cfg, Vec::new())
    };
    let mut ping = endpoint(a).await?;
    let mut pong = endpoint(b).await?;
    ping.add_peer(b, pong.local_addr()).await?;
    pong.add_peer(a, ping.local_addr()).await?;

    let size = args.size.max(8);
    let n = args.messages;
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + args.timeout;
    let sender = ping.sender();
    let sending = tokio::spawn(async move {
        for seq in 0..n {
            let mut msg = vec![0u8; size];
            msg[..8].copy_from_slice(&seq.to_le_bytes());
            if sender.send(b, msg).await.is_err() {
                return seq;
            }
        }
        n
    });

    let mut tally = Tally::default();
    let finished = tokio::time::timeout_at(deadline, async {
        while tally.seen.len() < n as usize || tally.acked < n {
            tokio::select! {
                Some(event) = ping.next_event() => {
                    if let Event::Acked { .. } = event {
                        tally.acked += 1;
                    }
                }
                Some(msg) = pong.recv() => {
                    let seq = u64::from_le_bytes(msg.bytes[..8].try_into().expect("8 bytes"));
                    tally.delivered += 1;
                    *tally.seen.entry(seq).or_default() += 1;
                }
                else => break,
            }
        }
    })
    .await
    .is_ok();
    let elapsed = start.elapsed();
    sending.abort();
    let sent = sending
        .await
        .unwrap_or(tally.acked.max(tally.seen.len() as u64));

    let ping_stats = ping.close().await?;
    let pong_stats = pong.close().await?;
    let report = report(
        args,
        &tally,
        sent,
        elapsed,
        finished,
        &ping_stats,
        &pong_stats,
    );
    let ok = report["missing"] == 0 && report["duplicates_delivered"] == 0;
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{sent} sent, {} delivered ({} unique, {} duplicates, {} missing) in {} ms; \
             {} retransmits, {} corrupt dropped; latency p50 {} us, p99 {} us, max {} us{}",
            report["delivered"],
            report["delivered_unique"],
            report["duplicates_delivered"],
            report["missing"],
            report["elapsed_ms"],
            report["retransmits"],
            report["corrupt_dropped"],
            report["p50_us"],
            report["p99_us"],
            report["max_us"],
            if finished { "" } else { " (TIMED OUT)" },
        );
    }
    Ok(ok)
}

fn report(
    args: &Args,
    tally: &Tally,
    sent: u64,
    elapsed: Duration,
    finished: bool,
    ping: &EndpointStats,
    pong: &EndpointStats,
) -> serde_json::Value {
    let unique = tally.seen.len() as u64;
    let duplicates = tally.seen.values().filter(|&&c| c > 1).count() as u64;
    // Delivery latency is measured at the receiver from the sender's first-send stamp
    // (both clocks are this host's wall clock).
    let lat = &pong.core.delivery_latency;
    let secs = elapsed.as_secs_f64().max(1e-9);
    json!({
        "messages": args.messages,
        "size": args.size.max(8),
        "loss": args.loss, "dup": args.dup, "reorder": args.reorder, "corrupt": args.corrupt,
        "seed": args.seed,
        "sealed": args.sealed,
        "finished": finished,
        "sent": sent,
        "acked": tally.acked,
        "delivered": tally.delivered,
        "delivered_unique": unique,
        "duplicates_delivered": duplicates,
        "missing": args.messages.saturating_sub(unique),
        "retransmits": ping.core.retransmits + pong.core.retransmits,
        // Sealed, corruption fails the AEAD tag instead of the CRC.
        "corrupt_dropped": ping.core.corrupt_dropped + pong.core.corrupt_dropped
            + ping.core.auth_failed_dropped + pong.core.auth_failed_dropped,
        // Bit flips in the magic or version fail before the checksum is looked at.
        "malformed_dropped": ping.core.malformed_dropped + pong.core.malformed_dropped,
        "duplicate_packets_dropped": ping.core.duplicate_packets + pong.core.duplicate_packets,
        "datagrams_sent": ping.driver.datagrams_sent + pong.driver.datagrams_sent,
        "faults_ping_to_pong": ping.faults,
        "faults_pong_to_ping": pong.faults,
        "p50_us": lat.value_at_quantile(0.5),
        "p99_us": lat.value_at_quantile(0.99),
        "max_us": lat.max(),
        "elapsed_ms": elapsed.as_millis() as u64,
        "messages_per_sec": (unique as f64 / secs).round(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units_and_flags_are_named_like_shutter_demo() {
        // The old spelling and bare numbers are errors, as in `shutter demo`.
        assert!(Args::try_parse_from(["pingpong", "--jitter-ms", "1"]).is_err());
        assert!(Args::try_parse_from(["pingpong", "--jitter", "1"]).is_err());
        assert!(Args::try_parse_from(["pingpong", "--timeout", "60"]).is_err());
        let a = Args::try_parse_from([
            "pingpong",
            "--jitter",
            "1ms",
            "--delay",
            "5ms",
            "--reorder-delay",
            "3ms",
            "--timeout",
            "2s",
        ])
        .expect("flags with units parse");
        assert_eq!(a.jitter, Duration::from_millis(1));
        assert_eq!(a.delay, Duration::from_millis(5));
        assert_eq!(a.reorder_delay, Duration::from_millis(3));
        assert_eq!(a.timeout, Duration::from_secs(2));
    }
}
