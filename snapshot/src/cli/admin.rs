//! The admin channel of `shutter node`: a tiny line protocol over TCP, one request per
//! connection.
//!
//! | request line | reply |
//! |---|---|
//! | `SNAPSHOT <timeout_ms>` | `SNAPSHOT <len>\n` then `len` bytes of a snapshot file ([`crate::persist::encode`]), or `ABORTED <reason>\n`, or `ERROR <message>\n` |
//! | `STATUS` | `STATUS <json>\n` (node id, balance, counters) or `ERROR <message>\n` |
//!
//! `SNAPSHOT` makes the node initiate a snapshot and answers once the snapshot completes
//! or aborts (or the timeout passes). The node's address for this is the peers file's
//! `admin` entry, by default its UDP `addr` over TCP. Bind it to loopback or a trusted
//! network only: the channel has no authentication.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 1024;
/// Longest reply header line accepted.
const MAX_REPLY_LINE: u64 = 1 << 20;
/// Largest snapshot accepted by the client.
const MAX_SNAPSHOT: u64 = 1 << 30;
/// Time a client has to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a `SNAPSHOT` request may ask to wait.
const MAX_WAIT: Duration = Duration::from_secs(600);

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
}

impl Request {
    /// Parses a request line (without the newline).
    pub fn parse(line: &str) -> Result<Request, String> {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("STATUS"), None, _) => Ok(Request::Status),
            (Some("SNAPSHOT"), Some(ms), None) => {
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("bad timeout {ms:?} (milliseconds)"))?;
                Ok(Request::Snapshot {
                    timeout: Duration::from_millis(ms).min(MAX_WAIT),
                })
            }
            _ => Err(format!(
                "unknown request {line:?} (expected SNAPSHOT <ms> or STATUS)"
            )),
        }
    }

    /// The request line, newline included.
    pub fn to_line(&self) -> String {
        match self {
            Request::Snapshot { timeout } => format!("SNAPSHOT {}\n", timeout.as_millis()),
            Request::Status => "STATUS\n".to_string(),
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
                let mut bytes = vec![0u8; len as usize];
                reader
                    .read_exact(&mut bytes)
                    .await
                    .context("the node closed the connection in the middle of the snapshot")?;
                Reply::Snapshot(bytes)
            }
            "ABORTED" => Reply::Aborted(rest.to_string()),
            "STATUS" => Reply::Status(rest.to_string()),
            "ERROR" => Reply::Error(rest.to_string()),
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
/// `to_node`. Connections are handled on their own tasks, each bounded in time.
pub async fn serve(listener: TcpListener, to_node: mpsc::Sender<AdminRequest>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Transient accept errors (e.g. out of descriptors): back off briefly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        tokio::spawn(handle(stream, to_node.clone()));
    }
}

async fn handle(stream: TcpStream, to_node: mpsc::Sender<AdminRequest>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST);
    let read_line = reader.read_line(&mut line);
    let reply = match tokio::time::timeout(REQUEST_TIMEOUT, read_line).await {
        Err(_) => Reply::Error("no request within 5 s".into()),
        Ok(Err(e)) => Reply::Error(format!("bad request: {e}")),
        Ok(Ok(_)) => match Request::parse(line.trim_end()) {
            Err(e) => Reply::Error(e),
            Ok(request) => {
                let wait = match &request {
                    Request::Snapshot { timeout } => *timeout,
                    Request::Status => REQUEST_TIMEOUT,
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

/// Sends `request` to the node at `addr` and waits at most `timeout` for the reply.
pub async fn request(addr: SocketAddr, request: &Request, timeout: Duration) -> Result<Reply> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to the admin channel at {addr}"))?;
        stream.write_all(request.to_line().as_bytes()).await?;
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
    fn request_lines_round_trip() {
        for r in [
            Request::Status,
            Request::Snapshot {
                timeout: Duration::from_millis(1500),
            },
        ] {
            assert_eq!(Request::parse(r.to_line().trim_end()), Ok(r));
        }
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

    #[tokio::test]
    async fn serves_requests_through_the_node_loop() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let server = tokio::spawn(serve(listener, tx));
        let node = tokio::spawn(async move {
            for _ in 0..2 {
                let req: AdminRequest = rx.recv().await.unwrap();
                let reply = match req.request {
                    Request::Status => Reply::Status("{\"id\":0}".into()),
                    Request::Snapshot { .. } => Reply::Snapshot(vec![1, 2, 3, b'\n', 5]),
                };
                req.reply.send(reply).unwrap();
            }
        });
        let t = Duration::from_secs(5);
        let r = request(addr, &Request::Status, t).await.unwrap();
        assert_eq!(r, Reply::Status("{\"id\":0}".into()));
        let r = request(addr, &Request::Snapshot { timeout: t }, t)
            .await
            .unwrap();
        assert_eq!(r, Reply::Snapshot(vec![1, 2, 3, b'\n', 5]));
        node.await.unwrap();
        server.abort();
    }
}
