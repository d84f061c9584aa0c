//! The admin channel of `shutter node`: a tiny line protocol over TCP, one request per
//! connection.
//!
//! | request line | reply |
//! |---|---|
//! | `SNAPSHOT <timeout_ms>` | `SNAPSHOT <len>\n` then `len` bytes of a snapshot file ([`shutter_snapshot::persist::encode`]), or `ABORTED <reason>\n`, or `ERROR <message>\n` |
//! | `STATUS` | `STATUS <json>\n` (node id, balance, counters) or `ERROR <message>\n` |
//!
//! `SNAPSHOT` makes the node initiate a snapshot and answers once the snapshot completes
//! or aborts (or the timeout passes). The node's address for this is the peers file's
//! `admin` entry, by default loopback with the port of its UDP `addr`.
//!
//! # Authentication
//!
//! The node opens every connection with a greeting, `SHUTTER-ADMIN 1 <nonce>` (32 hex
//! digits, fresh per connection) or `SHUTTER-ADMIN 1 open` for a node run with
//! `--insecure`. Before its request line the client sends `AUTH <key id> <mac>`, the mac
//! being HMAC-SHA256 under a key derived from the cluster key (label `shutter admin v1`)
//! over the nonce and the request line: so only holders of the cluster key are served,
//! a captured exchange cannot be replayed (the nonce changes) and the request cannot be
//! altered. A refused client gets `ERROR authentication failed` and nothing else; the
//! node counts it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use ring::hmac;
use shutter_snapshot::wire::SnapshotId;
use shutter_transport::auth::{Auth, KeyRing, random_bytes};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Longest request line accepted.
pub const MAX_REQUEST: u64 = 1024;
/// Longest reply header line accepted.
const MAX_REPLY_LINE: u64 = 1 << 20;
/// Largest snapshot accepted by the client.
pub const MAX_SNAPSHOT: u64 = 1 << 30;
/// Time a client has to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a `ROLLBACK` request waits for the cluster to run again.
const ROLLBACK_WAIT: Duration = Duration::from_secs(60);
/// Longest a `SNAPSHOT` request may ask to wait.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// First word of the node's greeting.
const GREETING: &str = "SHUTTER-ADMIN 1";
/// HKDF label of the admin key.
const ADMIN_LABEL: &[u8] = b"shutter admin v1";

/// The admin key of `key_id` and the message a MAC covers, or `None` if the ring has no
/// such key.
fn mac_input(
    keys: &KeyRing,
    key_id: u8,
    nonce: &str,
    request_line: &str,
) -> Option<(hmac::Key, Vec<u8>)> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &keys.derive(key_id, ADMIN_LABEL)?);
    Some((key, format!("{nonce}\n{request_line}").into_bytes()))
}

/// `HMAC-SHA256(admin key of key_id, nonce "\n" request line)`.
fn mac(keys: &KeyRing, key_id: u8, nonce: &str, request_line: &str) -> Option<Vec<u8>> {
    let (key, msg) = mac_input(keys, key_id, nonce, request_line)?;
    Some(hmac::sign(&key, &msg).as_ref().to_vec())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// An `AUTH <key id> <mac>` line, parsed; `None` if it is not one (the MAC is at most
/// 64 bytes of hex). Public so the fuzz targets can reach it.
pub fn parse_auth_line(line: &str) -> Option<(u8, Vec<u8>)> {
    let mut w = line.split_whitespace();
    let (Some("AUTH"), Some(id), Some(tag), None) = (w.next(), w.next(), w.next(), w.next()) else {
        return None;
    };
    Some((id.parse::<u8>().ok()?, unhex(tag)?))
}

/// The `AUTH <id> <mac>` line (with its newline) a client sends before `request_line`
/// to a node that greeted it with `nonce`, under the ring's send key.
pub fn auth_line(ring: &KeyRing, nonce: &str, request_line: &str) -> String {
    let id = ring.send_id();
    let m = mac(ring, id, nonce, request_line).expect("the send key is in the ring");
    format!("AUTH {id} {}\n", hex(&m))
}

/// Checks an `AUTH <id> <mac>` line for `request_line` under `nonce`. Public so the fuzz
/// targets can reach it.
pub fn authentic(ring: &KeyRing, nonce: &str, auth_line: &str, request_line: &str) -> bool {
    let Some((id, tag)) = parse_auth_line(auth_line) else {
        return false;
    };
    // Constant-time comparison.
    mac_input(ring, id, nonce, request_line)
        .is_some_and(|(key, msg)| hmac::verify(&key, &msg, &tag).is_ok())
}

/// The nonce of a node's greeting line (`open` for an insecure node), `None` if the line
/// is not a shutter admin greeting.
pub fn parse_greeting(line: &str) -> Option<&str> {
    line.trim_end().strip_prefix(GREETING).map(str::trim)
}

/// A request to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Initiate a snapshot and return it; give up after `timeout`.
    Snapshot {
        /// How long to wait for completion.
        timeout: Duration,
    },
    /// Report the node's status.
    Status,
    /// Roll the cluster back, coordinated by this node (to `to`, or the newest
    /// snapshot every node holds), and answer once it runs again.
    Rollback {
        /// The snapshot, if the operator named one.
        to: Option<SnapshotId>,
    },
    /// Add a member started to join (at `addr`), coordinated by this node, and answer
    /// once the cluster runs with it.
    Add {
        /// The new member.
        node: shutter_vclock::NodeId,
        /// Its UDP address.
        addr: SocketAddr,
    },
    /// Remove a member that is dead for good, coordinated by this node, and answer once
    /// the cluster runs without it.
    Remove {
        /// The member.
        node: shutter_vclock::NodeId,
    },
}

/// Parses `nK` as the logs print node ids.
fn parse_node(text: &str) -> Result<shutter_vclock::NodeId, String> {
    let bad = || format!("bad node {text:?} (expected nK, e.g. n3)");
    let k: u32 = text
        .strip_prefix('n')
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    Ok(shutter_vclock::NodeId(k))
}

/// Parses `nK@S` as `shutter snapshot` and the logs print snapshot ids.
pub fn parse_snapshot_id(text: &str) -> Result<SnapshotId, String> {
    let bad = || format!("bad snapshot id {text:?} (expected nK@S, e.g. n0@1234)");
    let (k, s) = text.split_once('@').ok_or_else(bad)?;
    let k: u32 = k
        .strip_prefix('n')
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    let s: u64 = s.parse().map_err(|_| bad())?;
    Ok(SnapshotId {
        initiator: shutter_vclock::NodeId(k),
        s,
    })
}

impl Request {
    /// Parses a request line (without the newline).
    pub fn parse(line: &str) -> Result<Request, String> {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("STATUS"), None, _) => Ok(Request::Status),
            (Some("ROLLBACK"), None, _) => Ok(Request::Rollback { to: None }),
            (Some("REMOVE"), Some(n), None) => Ok(Request::Remove {
                node: parse_node(n)?,
            }),
            (Some("ADD"), Some(n), Some(addr)) if words.next().is_none() => Ok(Request::Add {
                node: parse_node(n)?,
                addr: addr
                    .parse()
                    .map_err(|_| format!("bad address {addr:?} (expected IP:PORT)"))?,
            }),
            (Some("ROLLBACK"), Some(id), None) => Ok(Request::Rollback {
                to: Some(parse_snapshot_id(id)?),
            }),
            (Some("SNAPSHOT"), Some(ms), None) => {
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("bad timeout {ms:?} (milliseconds)"))?;
                Ok(Request::Snapshot {
                    timeout: Duration::from_millis(ms).min(MAX_WAIT),
                })
            }
            _ => Err(format!(
                "unknown request {line:?} (expected SNAPSHOT <ms>, STATUS, ROLLBACK [nK@S], REMOVE nK or ADD nK IP:PORT)"
            )),
        }
    }

    /// The request line, newline included.
    pub fn to_line(&self) -> String {
        match self {
            Request::Snapshot { timeout } => format!("SNAPSHOT {}\n", timeout.as_millis()),
            Request::Status => "STATUS\n".to_string(),
            Request::Rollback { to: None } => "ROLLBACK\n".to_string(),
            Request::Rollback { to: Some(id) } => format!("ROLLBACK {id}\n"),
            Request::Remove { node } => format!("REMOVE {node}\n"),
            Request::Add { node, addr } => format!("ADD {node} {addr}\n"),
        }
    }
}

/// A node's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Snapshot file bytes.
    Snapshot(Vec<u8>),
    /// The snapshot was aborted; why.
    Aborted(String),
    /// Status as one JSON object.
    Status(String),
    /// The cluster rolled back to this snapshot and runs again.
    RolledBack(String),
    /// The request failed.
    Error(String),
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

impl Reply {
    async fn write(&self, out: &mut (impl AsyncWriteExt + Unpin)) -> std::io::Result<()> {
        match self {
            Reply::Snapshot(bytes) => {
                out.write_all(format!("SNAPSHOT {}\n", bytes.len()).as_bytes())
                    .await?;
                out.write_all(bytes).await?;
            }
            Reply::Aborted(why) => {
                out.write_all(format!("ABORTED {}\n", one_line(why)).as_bytes())
                    .await?
            }
            Reply::Status(json) => {
                out.write_all(format!("STATUS {}\n", one_line(json)).as_bytes())
                    .await?
            }
            Reply::Error(e) => {
                out.write_all(format!("ERROR {}\n", one_line(e)).as_bytes())
                    .await?
            }
            Reply::RolledBack(id) => {
                out.write_all(format!("ROLLEDBACK {}\n", one_line(id)).as_bytes())
                    .await?
            }
        }
        out.flush().await
    }

    async fn read(stream: TcpStream) -> Result<Reply> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        (&mut reader)
            .take(MAX_REPLY_LINE)
            .read_line(&mut line)
            .await?;
        Ok(match ReplyHeader::parse(&line)? {
            ReplyHeader::Snapshot(len) => {
                // Grow with what arrives: replies are not authenticated, so an announced
                // length must not make the client allocate before any byte is there.
                let mut bytes = Vec::with_capacity(len.min(1 << 20) as usize);
                (&mut reader).take(len).read_to_end(&mut bytes).await?;
                if bytes.len() as u64 != len {
                    bail!("the node closed the connection in the middle of the snapshot");
                }
                Reply::Snapshot(bytes)
            }
            ReplyHeader::Aborted(why) => Reply::Aborted(why),
            ReplyHeader::Status(json) => Reply::Status(json),
            ReplyHeader::Error(e) => Reply::Error(e),
            ReplyHeader::RolledBack(id) => Reply::RolledBack(id),
        })
    }
}

/// The first line of a node's reply: a whole reply, or for a snapshot the length of the
/// bytes that follow (at most 1 GiB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyHeader {
    /// `SNAPSHOT <len>`: that many bytes of a snapshot file follow.
    Snapshot(u64),
    /// `ABORTED <reason>`.
    Aborted(String),
    /// `STATUS <json>`.
    Status(String),
    /// `ERROR <message>`.
    Error(String),
    /// `ROLLEDBACK <snapshot>`.
    RolledBack(String),
}

impl ReplyHeader {
    /// Parses a reply's first line (with or without its newline); an empty line means the
    /// node closed the connection without answering. Public so the fuzz targets can
    /// reach it.
    pub fn parse(line: &str) -> Result<ReplyHeader> {
        let line = line.trim_end_matches(['\n', '\r']);
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        Ok(match kind {
            "SNAPSHOT" => {
                let len: u64 = rest
                    .parse()
                    .with_context(|| format!("bad reply header {line:?}"))?;
                if len > MAX_SNAPSHOT {
                    bail!("snapshot of {len} bytes is larger than the {MAX_SNAPSHOT}-byte limit");
                }
                ReplyHeader::Snapshot(len)
            }
            "ABORTED" => ReplyHeader::Aborted(rest.to_string()),
            "STATUS" => ReplyHeader::Status(rest.to_string()),
            "ERROR" => ReplyHeader::Error(rest.to_string()),
            "ROLLEDBACK" => ReplyHeader::RolledBack(rest.to_string()),
            "" => bail!("the node closed the connection without answering"),
            _ => bail!("unexpected reply {line:?}"),
        })
    }
}

/// A request handed to the node's main loop, with the way back to the client.
#[derive(Debug)]
pub struct AdminRequest {
    /// What the client asked.
    pub request: Request,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Reply>,
}

/// Accepts connections forever (until the task is aborted), forwarding each request to
/// `to_node`. Connections are handled on their own tasks, each bounded in time. With
/// `Auth::Keys` every request must be authenticated; refusals are counted in `refused`.
pub async fn serve(
    listener: TcpListener,
    to_node: mpsc::Sender<AdminRequest>,
    auth: Auth,
    refused: Arc<AtomicU64>,
) {
    let auth = Arc::new(auth);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Transient accept errors (e.g. out of descriptors): back off briefly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        tokio::spawn(handle(
            stream,
            to_node.clone(),
            auth.clone(),
            refused.clone(),
        ));
    }
}

/// Reads one line of at most `MAX_REQUEST` bytes, within the request timeout.
async fn read_request_line(reader: &mut (impl AsyncBufReadExt + Unpin)) -> Result<String, Reply> {
    let mut line = String::new();
    match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => Err(Reply::Error("no request within 5 s".into())),
        Ok(Err(e)) => Err(Reply::Error(format!("bad request: {e}"))),
        Ok(Ok(_)) => Ok(line.trim_end().to_owned()),
    }
}

async fn handle(
    stream: TcpStream,
    to_node: mpsc::Sender<AdminRequest>,
    auth: Arc<Auth>,
    refused: Arc<AtomicU64>,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(2 * MAX_REQUEST);
    let nonce = match auth.as_ref() {
        Auth::Keys(_) => {
            let mut n = [0u8; 16];
            if random_bytes(&mut n).is_err() {
                return;
            }
            hex(&n)
        }
        Auth::Insecure => "open".to_owned(),
    };
    if write
        .write_all(format!("{GREETING} {nonce}\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let line = async {
        let first = read_request_line(&mut reader).await?;
        let Auth::Keys(ring) = auth.as_ref() else {
            return Ok(first);
        };
        let request = read_request_line(&mut reader).await?;
        if authentic(ring, &nonce, &first, &request) {
            Ok(request)
        } else {
            refused.fetch_add(1, Ordering::Relaxed);
            Err(Reply::Error("authentication failed".into()))
        }
    };
    let reply = match line.await {
        Err(reply) => reply,
        Ok(line) => match Request::parse(&line) {
            Err(e) => Reply::Error(e),
            Ok(request) => {
                let wait = match &request {
                    Request::Snapshot { timeout } => *timeout,
                    Request::Status => REQUEST_TIMEOUT,
                    Request::Rollback { .. } | Request::Remove { .. } | Request::Add { .. } => {
                        ROLLBACK_WAIT
                    }
                };
                let (tx, rx) = oneshot::channel();
                if to_node
                    .send(AdminRequest { request, reply: tx })
                    .await
                    .is_err()
                {
                    Reply::Error("the node is shutting down".into())
                } else {
                    match tokio::time::timeout(wait, rx).await {
                        Ok(Ok(reply)) => reply,
                        Ok(Err(_)) => Reply::Error("the node is shutting down".into()),
                        Err(_) => Reply::Error(format!("no outcome within {wait:?}")),
                    }
                }
            }
        },
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), reply.write(&mut write)).await;
}

/// Reads the node's greeting line and returns its nonce (`open` for an insecure node).
async fn read_greeting(stream: &mut TcpStream, addr: SocketAddr) -> Result<String> {
    let mut greeting = String::new();
    BufReader::new(stream)
        .take(MAX_REQUEST)
        .read_line(&mut greeting)
        .await?;
    parse_greeting(&greeting)
        .map(str::to_owned)
        .with_context(|| format!("{addr} is not a shutter admin channel: {greeting:?}"))
}

/// Sends `request` to the node at `addr`, authenticated with `auth`'s send key, and
/// waits at most `timeout` for the reply.
pub async fn request(
    addr: SocketAddr,
    request: &Request,
    timeout: Duration,
    auth: &Auth,
) -> Result<Reply> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to the admin channel at {addr}"))?;
        let nonce = read_greeting(&mut stream, addr).await?;
        let nonce = nonce.as_str();
        let line = request.to_line();
        let mut out = String::new();
        match (nonce, auth) {
            ("open", _) => {}
            (_, Auth::Insecure) => bail!(
                "{addr} requires authentication: give --key-file (or key_file in the peers file)"
            ),
            (nonce, Auth::Keys(ring)) => out = auth_line(ring, nonce, line.trim_end()),
        }
        out.push_str(&line);
        stream.write_all(out.as_bytes()).await?;
        stream.flush().await?;
        Reply::read(stream).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("no answer from {addr} within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_and_reply_lines_parse_or_are_refused() {
        assert_eq!(parse_auth_line("AUTH 7 00ff"), Some((7, vec![0x00, 0xff])));
        for bad in [
            "AUTH 7",
            "AUTH 7 00ff extra",
            "AUTH 256 00",
            "AUTH 1 0",
            "auth 1 00",
            "",
        ] {
            assert_eq!(parse_auth_line(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_auth_line(&format!("AUTH 1 {}", "ab".repeat(65))),
            None
        );
        assert_eq!(parse_greeting("SHUTTER-ADMIN 1 abc\n"), Some("abc"));
        assert_eq!(parse_greeting("SSH-2.0-OpenSSH\n"), None);
        assert_eq!(
            ReplyHeader::parse("SNAPSHOT 12\n").unwrap(),
            ReplyHeader::Snapshot(12)
        );
        assert_eq!(
            ReplyHeader::parse("ERROR no\r\n").unwrap(),
            ReplyHeader::Error("no".into())
        );
        let too_big = ReplyHeader::parse(&format!("SNAPSHOT {}", MAX_SNAPSHOT + 1));
        assert!(too_big.unwrap_err().to_string().contains("larger than"));
        assert!(ReplyHeader::parse("SNAPSHOT -1").is_err());
        assert!(ReplyHeader::parse("").is_err());
        assert!(ReplyHeader::parse("HELLO").is_err());
    }

    #[test]
    fn request_lines_round_trip() {
        for r in [
            Request::Status,
            Request::Snapshot {
                timeout: Duration::from_millis(1500),
            },
            Request::Rollback { to: None },
            Request::Remove {
                node: shutter_vclock::NodeId(7),
            },
            Request::Add {
                node: shutter_vclock::NodeId(4),
                addr: "127.0.0.1:7004".parse().unwrap(),
            },
            Request::Rollback {
                to: Some(SnapshotId {
                    initiator: shutter_vclock::NodeId(3),
                    s: 28_738_407_553_140_564,
                }),
            },
        ] {
            assert_eq!(Request::parse(r.to_line().trim_end()), Ok(r));
        }
        assert!(
            Request::parse("ROLLBACK 3@4")
                .unwrap_err()
                .contains("bad snapshot id")
        );
        assert!(
            Request::parse("HELLO")
                .unwrap_err()
                .contains("unknown request")
        );
        assert!(
            Request::parse("SNAPSHOT soon")
                .unwrap_err()
                .contains("bad timeout")
        );
    }

    /// A node loop answering `n` requests.
    fn node_loop(mut rx: mpsc::Receiver<AdminRequest>, n: usize) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            for _ in 0..n {
                let req: AdminRequest = rx.recv().await.unwrap();
                let reply = match req.request {
                    Request::Status => Reply::Status("{\"id\":0}".into()),
                    Request::Snapshot { .. } => Reply::Snapshot(vec![1, 2, 3, b'\n', 5]),
                    Request::Rollback { to } => {
                        Reply::RolledBack(to.map_or("n1@5".into(), |id| id.to_string()))
                    }
                    Request::Remove { .. } | Request::Add { .. } => {
                        Reply::RolledBack("n1@5".into())
                    }
                };
                req.reply.send(reply).unwrap();
            }
        })
    }

    #[tokio::test]
    async fn serves_authenticated_requests_through_the_node_loop() {
        let ring = KeyRing::single(3, [9; 32]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(4);
        let refused = Arc::new(AtomicU64::new(0));
        let server = tokio::spawn(serve(
            listener,
            tx,
            Auth::Keys(ring.clone()),
            refused.clone(),
        ));
        let node = node_loop(rx, 2);
        let t = Duration::from_secs(5);
        let auth = Auth::Keys(ring);
        let r = request(addr, &Request::Status, t, &auth).await.unwrap();
        assert_eq!(r, Reply::Status("{\"id\":0}".into()));
        let r = request(addr, &Request::Snapshot { timeout: t }, t, &auth)
            .await
            .unwrap();
        assert_eq!(r, Reply::Snapshot(vec![1, 2, 3, b'\n', 5]));
        node.await.unwrap();

        // Without the key, with another key, or replaying a captured AUTH line under a new
        // nonce: refused, nothing revealed, counted.
        let e = request(addr, &Request::Status, t, &Auth::Insecure)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("requires authentication"), "{e:#}");
        let other = Auth::Keys(KeyRing::single(3, [8; 32]));
        let r = request(addr, &Request::Status, t, &other).await.unwrap();
        assert_eq!(r, Reply::Error("authentication failed".into()));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let nonce = read_greeting(&mut stream, addr).await.unwrap();
        let m = mac(&KeyRing::single(3, [9; 32]), 3, "another nonce", "STATUS").unwrap();
        let forged = format!("AUTH 3 {}\nSTATUS\n", hex(&m));
        assert_ne!(nonce, "another nonce");
        stream.write_all(forged.as_bytes()).await.unwrap();
        let r = Reply::read(stream).await.unwrap();
        assert_eq!(r, Reply::Error("authentication failed".into()));
        // A request altered after signing is refused too.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let nonce = read_greeting(&mut stream, addr).await.unwrap();
        let m = mac(&KeyRing::single(3, [9; 32]), 3, &nonce, "STATUS").unwrap();
        let altered = format!("AUTH 3 {}\nSNAPSHOT 100\n", hex(&m));
        stream.write_all(altered.as_bytes()).await.unwrap();
        let r = Reply::read(stream).await.unwrap();
        assert_eq!(r, Reply::Error("authentication failed".into()));
        // The keyless client hung up after the greeting: also an unauthenticated attempt.
        assert_eq!(refused.load(Ordering::Relaxed), 4);
        server.abort();
    }

    #[tokio::test]
    async fn an_insecure_node_serves_anyone() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(4);
        let server = tokio::spawn(serve(listener, tx, Auth::Insecure, Arc::default()));
        let node = node_loop(rx, 1);
        let t = Duration::from_secs(5);
        let r = request(addr, &Request::Status, t, &Auth::Insecure)
            .await
            .unwrap();
        assert_eq!(r, Reply::Status("{\"id\":0}".into()));
        node.await.unwrap();
        server.abort();
    }
}
