//! `--metrics ADDR`: a Prometheus scrape endpoint (`GET /metrics`, OpenMetrics text).
//!
//! Encoded with `prometheus-client`, the Prometheus project's own Rust client: it owns
//! the exposition format (escaping, `_total` and `_bucket` suffixes, cumulative `le`
//! buckets, `# EOF`), so this module only maps the node's counters onto metric families.
//! Latencies are HdrHistograms inside the runtime; each scrape folds them into fixed
//! Prometheus buckets (in seconds, as Prometheus names latencies), so `histogram_quantile`
//! works across nodes. The fold is exact up to HdrHistogram's 3 significant digits.
//!
//! The HTTP side is a few lines over a tokio listener (one GET per connection, answered
//! and closed): scrapes are rare and small, and a web framework would be most of the
//! binary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use hdrhistogram::Histogram;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use shutter_snapshot::AbortWhy;
use shutter_snapshot::runtime::NodeStats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::node::Dropped;

/// Upper bounds (seconds) of the latency buckets: 100 µs to 30 s.
pub const LATENCY_BOUNDS_S: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The OpenMetrics content type `prometheus-client` encodes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Longest request head read from a scraper.
const MAX_REQUEST: usize = 8 * 1024;
/// A scraper that sends nothing for this long is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What one node contributes to a scrape.
#[derive(Debug)]
pub struct NodeSample {
    /// The node's runtime counters and histograms.
    pub stats: NodeStats,
    /// Aborted snapshots this node initiated, by [`reason_label`].
    pub aborted_by_reason: BTreeMap<&'static str, u64>,
    /// Admin connections refused for failed authentication.
    pub admin_refused: u64,
}

/// A short, fixed label for an abort cause (Prometheus labels must have few values; the
/// node named in the cause goes to the log, not into a label).
pub fn reason_label(why: &AbortWhy) -> &'static str {
    match why {
        AbortWhy::Timeout => "timeout",
        AbortWhy::Unreachable(_) => "unreachable",
        AbortWhy::ChannelStateTooLarge => "channel_state_too_large",
        AbortWhy::Restarted(_) => "restarted",
        AbortWhy::FailedCheck => "failed_check",
    }
}

/// One latency histogram per node, folded into [`LATENCY_BOUNDS_S`] at encoding time.
#[derive(Debug)]
struct LatencyFamily(Vec<(String, Folded)>);

/// A histogram in Prometheus form: per-bucket (not cumulative: the encoder sums) counts.
#[derive(Debug)]
struct Folded {
    sum_s: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl Folded {
    /// Folds `h` (microseconds) into the fixed buckets plus `+Inf`.
    fn of(h: &Histogram<u64>) -> Folded {
        let mut buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_S
            .iter()
            .map(|&b| (b, 0))
            .chain([(f64::INFINITY, 0)])
            .collect();
        let mut sum_s = 0.0;
        for v in h.iter_recorded() {
            // Every value of an HdrHistogram bucket is at most its highest equivalent
            // value: bucket by that, so no value lands below its bound.
            let s = v.value_iterated_to() as f64 / 1e6;
            let n = v.count_at_value();
            sum_s += h.median_equivalent(v.value_iterated_to()) as f64 / 1e6 * n as f64;
            if let Some(b) = buckets.iter_mut().find(|(bound, _)| s <= *bound) {
                b.1 += n;
            }
        }
        Folded {
            sum_s,
            count: h.len(),
            buckets,
        }
    }
}

impl EncodeMetric for LatencyFamily {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (node, f) in &self.0 {
            let labels = [("node", node.as_str())];
            encoder
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(f.sum_s, f.count, &f.buckets, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

type Labels = Vec<(&'static str, String)>;

fn counter_family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (Labels, u64)>,
) {
    let family = Family::<Labels, Counter>::default();
    for (labels, v) in values {
        family.get_or_create(&labels).inc_by(v);
    }
    registry.register(name, help, family);
}

/// The OpenMetrics text of one scrape over `nodes`.
pub fn render(nodes: &[NodeSample]) -> String {
    let mut r = Registry::with_prefix("shutter");
    let node = |s: &NodeSample| vec![("node", s.stats.id.to_string())];
    let per_node = |f: fn(&NodeSample) -> u64| {
        nodes
            .iter()
            .map(move |s| (node(s), f(s)))
            .collect::<Vec<_>>()
    };
    counter_family(
        &mut r,
        "snapshots_completed",
        "Snapshots this node initiated that completed.",
        per_node(|s| s.stats.snapshots.completed()),
    );
    counter_family(
        &mut r,
        "snapshots_aborted",
        "Snapshots this node initiated that were aborted, by reason.",
        nodes.iter().flat_map(|s| {
            s.aborted_by_reason.iter().map(move |(why, n)| {
                let mut l = node(s);
                l.push(("reason", (*why).to_string()));
                (l, *n)
            })
        }),
    );
    r.register(
        "snapshot_latency_seconds",
        "Initiation to completion of the snapshots this node initiated.",
        LatencyFamily(
            nodes
                .iter()
                .map(|s| {
                    (
                        s.stats.id.to_string(),
                        Folded::of(s.stats.snapshots.latency()),
                    )
                })
                .collect(),
        ),
    );
    r.register(
        "delivery_latency_seconds",
        "Transport delivery latency of messages received here: first transmission to \
         delivery, retransmission delays included.",
        LatencyFamily(
            nodes
                .iter()
                .map(|s| {
                    (
                        s.stats.id.to_string(),
                        Folded::of(&s.stats.transport.core.delivery_latency),
                    )
                })
                .collect(),
        ),
    );
    counter_family(
        &mut r,
        "messages_sent",
        "Application messages (transfers) sent.",
        per_node(|s| s.stats.app_messages_sent),
    );
    counter_family(
        &mut r,
        "messages_delivered",
        "Application messages delivered to the process.",
        per_node(|s| s.stats.app_messages_delivered),
    );
    counter_family(
        &mut r,
        "datagrams_sent",
        "Datagrams the transport sent.",
        per_node(|s| s.stats.transport.core.datagrams_sent),
    );
    counter_family(
        &mut r,
        "datagrams_received",
        "Datagrams the transport received, valid or not.",
        per_node(|s| s.stats.transport.core.datagrams_received),
    );
    counter_family(
        &mut r,
        "retransmits",
        "Data frames sent again after their packet was declared lost.",
        per_node(|s| s.stats.transport.core.retransmits),
    );
    counter_family(
        &mut r,
        "duplicates_dropped",
        "Fragments or messages received again and discarded.",
        per_node(|s| s.stats.transport.core.duplicates_dropped),
    );
    counter_family(
        &mut r,
        "fault_dropped",
        "Datagrams the injected faults dropped (loss model or partition).",
        per_node(|s| {
            s.stats.transport.faults.dropped_loss + s.stats.transport.faults.dropped_partition
        }),
    );
    counter_family(
        &mut r,
        "dropped",
        "Datagrams, envelopes and admin requests refused, by reason.",
        nodes.iter().flat_map(|s| {
            Dropped::from_stats(&s.stats, s.admin_refused)
                .by_reason()
                .into_iter()
                .map(move |(why, n)| {
                    let mut l = node(s);
                    l.push(("reason", why.to_string()));
                    (l, n)
                })
        }),
    );
    counter_family(
        &mut r,
        "rollbacks",
        "Cluster-wide rollbacks this node went through.",
        per_node(|s| s.stats.rollbacks),
    );
    counter_family(
        &mut r,
        "messages_returned",
        "Application messages handed back as undeliverable because their receiver restarted (the bank refunds them).",
        per_node(|s| s.stats.app_messages_returned),
    );
    counter_family(
        &mut r,
        "checkpoints_written",
        "Checkpoints this node wrote.",
        per_node(|s| s.stats.checkpoints_written),
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &r);
    out
}

/// A scrape asks the owner of the nodes for the current text.
pub type Scrape = oneshot::Sender<String>;

/// Binds `addr` (before the node joins, so a taken port fails the start).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind the metrics endpoint on tcp {addr}"))
}

/// Serves scrapes on `listener` until the receiver of `scrapes` is gone.
pub async fn serve(listener: TcpListener, scrapes: mpsc::Sender<Scrape>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let scrapes = scrapes.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, scrapes).await {
                tracing::debug!("metrics request: {e}");
            }
        });
    }
}

/// Reads one request head, answers it and closes the connection.
async fn answer(mut stream: TcpStream, scrapes: mpsc::Sender<Scrape>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    let line = String::from_utf8_lossy(head.split(|&b| b == b'\n').next().unwrap_or(&[]))
        .trim()
        .to_string();
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n",
        )
        .await;
    }
    if path != "/metrics" && !path.starts_with("/metrics?") {
        return respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            "try GET /metrics\n",
        )
        .await;
    }
    let (tx, rx) = oneshot::channel();
    if scrapes.send(tx).await.is_err() {
        return respond(
            &mut stream,
            "503 Service Unavailable",
            "text/plain",
            "stopping\n",
        )
        .await;
    }
    match rx.await {
        Ok(text) => respond(&mut stream, "200 OK", CONTENT_TYPE, &text).await,
        Err(_) => {
            respond(
                &mut stream,
                "503 Service Unavailable",
                "text/plain",
                "stopping\n",
            )
            .await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use shutter_snapshot::report::new_histogram;
    use shutter_vclock::NodeId;

    fn sample() -> NodeSample {
        let mut stats = NodeStats {
            id: NodeId(3),
            transport: shutter_transport::driver::EndpointStats {
                core: Default::default(),
                faults: Default::default(),
                driver: Default::default(),
            },
            snapshots: Default::default(),
            app_delivery_latency: new_histogram(),
            members: vec![NodeId(3)],
            app_messages_sent: 0,
            app_messages_delivered: 0,
            app_messages_returned: 2,
            stale_discarded: 0,
            malformed_envelopes: 0,
            lean_undecodable: 0,
            non_member_dropped: 0,
            send_errors: 0,
            rolled_back_dropped: 0,
            halted_released: 0,
            rollbacks: 0,
            checkpoints_written: 0,
        };
        stats.transport.core.retransmits = 7;
        stats.transport.core.auth_failed_dropped = 2;
        let mut h = new_histogram();
        for us in [50, 800, 800, 40_000, 90_000_000] {
            h.record(us).unwrap();
        }
        stats.transport.core.delivery_latency = h;
        NodeSample {
            stats,
            aborted_by_reason: [("timeout", 4)].into(),
            admin_refused: 1,
        }
    }

    #[test]
    fn every_family_is_in_the_text_with_cumulative_buckets() {
        let text = render(&[sample()]);
        for needle in [
            "# TYPE shutter_snapshot_latency_seconds histogram",
            "shutter_retransmits_total{node=\"n3\"} 7",
            "shutter_messages_returned_total{node=\"n3\"} 2",
            "shutter_snapshots_aborted_total{node=\"n3\",reason=\"timeout\"} 4",
            "shutter_dropped_total{node=\"n3\",reason=\"auth_failed\"} 2",
            "shutter_dropped_total{node=\"n3\",reason=\"admin_refused\"} 1",
            "shutter_delivery_latency_seconds_count{node=\"n3\"} 5",
            // 50 µs <= 100 µs; 800 µs <= 1 ms (cumulative: 3); 40 ms <= 50 ms; 90 s: +Inf.
            "shutter_delivery_latency_seconds_bucket{le=\"0.0001\",node=\"n3\"} 1",
            "shutter_delivery_latency_seconds_bucket{le=\"0.001\",node=\"n3\"} 3",
            "shutter_delivery_latency_seconds_bucket{le=\"0.05\",node=\"n3\"} 4",
            "shutter_delivery_latency_seconds_bucket{le=\"30.0\",node=\"n3\"} 4",
            "shutter_delivery_latency_seconds_bucket{le=\"+Inf\",node=\"n3\"} 5",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn reasons_are_few_fixed_labels() {
        assert_eq!(
            reason_label(&AbortWhy::Unreachable(NodeId(9))),
            "unreachable"
        );
        assert_eq!(reason_label(&AbortWhy::Restarted(NodeId(1))), "restarted");
    }
}
