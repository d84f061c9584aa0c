//! Loopback ports for tests that start nodes on fixed ports (processes, or nodes whose
//! peers must know the port before it is bound). Shared by this crate and, through a
//! `#[path]` module, by the CLI's tests (which cannot depend on this crate: it depends
//! on the CLI).

use std::net::{TcpListener, UdpSocket};

/// A loopback port free for both UDP and TCP right now, below the kernel's ephemeral
/// range. A port the kernel hands out for a bind to port 0 (another test's socket, a
/// `shutter demo`'s nodes) is never one of these, so the port stays free until the
/// caller binds it; callers in one process walk the range in turn, and each process
/// starts at its own place in it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 10_000;
    // `ip_local_port_range` is "low high"; ports from `low` on are ephemeral.
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&l| l > FIRST + 1000 && l <= 65_536)
        .unwrap_or(32_768);
    let span = low - FIRST;
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span.min(5000) {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (start + k) % span) as u16;
        if UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}
