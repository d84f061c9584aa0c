//! Per-peer outgoing queues, each drained by a forwarding task that waits on the
//! transport's flow control so the node task never does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use shutter_transport::driver::{DriverError, EndpointSender};
use shutter_vclock::NodeId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One unbounded queue and forwarding task per destination, created on first use.
///
/// Unbounded because the node task must never block on it; the transport's window stalls
/// only the forwarder. Memory grows only while a peer is unreachable, and the snapshot
/// engine aborts what waits for such a peer.
#[derive(Debug)]
pub(crate) struct Outbox {
    sender: EndpointSender,
    queues: BTreeMap<NodeId, mpsc::UnboundedSender<(Vec<u8>, bool)>>,
    tasks: Vec<JoinHandle<()>>,
    errors: Arc<AtomicU64>,
}

impl Outbox {
    pub(crate) fn new(sender: EndpointSender) -> Self {
        Self {
            sender,
            queues: BTreeMap::new(),
            tasks: Vec::new(),
            errors: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues `bytes` for `to`, after everything queued for `to` before; `urgent` sends
    /// them with `send_urgent` (every datagram twice: for snapshot control messages).
    pub(crate) fn push(&mut self, to: NodeId, bytes: Vec<u8>, urgent: bool) {
        let queue = self.queues.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            self.tasks.push(tokio::spawn(forward(
                self.sender.clone(),
                to,
                rx,
                self.errors.clone(),
            )));
            tx
        });
        if queue.send((bytes, urgent)).is_err() {
            // The forwarder ended because the endpoint closed.
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Messages that could not be handed to the transport.
    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Stops every forwarder; queued messages are dropped.
    pub(crate) fn stop(&mut self) {
        self.queues.clear();
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends queued messages to `to` one at a time, so the transport assigns ids (and, in
/// ordered mode, delivers) in queue order.
async fn forward(
    sender: EndpointSender,
    to: NodeId,
    mut queue: mpsc::UnboundedReceiver<(Vec<u8>, bool)>,
    errors: Arc<AtomicU64>,
) {
    while let Some((bytes, urgent)) = queue.recv().await {
        let sent = if urgent {
            sender.send_urgent(to, bytes).await
        } else {
            sender.send(to, bytes).await
        };
        match sent {
            Ok(_) => {}
            Err(DriverError::Closed) => return,
            Err(e) => {
                errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %to, error = %e, "transport refused an envelope");
            }
        }
    }
}
