//! Peers named by DNS (`addr = "shutter-1.shutter:7000"`): resolved when the peers file is
//! read, and again while the node runs, because a container or a Kubernetes pod that is
//! rescheduled comes back under the same name with a new IP.
//!
//! A named peer is looked up every [`RECHECK`] and at once when a snapshot aborts because
//! the peer stopped answering. Its address changes only when the one in use is no longer
//! among the name's addresses (a name with several addresses in rotating order must not
//! make the node hop between them); a failed lookup keeps the old address (DNS being
//! briefly unavailable is no reason to stop talking to a peer that may still be there).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shutter_vclock::NodeId;
use tokio::sync::{Notify, mpsc};

/// How often named peers are looked up again.
pub const RECHECK: Duration = Duration::from_secs(10);

/// The address to move to, if any: `None` while `current` is still one of `resolved`
/// (or nothing resolved); else the first IPv4 address, else the first one (the choice
/// the peers file made at start).
pub fn moved(current: SocketAddr, resolved: &[SocketAddr]) -> Option<SocketAddr> {
    if resolved.is_empty() || resolved.contains(&current) {
        return None;
    }
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or(resolved.first())
        .copied()
}

/// The system resolver (`getaddrinfo` on a blocking thread, through tokio).
pub async fn system_lookup(host_port: String) -> Vec<SocketAddr> {
    match tokio::net::lookup_host(host_port.as_str()).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            tracing::debug!("cannot resolve {host_port}: {e}");
            Vec::new()
        }
    }
}

/// Watches `names` (peer -> `HOST:PORT`), starting from the addresses in `current`, and
/// sends `(peer, new address)` on `moves` whenever one moved. Looks up every `every`
/// and whenever `now` is notified; returns when `moves` is closed.
pub async fn watch<L, F>(
    names: BTreeMap<NodeId, String>,
    mut current: BTreeMap<NodeId, SocketAddr>,
    every: Duration,
    now: Arc<Notify>,
    lookup: L,
    moves: mpsc::Sender<(NodeId, SocketAddr)>,
) where
    L: Fn(String) -> F,
    F: Future<Output = Vec<SocketAddr>>,
{
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate: the file was just resolved
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = now.notified() => {}
            _ = moves.closed() => return,
        }
        for (peer, name) in &names {
            let Some(&at) = current.get(peer) else {
                continue;
            };
            let resolved = lookup(name.clone()).await;
            if let Some(to) = moved(at, &resolved) {
                if moves.send((*peer, to)).await.is_err() {
                    return;
                }
                current.insert(*peer, to);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn moves_only_when_the_address_in_use_is_gone() {
        let cur = a("10.0.0.1:7000");
        assert_eq!(moved(cur, &[]), None, "a failed lookup keeps the address");
        assert_eq!(moved(cur, &[a("10.0.0.2:7000"), cur]), None, "still listed");
        assert_eq!(
            moved(cur, &[a("[fd00::2]:7000"), a("10.0.0.9:7000")]),
            Some(a("10.0.0.9:7000")),
            "IPv4 first, as at start"
        );
        assert_eq!(
            moved(cur, &[a("[fd00::2]:7000")]),
            Some(a("[fd00::2]:7000"))
        );
    }

    /// A pod rescheduled under its name: the watcher reports the new address once, when
    /// asked to look now, and not again while the name keeps resolving there.
    #[tokio::test(start_paused = true)]
    async fn a_rescheduled_peer_is_followed() {
        let answers = Arc::new(Mutex::new(vec![a("10.0.0.1:7000")]));
        let lookups = Arc::new(Mutex::new(0u32));
        let (tx, mut rx) = mpsc::channel(4);
        let now = Arc::new(Notify::new());
        let names = BTreeMap::from([(NodeId(1), "shutter-1.shutter:7000".to_string())]);
        let current = BTreeMap::from([(NodeId(1), a("10.0.0.1:7000"))]);
        let (answers2, lookups2) = (answers.clone(), lookups.clone());
        let task = tokio::spawn(watch(
            names,
            current,
            Duration::from_secs(10),
            now.clone(),
            move |name: String| {
                assert_eq!(name, "shutter-1.shutter:7000");
                *lookups2.lock().unwrap() += 1;
                let r = answers2.lock().unwrap().clone();
                async move { r }
            },
            tx,
        ));
        // Unchanged name: a periodic lookup, no move.
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(*lookups.lock().unwrap(), 1);
        assert!(rx.try_recv().is_err());
        // The pod came back elsewhere; a snapshot aborted because it stopped answering.
        *answers.lock().unwrap() = vec![a("10.0.0.7:7000")];
        now.notify_one();
        let moved_to = tokio::time::timeout(Duration::from_secs(1), rx.recv())
            .await
            .expect("a move within a second")
            .expect("the watcher runs");
        assert_eq!(moved_to, (NodeId(1), a("10.0.0.7:7000")));
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(rx.try_recv().is_err(), "no second move to the same address");
        drop(rx);
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the watcher stops when nobody listens")
            .unwrap();
    }
}
