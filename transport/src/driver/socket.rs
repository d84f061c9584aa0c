//! Creating the endpoint's UDP socket with socket2 (buffer sizes and options tokio lacks).

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::DriverError;

/// Binds a nonblocking UDP socket on `addr` and hands it to tokio.
///
/// Buffer sizes are requests: Linux silently caps them at `net.core.rmem_max` /
/// `wmem_max`, so a smaller grant is logged, not an error. A receive buffer that is too
/// small shows up as loss, which the protocol recovers from anyway.
pub(crate) fn bind(
    addr: SocketAddr,
    recv_buffer: usize,
    send_buffer: usize,
) -> Result<UdpSocket, DriverError> {
    let bind_err = |source| DriverError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(bind_err)?;
    // No SO_REUSEADDR: UDP sockets do not linger after close (nothing like TIME_WAIT), so a
    // restarted node rebinds its port anyway, while with the option a second node
    // misconfigured onto the same port would silently share (and steal) its datagrams.
    if recv_buffer > 0
        && let Err(e) = socket.set_recv_buffer_size(recv_buffer)
    {
        tracing::warn!(%addr, recv_buffer, error = %e, "SO_RCVBUF request refused");
    }
    if send_buffer > 0
        && let Err(e) = socket.set_send_buffer_size(send_buffer)
    {
        tracing::warn!(%addr, send_buffer, error = %e, "SO_SNDBUF request refused");
    }
    if let Ok(granted) = socket.recv_buffer_size() {
        tracing::debug!(%addr, requested = recv_buffer, granted, "SO_RCVBUF");
    }
    socket.set_nonblocking(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    UdpSocket::from_std(socket.into()).map_err(bind_err)
}
