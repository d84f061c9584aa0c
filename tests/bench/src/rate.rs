//! (a) 64 B message rate: shutter's `Endpoint` (one sender task, and 64) against raw UDP
//! with `sendmmsg`/`recvmmsg` in batches of 64, in the same run, interleaved round by
//! round, with process CPU time (getrusage, all threads, both ends) per message.
//!
//! Both sides run in this process over 127.0.0.1. The raw baseline counts datagrams
//! *received* (a UDP sender outruns its receiver; the loss is shown), shutter counts
//! messages delivered (reliable). Every run is bounded by a message count and a time
//! limit and stops by itself.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg, setsockopt, sockopt,
};
use shutter_transport::auth::{Auth, KeyRing};
use shutter_transport::driver::{DEFAULT_SOCKET_BUFFER, Endpoint, EndpointConfig};
use shutter_transport::{Config, Event};
use shutter_vclock::NodeId;

use crate::cpu::process_cpu;
use crate::report::{Goal, Section, Target, median, num, text};

/// Message size.
pub const SIZE: usize = 64;
/// Raw UDP batch per syscall.
pub const BATCH: usize = 64;

/// Sizes of one run.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Messages per measurement.
    pub messages: u64,
    /// Interleaved rounds (each measures every variant once).
    pub rounds: usize,
    /// Longest one measurement may take.
    pub limit: Duration,
}

impl Opts {
    /// A few seconds per round.
    pub fn full() -> Opts {
        Opts {
            messages: 300_000,
            rounds: 3,
            limit: Duration::from_secs(8),
        }
    }

    /// Seconds-long size for tests.
    pub fn tiny() -> Opts {
        Opts {
            messages: 2_000,
            rounds: 1,
            limit: Duration::from_secs(5),
        }
    }
}

/// One measurement.
#[derive(Clone, Copy, Debug)]
struct Measure {
    /// Messages (or datagrams) that arrived.
    received: u64,
    /// Messages (or datagrams) offered.
    sent: u64,
    /// From the first send to the last arrival.
    elapsed: Duration,
    /// Process CPU over the same span.
    cpu: Duration,
}

impl Measure {
    fn rate(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn cpu_us_per_msg(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.received.max(1) as f64
    }
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// How the application drives an `Endpoint`.
#[derive(Clone, Copy, Debug)]
struct Shape {
    /// Sender tasks sharing the messages.
    tasks: usize,
    /// Messages per `send_batch` call and events per `next_events` read; 1 means one
    /// `send` and one `recv` per message.
    batch: usize,
}

/// shutter: `shape.tasks` tasks share `messages` sends through one `Endpoint` to
/// another. `auth` is the same on both ends: plain, or sealed with one key ring.
async fn endpoint_once(
    shape: Shape,
    auth: &Auth,
    messages: u64,
    limit: Duration,
) -> Result<Measure> {
    let Shape { tasks, batch } = shape;
    let core = |id| Config {
        local: NodeId(id),
        auth: auth.clone(),
        ..Config::default()
    };
    let mut b = Endpoint::bind(EndpointConfig::new(core(1), localhost()), vec![]).await?;
    let mut a = Endpoint::bind(
        EndpointConfig::new(core(0), localhost()),
        vec![(NodeId(1), b.local_addr())],
    )
    .await?;
    b.add_peer(NodeId(0), a.local_addr()).await?;
    let per_task = (messages / tasks as u64).max(1);
    let total = per_task * tasks as u64;
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..tasks {
        let tx = a.sender();
        senders.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while sent < per_task && t0.elapsed() < limit {
                let n = (batch as u64).min(per_task - sent);
                let ok = if batch == 1 {
                    tx.send(NodeId(1), vec![0x5a; SIZE]).await.is_ok()
                } else {
                    let messages = (0..n).map(|_| vec![0x5a; SIZE]).collect();
                    tx.send_batch(NodeId(1), messages).await.is_ok()
                };
                if !ok {
                    break;
                }
                sent += n;
            }
            sent
        }));
    }
    // The sender's acknowledgement events are read and dropped so they do not pile up.
    let drain = tokio::spawn(async move {
        let mut events = Vec::with_capacity(batch);
        while a.next_events(&mut events, batch).await > 0 {
            events.clear();
        }
    });
    let mut received = 0u64;
    let mut events = Vec::with_capacity(batch);
    while received < total {
        let Some(left) = limit.checked_sub(t0.elapsed()) else {
            break;
        };
        if batch == 1 {
            match tokio::time::timeout(left, b.recv()).await {
                Ok(Some(_)) => received += 1,
                Ok(None) | Err(_) => break,
            }
            continue;
        }
        match tokio::time::timeout(left, b.next_events(&mut events, batch)).await {
            Ok(n) if n > 0 => {
                received += events
                    .drain(..)
                    .filter(|e| matches!(e, Event::Delivered { .. }))
                    .count() as u64;
            }
            Ok(_) | Err(_) => break,
        }
    }
    let elapsed = t0.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    let mut sent = 0;
    for s in senders {
        s.abort();
        sent += s.await.unwrap_or(0);
    }
    drain.abort();
    let _ = b.close().await;
    Ok(Measure {
        received,
        sent: sent.max(received),
        elapsed,
        cpu,
    })
}

/// Raw UDP: one thread `sendmmsg`s batches of [`BATCH`], another `recvmmsg`s them.
fn raw_once(messages: u64, limit: Duration) -> Result<Measure> {
    let rx = UdpSocket::bind(localhost()).context("bind raw receiver")?;
    let tx = UdpSocket::bind(localhost()).context("bind raw sender")?;
    // Same buffers the endpoint asks for, so neither side gets more room to absorb bursts.
    setsockopt(&rx, sockopt::RcvBuf, &DEFAULT_SOCKET_BUFFER)?;
    setsockopt(&tx, sockopt::SndBuf, &DEFAULT_SOCKET_BUFFER)?;
    rx.set_read_timeout(Some(Duration::from_millis(20)))?;
    let SocketAddr::V4(dest) = rx.local_addr()? else {
        return Err(anyhow!("loopback receiver is not IPv4"));
    };
    let done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let cpu0 = process_cpu();
    let sender_done = done.clone();
    let sender =
        std::thread::spawn(move || send_batches(&tx, dest, messages, limit, t0, &sender_done));
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut hdrs = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut received = 0u64;
    let mut last = t0;
    let mut idle_since: Option<Instant> = None;
    while received < messages && t0.elapsed() < limit {
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = bufs
            .iter_mut()
            .map(|b| [IoSliceMut::new(&mut b[..])])
            .collect();
        match recvmmsg(
            rx.as_raw_fd(),
            &mut hdrs,
            slices.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        ) {
            Ok(res) => {
                received += res.count() as u64;
                last = Instant::now();
                idle_since = None;
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {
                // Nothing for a while: once the sender has finished, what is missing was
                // dropped by the kernel and will never come.
                if done.load(Ordering::Relaxed) {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(100) {
                        break;
                    }
                }
            }
            Err(e) => return Err(anyhow!("recvmmsg: {e}")),
        }
    }
    let cpu = process_cpu().saturating_sub(cpu0);
    done.store(true, Ordering::Relaxed);
    let sent = sender
        .join()
        .map_err(|_| anyhow!("raw sender thread panicked"))??;
    Ok(Measure {
        received,
        sent,
        elapsed: last.duration_since(t0),
        cpu,
    })
}

fn send_batches(
    tx: &UdpSocket,
    dest: SocketAddrV4,
    messages: u64,
    limit: Duration,
    t0: Instant,
    done: &AtomicBool,
) -> Result<u64> {
    let payload = [0x5au8; SIZE];
    let slices: Vec<[IoSlice<'_>; 1]> = (0..BATCH).map(|_| [IoSlice::new(&payload)]).collect();
    let addrs = vec![Some(SockaddrIn::from(dest)); BATCH];
    let mut hdrs = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let no_cmsgs: [ControlMessage<'_>; 0] = [];
    let mut sent = 0u64;
    while sent < messages && t0.elapsed() < limit && !done.load(Ordering::Relaxed) {
        let n = BATCH.min((messages - sent) as usize);
        match sendmmsg(
            tx.as_raw_fd(),
            &mut hdrs,
            &slices[..n],
            &addrs[..n],
            no_cmsgs,
            MsgFlags::empty(),
        ) {
            Ok(res) => sent += res.count() as u64,
            Err(Errno::EAGAIN | Errno::EINTR | Errno::ENOBUFS) => std::thread::yield_now(),
            Err(e) => return Err(anyhow!("sendmmsg: {e}")),
        }
    }
    done.store(true, Ordering::Relaxed);
    Ok(sent)
}

/// shutter's shapes. The variants, in interleaving order, are the raw baseline, then
/// these plain, then these sealed (so variant `i` and `i + SHAPES.len()` pair up).
const SHAPES: [Shape; 3] = [
    Shape { tasks: 1, batch: 1 },
    Shape {
        tasks: 64,
        batch: 1,
    },
    Shape {
        tasks: 1,
        batch: BATCH,
    },
];

/// The table's names of the variants, in interleaving order.
fn variant_names() -> Vec<String> {
    let mut names = vec!["raw UDP sendmmsg/recvmmsg x64".to_owned()];
    for protection in ["plain", "sealed"] {
        for shape in SHAPES {
            let driven = match shape {
                Shape { tasks: 1, batch: 1 } => "1 sender task".to_owned(),
                Shape { tasks, batch: 1 } => format!("{tasks} sender tasks"),
                Shape { tasks, batch } => {
                    format!("{tasks} task, send_batch/next_events x{batch}")
                }
            };
            names.push(format!("shutter Endpoint, {driven}, {protection}"));
        }
    }
    names
}

/// Runs `rounds` interleaved rounds and tabulates medians.
pub async fn run(opts: &Opts) -> Result<Section> {
    let variants = variant_names();
    let mut all: Vec<Vec<Measure>> = vec![Vec::new(); variants.len()];
    // What `shutter node` runs with: every datagram sealed (AES-256-GCM).
    let sealed = Auth::Keys(KeyRing::random()?);
    for _ in 0..opts.rounds.max(1) {
        let (m, l) = (opts.messages, opts.limit);
        all[0].push(tokio::task::spawn_blocking(move || raw_once(m, l)).await??);
        for (k, auth) in [&Auth::Insecure, &sealed].into_iter().enumerate() {
            for (i, &shape) in SHAPES.iter().enumerate() {
                all[1 + k * SHAPES.len() + i].push(endpoint_once(shape, auth, m, l).await?);
            }
        }
    }
    let mut s = Section::new(
        "rate",
        format!(
            "{SIZE} B messages over loopback, {} msgs per measurement, median of {} interleaved rounds",
            opts.messages,
            opts.rounds.max(1)
        ),
        &[
            "variant",
            "msgs/s (median)",
            "min",
            "max",
            "x raw",
            "CPU us/msg",
            "delivered %",
        ],
    );
    let rates: Vec<Vec<f64>> = all
        .iter()
        .map(|ms| ms.iter().map(Measure::rate).collect())
        .collect();
    let raw = median(&rates[0]);
    let mut best_ratio = f64::NAN;
    for (i, name) in variants.iter().enumerate() {
        let r = &rates[i];
        let ratio = median(r) / raw;
        if i > 0 {
            best_ratio = if best_ratio.is_nan() {
                ratio
            } else {
                best_ratio.max(ratio)
            };
        }
        let cpu: Vec<f64> = all[i].iter().map(Measure::cpu_us_per_msg).collect();
        let delivered: Vec<f64> = all[i]
            .iter()
            .map(|m| 100.0 * m.received as f64 / m.sent.max(1) as f64)
            .collect();
        s.row(vec![
            text(name.clone()),
            num(median(r).round()),
            num(r.iter().copied().fold(f64::INFINITY, f64::min).round()),
            num(r.iter().copied().fold(0.0, f64::max).round()),
            num(ratio),
            num(median(&cpu)),
            num(median(&delivered)),
        ]);
    }
    s.targets.push(Target::new(
        "message rate >= 1.0x raw UDP batch 64 (best shutter variant)",
        Some(best_ratio),
        Goal::AtLeast,
        1.0,
        "x",
    ));
    // Encryption's cost: sealed over plain with the same sender tasks, round by round
    // (each round runs both back to back, so drift between rounds cancels).
    let sealed_over_plain: Vec<f64> = (1..=SHAPES.len())
        .map(|p| (p, p + SHAPES.len()))
        .flat_map(|(p, k)| {
            rates[k]
                .iter()
                .zip(&rates[p])
                .map(|(k, p)| k / p.max(1e-9))
                .collect::<Vec<_>>()
        })
        .collect();
    s.targets.push(Target::new(
        "sealed rate / plain rate >= 0.9 (at most 10% lost to encryption; median of paired rounds)",
        Some(median(&sealed_over_plain)),
        Goal::AtLeast,
        0.9,
        "x",
    ));
    s.notes.push("raw UDP counts datagrams received (the rest were dropped by the kernel); shutter counts messages delivered exactly once".into());
    Ok(s)
}
