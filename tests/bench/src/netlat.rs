//! (b) One-way latency under receive-side loss between two network namespaces:
//! shutter's `Endpoint` vs TCP vs KCP, side by side.
//!
//! The lab is `shutter_tests::netns` (two namespaces on a bridge, an nftables rule in
//! each that drops N% of the UDP datagrams it receives from the other); this part adds
//! the same rule for TCP so the stream baseline loses as much. Each side runs on its own
//! thread that entered its namespace (`setns`) before creating its sockets, with its own
//! tokio runtime. The sender offers `rate` 64 B messages per second on a fixed schedule
//! and latency is taken wrk2-style: a message is charged for the time the sender was
//! held back by earlier send calls (flow control, a full window) past its scheduled
//! slot, but not for tokio's 1 ms timer lateness, which is no protocol's doing (the
//! sender keeps a virtual clock advanced by send-call durations only); both threads read
//! one monotonic clock. Messages still missing at the end are counted with the time they had waited
//! (a lower bound), never dropped from the percentiles.
//!
//! KCP is `tokio_kcp` in "turbo" settings as the issue gives them: nodelay, interval
//! 10 ms, fast resend after 2 duplicate acks, no congestion control (`nc`), writes and
//! acks flushed at once, message mode. Needs root, `ip` and `nft`; without them the part
//! prints why and measures nothing. Namespaces are created and deleted here only.

use std::fs::File;
use std::net::{SocketAddr, SocketAddrV4};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use hdrhistogram::Histogram;
use nix::sched::{CloneFlags, setns};
use shutter_tests::netns::Lab;
use shutter_transport::auth::{Auth, KEY_LEN, KeyRing};
use shutter_transport::driver::{DriverError, Endpoint, EndpointConfig, EndpointStats, Host};
use shutter_transport::{Config, Event, MessageId};
use shutter_vclock::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_kcp::{KcpConfig, KcpListener, KcpNoDelayConfig, KcpStream};

use crate::report::{Goal, Section, Target, num, text};

/// Message size.
const SIZE: usize = 64;

/// Sizes of one run.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Receive-side drop rates, percent.
    pub losses: Vec<u8>,
    /// Messages offered per second.
    pub rate: u32,
    /// Sending time per (loss, protocol).
    pub duration: Duration,
    /// Longest wait after the last scheduled send.
    pub drain: Duration,
}

impl Opts {
    /// The loss rates, 2000 msg/s, 3 s each.
    pub fn full() -> Opts {
        Opts {
            losses: vec![0, 1, 5, 10, 20],
            rate: 2000,
            duration: Duration::from_secs(3),
            drain: Duration::from_secs(3),
        }
    }

    /// Seconds-long size for tests.
    pub fn tiny() -> Opts {
        Opts {
            losses: vec![5],
            rate: 200,
            duration: Duration::from_millis(300),
            drain: Duration::from_secs(2),
        }
    }
}

/// The protocols, in interleaving order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Shutter,
    /// The same, every datagram sealed (what `shutter node` runs by default).
    ShutterSealed,
    /// Plain, with `Config::low_latency` (acknowledgements within 250 us, a 100 us
    /// timer granularity): the tail-latency setting, at a CPU price under load.
    ShutterLowLatency,
    /// Plain, defaults, the transport driven inside each side's own task
    /// (`driver::Host`): no task between the application and the socket, as for TCP.
    ShutterHost,
    Tcp,
    Kcp,
}

impl Proto {
    const ALL: [Proto; 6] = [
        Proto::Shutter,
        Proto::ShutterSealed,
        Proto::ShutterLowLatency,
        Proto::ShutterHost,
        Proto::Tcp,
        Proto::Kcp,
    ];

    fn name(self) -> &'static str {
        match self {
            Proto::Shutter => "shutter Endpoint",
            Proto::ShutterSealed => "shutter Endpoint, sealed",
            Proto::ShutterLowLatency => "shutter Endpoint, Config::low_latency",
            Proto::ShutterHost => "shutter Host (in-task)",
            Proto::Tcp => "TCP (nodelay)",
            Proto::Kcp => "KCP turbo",
        }
    }

    fn port(self) -> u16 {
        match self {
            Proto::Shutter => 7101,
            Proto::Tcp => 7102,
            Proto::Kcp => 7103,
            Proto::ShutterSealed => 7104,
            Proto::ShutterLowLatency => 7105,
            Proto::ShutterHost => 7106,
        }
    }

    /// The endpoint of node `me` at `addr`, for the shutter variants.
    fn endpoint_config(self, me: u32, addr: SocketAddrV4) -> EndpointConfig {
        // Both ends share one key; a fixed one is enough to measure the cost.
        let auth = match self {
            Proto::ShutterSealed => Auth::Keys(KeyRing::single(1, [0x5a; KEY_LEN])),
            _ => Auth::Insecure,
        };
        let base = match self {
            Proto::ShutterLowLatency => Config::low_latency(),
            _ => Config::default(),
        };
        EndpointConfig::new(
            Config {
                local: NodeId(me),
                auth,
                ..base
            },
            SocketAddr::V4(addr),
        )
    }
}

/// The one monotonic origin both threads stamp against.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn stamp() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// A message: its number and its scheduled send time (ns since [`origin`]), padded.
fn message(k: u64, scheduled: u64) -> Vec<u8> {
    let mut m = vec![0x5a; SIZE];
    m[..8].copy_from_slice(&k.to_le_bytes());
    m[8..16].copy_from_slice(&scheduled.to_le_bytes());
    m
}

fn parse(m: &[u8]) -> Option<(u64, u64)> {
    let k = u64::from_le_bytes(m.get(..8)?.try_into().ok()?);
    let t = u64::from_le_bytes(m.get(8..16)?.try_into().ok()?);
    Some((k, t))
}

fn kcp_config() -> KcpConfig {
    KcpConfig {
        nodelay: KcpNoDelayConfig {
            nodelay: true,
            interval: 10,
            resend: 2,
            nc: true,
        },
        flush_write: true,
        flush_acks_input: true,
        stream: false,
        ..KcpConfig::default()
    }
}

/// Runs `f` on a new thread inside namespace `ns` with its own tokio runtime.
fn in_netns<T, F, Fut>(ns: &str, f: F) -> std::thread::JoinHandle<Result<T>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
{
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = File::open(&path).with_context(|| format!("opening {path}"))?;
        setns(&fd, CloneFlags::CLONE_NEWNET).context("setns")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(f())
    })
}

/// What the receiver saw: `(message number, scheduled send ns, latency ns)`.
type Arrivals = Vec<(u64, u64, u64)>;

/// The shutter sender's own account of a run (none for TCP and KCP): packets it
/// declared lost, losses later proven spurious, probe timeouts.
type SenderCounts = Option<[u64; 3]>;

async fn send_all(
    proto: Proto,
    to: SocketAddrV4,
    me: SocketAddrV4,
    opts: Opts,
    ready: Receiver<()>,
    done: Arc<AtomicBool>,
) -> Result<SenderCounts> {
    let total = u64::from(opts.rate) * opts.duration.as_millis() as u64 / 1000;
    let gap = Duration::from_nanos(1_000_000_000 / u64::from(opts.rate.max(1)));
    enum Tx {
        Shutter(Endpoint),
        // Boxed: its receive buffer would make every variant its size.
        Host(Box<Host>),
        Tcp(tokio::net::TcpStream),
        Kcp(KcpStream),
    }
    /// Waits until `at`; a host's transport runs only while it is awaited, so it is
    /// served meanwhile.
    async fn idle_until(tx: &mut Tx, at: tokio::time::Instant) {
        match tx {
            Tx::Host(h) => serve_until(h, at).await,
            _ => tokio::time::sleep_until(at).await,
        }
    }
    // The receiver listens first; if it failed, its end of the channel is gone.
    ready
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| anyhow!("the receiver did not start"))?;
    let mut tx = match proto {
        Proto::Shutter | Proto::ShutterSealed | Proto::ShutterLowLatency => {
            let cfg = proto.endpoint_config(0, me);
            Tx::Shutter(Endpoint::bind(cfg, vec![(NodeId(1), SocketAddr::V4(to))]).await?)
        }
        Proto::ShutterHost => {
            let cfg = proto.endpoint_config(0, me);
            Tx::Host(Box::new(
                Host::bind(cfg, vec![(NodeId(1), SocketAddr::V4(to))]).await?,
            ))
        }
        Proto::Tcp => {
            let s = tokio::net::TcpStream::connect(to).await?;
            s.set_nodelay(true)?;
            Tx::Tcp(s)
        }
        Proto::Kcp => Tx::Kcp(KcpStream::connect(&kcp_config(), SocketAddr::V4(to)).await?),
    };
    let start = tokio::time::Instant::now();
    let base = stamp();
    // A sender held back (TCP under loss) stops at the receiver's deadline; a failed
    // send (the receiver gave up and closed) ends the sending: what is missing shows on
    // the receiving side.
    let stop = start + opts.duration + opts.drain;
    let mut virtual_free = 0u64;
    for k in 0..total {
        let offset = gap * k as u32;
        idle_until(&mut tx, start + offset).await;
        // wrk2-style, minus the timer: a message is charged for the time the sender
        // spent blocked in earlier sends (flow control, a full window) past its slot,
        // kept on a virtual clock that advances by send-call durations only; tokio's
        // 1 ms timer lateness is not charged to any protocol.
        let scheduled = base + offset.as_nanos() as u64;
        let woke = stamp();
        let virtual_start = scheduled.max(virtual_free);
        let from = woke.saturating_sub(virtual_start - scheduled);
        let m = message(k, from);
        let sent = match &mut tx {
            Tx::Shutter(ep) => tokio::time::timeout_at(stop, ep.send(NodeId(1), m))
                .await
                .is_ok_and(|r| r.is_ok()),
            Tx::Host(h) => tokio::time::timeout_at(stop, host_send(h, NodeId(1), m))
                .await
                .is_ok_and(|r| r.is_ok()),
            Tx::Tcp(s) => tokio::time::timeout_at(stop, s.write_all(&m))
                .await
                .is_ok_and(|r| r.is_ok()),
            Tx::Kcp(s) => tokio::time::timeout_at(stop, s.send(&m))
                .await
                .is_ok_and(|r| r.is_ok()),
        };
        if !sent {
            break;
        }
        virtual_free = virtual_start + stamp().saturating_sub(woke);
    }
    // Keep the sender alive (retransmitting, acknowledging) until the receiver is done.
    while !done.load(Ordering::Relaxed)
        && tokio::time::Instant::now() < stop + Duration::from_secs(1)
    {
        let slice = tokio::time::Instant::now() + Duration::from_millis(10);
        idle_until(&mut tx, slice).await;
    }
    let counts = |st: &EndpointStats| {
        let c = &st.core;
        [c.packets_lost, c.spurious_losses, c.rto_expirations]
    };
    Ok(match tx {
        Tx::Shutter(ep) => ep.close().await.ok().map(|st| counts(&st)),
        Tx::Host(h) => Some(counts(&h.stats())),
        _ => None,
    })
}

/// Lets `h` work (receive, acknowledge, retransmit) until `at`.
async fn serve_until(h: &mut Host, at: tokio::time::Instant) {
    // `next_event` is cancel-safe; this side only sends, so its events are acks.
    while tokio::time::timeout_at(at, h.next_event()).await.is_ok() {}
}

/// Sends on `h` once the window has room, serving it meanwhile (what
/// `Endpoint::send` does in the endpoint's task).
async fn host_send(
    h: &mut Host,
    to: NodeId,
    m: Vec<u8>,
) -> std::result::Result<MessageId, DriverError> {
    while !h.can_send(to) {
        h.next_event().await;
    }
    h.send(to, m).await
}

async fn receive_all(
    proto: Proto,
    me: SocketAddrV4,
    peer: SocketAddrV4,
    opts: Opts,
    ready: SyncSender<()>,
    done: Arc<AtomicBool>,
) -> Result<(Arrivals, Vec<u64>)> {
    let total = u64::from(opts.rate) * opts.duration.as_millis() as u64 / 1000;
    let deadline =
        tokio::time::Instant::now() + opts.duration + opts.drain + Duration::from_secs(1);
    let mut got = Vec::with_capacity(total as usize);
    let mut seen = vec![false; total as usize];
    let mut record = |m: &[u8], got: &mut Arrivals| {
        if let Some((k, t)) = parse(m) {
            if let Some(s) = seen.get_mut(k as usize) {
                if !*s {
                    *s = true;
                    got.push((k, t, stamp().saturating_sub(t)));
                }
            }
        }
    };
    match proto {
        Proto::Shutter | Proto::ShutterSealed | Proto::ShutterLowLatency => {
            let cfg = proto.endpoint_config(1, me);
            let mut ep = Endpoint::bind(cfg, vec![(NodeId(0), SocketAddr::V4(peer))]).await?;
            let _ = ready.send(());
            while (got.len() as u64) < total {
                match tokio::time::timeout_at(deadline, ep.recv()).await {
                    Ok(Some(m)) => record(&m.bytes, &mut got),
                    _ => break,
                }
            }
            let _ = ep.close().await;
        }
        Proto::ShutterHost => {
            let cfg = proto.endpoint_config(1, me);
            let mut h = Host::bind(cfg, vec![(NodeId(0), SocketAddr::V4(peer))]).await?;
            let _ = ready.send(());
            while (got.len() as u64) < total {
                match tokio::time::timeout_at(deadline, h.next_event()).await {
                    Ok(Event::Delivered { bytes, .. }) => record(&bytes, &mut got),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            // The sender may still wait for the last acknowledgements.
            serve_until(
                &mut h,
                tokio::time::Instant::now() + Duration::from_millis(50),
            )
            .await;
        }
        Proto::Tcp => {
            let listener = tokio::net::TcpListener::bind(me).await?;
            let _ = ready.send(());
            let (mut s, _) = tokio::time::timeout_at(deadline, listener.accept())
                .await
                .map_err(|_| anyhow!("no TCP connection"))??;
            let mut buf = [0u8; SIZE];
            while (got.len() as u64) < total {
                match tokio::time::timeout_at(deadline, s.read_exact(&mut buf)).await {
                    Ok(Ok(_)) => record(&buf, &mut got),
                    _ => break,
                }
            }
        }
        Proto::Kcp => {
            let mut listener = KcpListener::bind(kcp_config(), me).await?;
            let _ = ready.send(());
            let (mut s, _) = tokio::time::timeout_at(deadline, listener.accept())
                .await
                .map_err(|_| anyhow!("no KCP session"))??;
            let mut buf = [0u8; 2048];
            while (got.len() as u64) < total {
                match tokio::time::timeout_at(deadline, s.recv(&mut buf)).await {
                    Ok(Ok(n)) => record(&buf[..n], &mut got),
                    _ => break,
                }
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    // Missing messages count with what they waited so far (a lower bound): their
    // scheduled times follow from any arrival's, the schedule being regular.
    let now = stamp();
    let gap = 1_000_000_000 / u64::from(opts.rate.max(1));
    let base = got.first().map(|&(k, t, _)| t.saturating_sub(k * gap));
    let waits = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !**s)
        .map(|(k, _)| base.map_or(0, |b| now.saturating_sub(b + k as u64 * gap)))
        .collect();
    Ok((got, waits))
}

/// Adds the TCP twin of the lab's UDP drop rule in namespace `ns`.
fn drop_tcp(ns: &str, loss: u8) -> Result<()> {
    if loss == 0 {
        return Ok(());
    }
    let rule = format!(
        "ip saddr 10.77.0.0/24 meta l4proto tcp numgen random mod 100 < {loss} counter drop"
    );
    let mut args = vec![
        "netns",
        "exec",
        ns,
        "nft",
        "add",
        "rule",
        "inet",
        "shutter_lossy",
        "pre",
    ];
    args.extend(rule.split(' '));
    let out = Command::new("ip")
        .args(&args)
        .output()
        .context("running ip netns exec nft")?;
    if !out.status.success() {
        bail!(
            "nft add rule in {ns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// One (loss, protocol): latency histogram (µs), messages delivered and still missing
/// at the end, and the shutter sender's counts.
fn once(lab: &Lab, proto: Proto, opts: &Opts) -> Result<(Histogram<u64>, u64, u64, SenderCounts)> {
    let (a, b) = (lab.addr(0), lab.addr(1));
    let tx_addr = SocketAddrV4::new(a, proto.port());
    let rx_addr = SocketAddrV4::new(b, proto.port());
    let (ready_tx, ready_rx) = sync_channel(1);
    let done = Arc::new(AtomicBool::new(false));
    let (o1, o2, d1, d2) = (opts.clone(), opts.clone(), done.clone(), done);
    let rx = in_netns(lab.netns(1), move || {
        receive_all(proto, rx_addr, tx_addr, o1, ready_tx, d1)
    });
    let tx = in_netns(lab.netns(0), move || {
        send_all(proto, rx_addr, tx_addr, o2, ready_rx, d2)
    });
    let sent = tx.join().map_err(|_| anyhow!("sender thread panicked"))?;
    let (got, missing) = rx
        .join()
        .map_err(|_| anyhow!("receiver thread panicked"))??;
    let counts = sent.with_context(|| format!("{} sender", proto.name()))?;
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for ns in got.iter().map(|a| a.2).chain(missing.iter().copied()) {
        h.saturating_record((ns / 1000).max(1));
    }
    Ok((h, got.len() as u64, missing.len() as u64, counts))
}

/// Runs every loss rate, the three protocols interleaved, and judges the latency targets.
pub fn run(opts: &Opts) -> Result<Section> {
    let mut s = Section::new(
        "netlat",
        format!(
            "one-way latency of {SIZE} B messages at {} msg/s between two network namespaces, nftables receive-side drop, from the scheduled send time",
            opts.rate
        ),
        &[
            "drop %",
            "protocol",
            "delivered",
            "missing",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "lost",
            "spurious",
            "probe timeouts",
        ],
    );
    if let Err(why) = Lab::probe() {
        s.notes.push(format!("SKIPPED: {why}"));
        return Ok(s);
    }
    let _ = origin();
    let mut p99 = std::collections::BTreeMap::new();
    for &loss in &opts.losses {
        let lab = Lab::create(2, loss).map_err(|e| anyhow!("network lab: {e}"))?;
        drop_tcp(lab.netns(0), loss)?;
        drop_tcp(lab.netns(1), loss)?;
        for proto in Proto::ALL {
            let (h, delivered, missing, counts) = once(&lab, proto, opts)?;
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
            p99.insert((loss, proto.name()), ms(0.99));
            let mut row = vec![
                num(f64::from(loss)),
                text(proto.name()),
                num(delivered as f64),
                num(missing as f64),
                num(ms(0.5)),
                num(ms(0.99)),
                num(ms(0.999)),
                num(h.max() as f64 / 1e3),
            ];
            row.extend((0..3).map(|i| counts.map_or(text("-"), |c| num(c[i] as f64))));
            s.row(row);
        }
    }
    let get = |l: u8, p: Proto| p99.get(&(l, p.name())).copied();
    // p99 of `p` over that of `baseline` at drop `l`.
    let ratio = |l: u8, p: Proto, baseline: Proto| {
        get(l, p)
            .zip(get(l, baseline))
            .map(|(a, b)| a / b.max(1e-9))
    };
    // The targets, judged for the defaults and for the tail-latency setting.
    for (who, p) in [
        ("shutter", Proto::Shutter),
        ("shutter (low_latency)", Proto::ShutterLowLatency),
        ("shutter (Host, in-task)", Proto::ShutterHost),
    ] {
        s.targets.push(Target::new(
            format!("{who} p99 at 5% drop <= 1 ms"),
            get(5, p),
            Goal::AtMost,
            1.0,
            "ms",
        ));
        s.targets.push(Target::new(
            format!("{who} p99 / KCP turbo p99 at 5% drop <= 1/20"),
            ratio(5, p, Proto::Kcp),
            Goal::AtMost,
            0.05,
            "x",
        ));
        s.targets.push(Target::new(
            format!("{who} p99 / TCP p99 at 0% drop <= 1"),
            ratio(0, p, Proto::Tcp),
            Goal::AtMost,
            1.0,
            "x",
        ));
    }
    s.notes.push("missing = not delivered when the receiver gave up; each counts in the percentiles with the time it had waited then (a lower bound)".into());
    s.notes.push("lost / spurious / probe timeouts: the shutter sender's packets declared lost, those later proven spurious, and its probe timeouts (a probe timeout declares nothing lost)".into());
    Ok(s)
}
