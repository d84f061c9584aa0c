//! Raw-socket tools for attacking a cluster on the local host: a sniffer that sees every
//! UDP datagram the host delivers (loopback included) and a sender that forges the IPv4
//! source address, so a test can capture real traffic between two nodes and inject
//! datagrams that look as if they came from one of them.
//!
//! Both use raw IPv4 sockets through socket2's safe API (the workspace forbids `unsafe`)
//! and need root (`CAP_NET_RAW`): opening one otherwise fails with `EPERM`, which
//! [`is_permission_denied`] recognises so that the test can print a visible `SKIPPED`.
//!
//! [`udp_socket_queue`] reads a UDP socket's receive queue and kernel drop count from
//! `/proc/net/udp`, so an injecting test can pace itself and tell a kernel drop (its own
//! flood overflowing the victim's buffer) from a drop by the protocol.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// IP protocol number of UDP.
const IPPROTO_UDP: u8 = 17;
/// `IPPROTO_RAW`: a raw socket that sends complete IP packets (implies `IP_HDRINCL`) and
/// receives nothing.
const IPPROTO_RAW: i32 = 255;
/// Length of an IPv4 header without options.
const IPV4_HEADER_LEN: usize = 20;
/// Length of a UDP header.
const UDP_HEADER_LEN: usize = 8;
/// Largest IPv4 packet.
const MAX_PACKET: usize = 65_535;

/// True if `e` says the process lacks the privilege for raw sockets (`EPERM`/`EACCES`).
pub fn is_permission_denied(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(1)
}

/// One UDP datagram seen on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// Parses an IPv4 packet carrying a whole (unfragmented) UDP datagram; `None` for
/// anything else (other protocols, fragments, truncated or inconsistent lengths).
pub fn parse_ipv4_udp(packet: &[u8]) -> Option<Captured> {
    let first = *packet.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < IPV4_HEADER_LEN || packet.len() < ihl + UDP_HEADER_LEN {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    // Linux hands raw sockets the packet as received; trust the shorter of the two.
    let total = total.min(packet.len());
    let fragment = u16::from_be_bytes([packet[6], packet[7]]);
    // More-fragments flag or a nonzero offset: not a whole datagram.
    if fragment & 0x3fff != 0 || packet[9] != IPPROTO_UDP || total < ihl + UDP_HEADER_LEN {
        return None;
    }
    let src_ip = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst_ip = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let udp = &packet[ihl..total];
    let src_port = u16::from_be_bytes([udp[0], udp[1]]);
    let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len < UDP_HEADER_LEN || udp_len > udp.len() {
        return None;
    }
    Some(Captured {
        src: SocketAddr::V4(SocketAddrV4::new(src_ip, src_port)),
        dst: SocketAddr::V4(SocketAddrV4::new(dst_ip, dst_port)),
        payload: udp[UDP_HEADER_LEN..udp_len].to_vec(),
    })
}

/// A raw IPv4 socket for protocol UDP: receives a copy of every UDP datagram the host
/// delivers locally, loopback included, IP header and all.
#[derive(Debug)]
pub struct Sniffer {
    socket: Socket,
}

impl Sniffer {
    /// Opens the socket (needs `CAP_NET_RAW`).
    pub fn open() -> io::Result<Sniffer> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))?;
        // Best effort: a larger buffer loses fewer copies while the caller is busy.
        let _ = socket.set_recv_buffer_size(4 << 20);
        Ok(Sniffer { socket })
    }

    /// Reads datagrams for at most `limit` and returns the first `max` (at most) that
    /// `keep` accepts, in arrival order.
    pub fn capture(
        &self,
        keep: impl Fn(&Captured) -> bool,
        max: usize,
        limit: Duration,
    ) -> io::Result<Vec<Captured>> {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; MAX_PACKET];
        let mut out = Vec::new();
        while out.len() < max {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // At most 100 ms per read so the deadline holds even on a silent host.
            self.socket
                .set_read_timeout(Some(left.min(Duration::from_millis(100))))?;
            match (&self.socket).read(&mut buf) {
                Ok(n) => {
                    if let Some(c) = parse_ipv4_udp(&buf[..n])
                        && keep(&c)
                    {
                        out.push(c);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The datagrams from `src` to `dst` (exact addresses and ports), at most `max`
    /// within `limit`.
    pub fn capture_between(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        max: usize,
        limit: Duration,
    ) -> io::Result<Vec<Captured>> {
        self.capture(|c| c.src == src && c.dst == dst, max, limit)
    }
}

/// The IPv4 header checksum (RFC 791): one's complement of the one's-complement sum of
/// 16-bit words.
fn ones_complement_sum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for bytes in chunks {
        let mut words = bytes.chunks(2);
        for w in &mut words {
            let hi = u32::from(w[0]) << 8;
            let lo = w.get(1).copied().map_or(0, u32::from);
            sum += hi | lo;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    !(sum as u16)
}

/// An IPv4 packet (version 4, IHL 5, TTL 64, protocol UDP, don't fragment) carrying
/// one UDP datagram `src -> dst` with `payload`; lengths and both checksums filled in.
/// Panics if the payload does not fit in one IPv4 packet.
pub fn build_ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = UDP_HEADER_LEN + payload.len();
    let total = IPV4_HEADER_LEN + udp_len;
    assert!(total <= MAX_PACKET, "payload of {} bytes", payload.len());
    let mut p = Vec::with_capacity(total);
    p.push(0x45); // version 4, IHL 5
    p.push(0); // DSCP/ECN
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes()); // identification: Linux fills it in
    p.extend_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
    p.push(64); // TTL
    p.push(IPPROTO_UDP);
    p.extend_from_slice(&[0, 0]); // header checksum, below
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    let ip_sum = ones_complement_sum(&[&p[..IPV4_HEADER_LEN]]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    // RFC 768 pseudo header: addresses, zero, protocol, UDP length.
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.ip().octets());
    pseudo.extend_from_slice(&dst.ip().octets());
    pseudo.extend_from_slice(&[0, IPPROTO_UDP]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    // An odd-length chunk is padded with a zero byte; the pseudo header is even, so
    // summing the two chunks separately is the same as summing their concatenation.
    let udp_sum = match ones_complement_sum(&[&pseudo, &udp]) {
        0 => 0xffff, // 0 means "no checksum"
        s => s,
    };
    udp[6..8].copy_from_slice(&udp_sum.to_be_bytes());
    p.extend_from_slice(&udp);
    p
}

/// A raw `IPPROTO_RAW` socket: sends IPv4 packets built by the caller, so the source
/// address and port are whatever the caller writes.
#[derive(Debug)]
pub struct Spoofer {
    socket: Socket,
}

impl Spoofer {
    /// Opens the socket (needs `CAP_NET_RAW`).
    pub fn open() -> io::Result<Spoofer> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW)))?;
        // IPPROTO_RAW implies it; set it anyway so the intent is explicit.
        socket.set_header_included_v4(true)?;
        Ok(Spoofer { socket })
    }

    /// Sends one UDP datagram with `payload` that claims to come from `src`. Both
    /// addresses must be IPv4.
    pub fn send(&self, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> io::Result<()> {
        let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (src, dst) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the spoofer speaks IPv4 only",
            ));
        };
        let packet = build_ipv4_udp(src, dst, payload);
        // The port of a raw socket's destination is ignored; the IP header says it all.
        let to = SockAddr::from(SocketAddrV4::new(*dst.ip(), 0));
        let sent = self.socket.send_to(&packet, &to)?;
        if sent != packet.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes",
                packet.len()
            )));
        }
        Ok(())
    }
}

/// The state of the local UDP socket bound to `addr`, from `/proc/net/udp`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpQueue {
    /// Bytes waiting in its receive queue.
    pub rx_queue: u64,
    /// Datagrams the kernel dropped for it (receive buffer full, and the like).
    pub drops: u64,
}

/// The receive queue and drop count of the UDP socket bound to `addr` (IPv4) in this
/// network namespace; `None` if there is no such socket or `/proc` is unreadable.
pub fn udp_socket_queue(addr: SocketAddr) -> Option<UdpQueue> {
    let SocketAddr::V4(addr) = addr else {
        return None;
    };
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    table.lines().skip(1).find_map(|line| {
        // sl local rem st tx_queue:rx_queue tr:tm retrnsmt uid timeout inode ref ptr drops
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (ip, port) = fields.get(1)?.split_once(':')?;
        // The kernel prints the network-order address as a native integer.
        let ip = u32::from_str_radix(ip, 16).ok()?;
        let ip = Ipv4Addr::from(ip.to_ne_bytes());
        let port = u16::from_str_radix(port, 16).ok()?;
        if ip != *addr.ip() || port != addr.port() {
            return None;
        }
        let (_, rx) = fields.get(4)?.split_once(':')?;
        Some(UdpQueue {
            rx_queue: u64::from_str_radix(rx, 16).ok()?,
            drops: fields.last()?.parse().ok()?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_packets_parse_back_with_valid_checksums() {
        let src = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4000);
        let dst = SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 5001);
        for payload in [&b""[..], b"x", b"odd length!", &[0xffu8; 1200]] {
            let p = build_ipv4_udp(src, dst, payload);
            assert_eq!(p.len(), 28 + payload.len());
            // A header with its checksum in place sums to zero.
            assert_eq!(ones_complement_sum(&[&p[..20]]), 0);
            let c = parse_ipv4_udp(&p).expect("parses");
            assert_eq!(c.src, SocketAddr::V4(src));
            assert_eq!(c.dst, SocketAddr::V4(dst));
            assert_eq!(c.payload, payload);
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&src.ip().octets());
            pseudo.extend_from_slice(&dst.ip().octets());
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            assert_eq!(ones_complement_sum(&[&pseudo, &p[20..]]), 0);
        }
        // Not UDP, a fragment, or cut short: ignored.
        let mut p = build_ipv4_udp(src, dst, b"data");
        p[9] = 6;
        assert_eq!(parse_ipv4_udp(&p), None);
        let mut p = build_ipv4_udp(src, dst, b"data");
        p[6] |= 0x20;
        assert_eq!(parse_ipv4_udp(&p), None);
        let p = build_ipv4_udp(src, dst, b"data");
        assert_eq!(parse_ipv4_udp(&p[..25]), None);
    }
}
