//! Authenticated encryption of datagrams: the cluster key ring, per-direction keys and the
//! replay window.
//!
//! Every datagram of a secured cluster is sealed with AES-256-GCM from `ring` (the crypto
//! of rustls and quinn; assembly using AES-NI and carry-less multiplication). Measured on
//! these machines, sealing one 1100-byte datagram: ring AES-256-GCM 0.73 us, ring
//! ChaCha20-Poly1305 2.14 us, RustCrypto `aes-gcm` 2.85 us, RustCrypto
//! `chacha20poly1305` 8.68 us; with the last, `pingpong` lost 40% of its message rate.
//! The key of one direction is derived with
//! HKDF-SHA256 from the cluster secret and `(sender, receiver, sender incarnation)`, so
//! each direction of each life of a node has its own key; the nonce is the packet number,
//! which a sender never reuses within a life towards one peer. Nonces therefore never
//! repeat under one key, and a restarted node (new incarnation) gets new keys. The
//! header travels in the clear (the receiver needs the packet number and the key id) but
//! is authenticated as associated data, so nothing in it can be changed either.
//!
//! A [`KeyRing`] holds every key a node accepts, by one-byte id, and the id it sends
//! with: to rotate, add the new key everywhere (accepted, not used), then switch `send`
//! node by node, then remove the old key. See [`KeyRing::parse`] for the key file.
//!
//! [`ReplayWindow`] is RFC 6479's sliding bitmap (2048 packet numbers, as WireGuard):
//! once authentication has proven a packet number genuine, a second datagram with the
//! same number, or one older than the window, is dropped.

use std::collections::HashMap;
use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Prk, Salt};
use ring::rand::{SecureRandom, SystemRandom};
use shutter_vclock::NodeId;
use thiserror::Error;

/// Length of a cluster secret.
pub const KEY_LEN: usize = 32;
/// Length of the Poly1305 tag at the end of a sealed datagram.
pub const TAG_LEN: usize = 16;

/// How a transport protects its datagrams.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// Plain datagrams, checked only by CRC32C: anyone who can send one UDP datagram can
    /// forge traffic. The sans-IO core's default, so protocol tests can read the bytes;
    /// every shipped entry point (`shutter node`, `shutter demo`) seals unless told
    /// `--insecure`.
    #[default]
    Insecure,
    /// Every datagram sealed with keys derived from this ring; unsealed, forged,
    /// wrong-key and replayed datagrams are dropped and counted.
    Keys(KeyRing),
}

impl Auth {
    /// True for [`Auth::Keys`].
    pub fn is_secure(&self) -> bool {
        matches!(self, Auth::Keys(_))
    }
}

/// Why a key ring could not be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    /// A line of a key file does not parse; `line` counts from 1.
    #[error("line {line}: {what}")]
    Line {
        /// The line number.
        line: usize,
        /// What is wrong with it.
        what: String,
    },
    /// The file lists no key.
    #[error("no key in the key file (expected lines `<id> <64 hex digits>`)")]
    Empty,
    /// `send` names an id that is not listed.
    #[error("`send {0}` names a key that is not in the file")]
    UnknownSend(u8),
    /// The operating system's random source failed.
    #[error("cannot draw a random key: {0}")]
    Random(String),
}

/// The cluster secrets a node accepts, and the one it sends with.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRing {
    send: u8,
    keys: Vec<(u8, [u8; KEY_LEN])>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        let ids: Vec<u8> = self.keys.iter().map(|(id, _)| *id).collect();
        f.debug_struct("KeyRing")
            .field("send", &self.send)
            .field("ids", &ids)
            .finish()
    }
}

impl KeyRing {
    /// A ring of one key, `id`, used to send and accepted.
    pub fn single(id: u8, secret: [u8; KEY_LEN]) -> KeyRing {
        KeyRing {
            send: id,
            keys: vec![(id, secret)],
        }
    }

    /// A ring of one fresh random key (id 1) from the operating system's random source.
    pub fn random() -> Result<KeyRing, KeyError> {
        let mut secret = [0u8; KEY_LEN];
        random_bytes(&mut secret)?;
        Ok(KeyRing::single(1, secret))
    }

    /// Parses a key file: one key per line as `<id> <64 hex digits>` (id 0-255), an
    /// optional `send <id>` line choosing the key new datagrams use (default: the
    /// highest id), blank lines and `#` comments. Every listed key is accepted.
    pub fn parse(text: &str) -> Result<KeyRing, KeyError> {
        let mut keys: Vec<(u8, [u8; KEY_LEN])> = Vec::new();
        let mut send = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let bad = |what: String| KeyError::Line { line, what };
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let mut words = content.split_whitespace();
            let (first, second) = (words.next().unwrap_or(""), words.next());
            if words.next().is_some() {
                return Err(bad("expected `<id> <64 hex digits>` or `send <id>`".into()));
            }
            let parse_id = |w: &str| {
                w.parse::<u8>()
                    .map_err(|_| bad(format!("key id {w:?} is not a number from 0 to 255")))
            };
            match (first, second) {
                ("send", Some(id)) => send = Some(parse_id(id)?),
                (id, Some(hex)) => {
                    let id = parse_id(id)?;
                    let secret = parse_hex(hex).ok_or_else(|| {
                        bad(format!(
                            "key {id}: expected {} hex digits, found {:?}",
                            KEY_LEN * 2,
                            abbreviate(hex)
                        ))
                    })?;
                    if keys.iter().any(|(k, _)| *k == id) {
                        return Err(bad(format!("key id {id} is listed twice")));
                    }
                    keys.push((id, secret));
                }
                _ => return Err(bad("expected `<id> <64 hex digits>` or `send <id>`".into())),
            }
        }
        let Some(highest) = keys.iter().map(|(id, _)| *id).max() else {
            return Err(KeyError::Empty);
        };
        let send = send.unwrap_or(highest);
        if !keys.iter().any(|(id, _)| *id == send) {
            return Err(KeyError::UnknownSend(send));
        }
        Ok(KeyRing { send, keys })
    }

    /// The key file text of this ring (what [`KeyRing::parse`] reads).
    pub fn to_text(&self) -> String {
        let mut s = String::from("# shutter cluster key: keep this file secret\n");
        for (id, secret) in &self.keys {
            s += &format!("{id} ");
            for b in secret {
                s += &format!("{b:02x}");
            }
            s.push('\n');
        }
        s += &format!("send {}\n", self.send);
        s
    }

    /// The id of the key new datagrams are sealed with.
    pub fn send_id(&self) -> u8 {
        self.send
    }

    /// The ids of every accepted key.
    pub fn ids(&self) -> impl Iterator<Item = u8> + '_ {
        self.keys.iter().map(|(id, _)| *id)
    }

    fn secret(&self, id: u8) -> Option<&[u8; KEY_LEN]> {
        self.keys.iter().find(|(k, _)| *k == id).map(|(_, s)| s)
    }

    /// A 32-byte key for another purpose (`label` names it, e.g. the admin channel),
    /// derived with HKDF-SHA256 from key `id`; `None` if the ring has no such key.
    pub fn derive(&self, id: u8, label: &[u8]) -> Option<[u8; KEY_LEN]> {
        Some(expand(&self.prk(id)?, label))
    }

    /// The HKDF-SHA256 pseudorandom key of key `id`: the extract step of
    /// [`KeyRing::derive`], the same for every label.
    fn prk(&self, id: u8) -> Option<Prk> {
        let secret = self.secret(id)?;
        Some(Salt::new(HKDF_SHA256, b"shutter v1").extract(secret))
    }
}

/// The expand step of [`KeyRing::derive`].
fn expand(prk: &Prk, label: &[u8]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    prk.expand(&[label], HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut out))
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

/// Fills `out` from the operating system's random source.
pub fn random_bytes(out: &mut [u8]) -> Result<(), KeyError> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| KeyError::Random("the system random source failed".into()))
}

fn parse_hex(s: &str) -> Option<[u8; KEY_LEN]> {
    let b = s.as_bytes();
    if b.len() != KEY_LEN * 2 {
        return None;
    }
    let mut out = [0u8; KEY_LEN];
    for (i, pair) in b.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Shows at most a few characters of a (possibly secret) word in an error.
fn abbreviate(s: &str) -> String {
    let n = s.chars().count();
    if n <= 8 {
        s.to_owned()
    } else {
        format!(
            "{}... ({n} characters)",
            s.chars().take(4).collect::<String>()
        )
    }
}

/// One direction of one life: `(key id, sender, receiver, sender incarnation)`.
type DirectionKey = (u8, NodeId, NodeId, u64);

/// Seals and opens datagrams, caching the derived per-direction ciphers (deriving one
/// costs an HKDF expand and an AES key schedule; a cluster of N nodes uses about 2N of
/// them per life).
///
/// The HKDF extract step depends only on the key, so it runs once per key, in
/// [`Sealer::new`]; ciphers are boxed because a `LessSafeKey` is hundreds of bytes, which
/// the map moved on every growth (at 256 nodes, deriving the ~500 ciphers of each node
/// was 10% of the simulator's run, a third of it in rehashing).
pub(crate) struct Sealer {
    ring: KeyRing,
    /// The pseudorandom key of each key id of the ring.
    prks: Vec<(u8, Prk)>,
    ciphers: HashMap<DirectionKey, Box<LessSafeKey>>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("ring", &self.ring)
            .field("ciphers", &self.ciphers.len())
            .finish()
    }
}

/// Most cached ciphers; beyond that the cache starts afresh (bounded memory even if an
/// authenticated peer cycled through incarnations).
const MAX_CIPHERS: usize = 4096;

impl Sealer {
    pub(crate) fn new(ring: KeyRing) -> Sealer {
        let prks = ring
            .ids()
            .map(|id| (id, ring.prk(id).expect("an id of the ring")))
            .collect();
        Sealer {
            ring,
            prks,
            ciphers: HashMap::new(),
        }
    }

    /// The key id new datagrams are sealed with.
    pub(crate) fn send_id(&self) -> u8 {
        self.ring.send
    }

    fn cipher(&mut self, dir: DirectionKey) -> Option<&LessSafeKey> {
        let (id, sender, receiver, incarnation) = dir;
        let (_, prk) = self.prks.iter().find(|(k, _)| *k == id)?;
        // One hash of `dir` per datagram (an entry, not a lookup then a get); the full
        // cache is emptied before a new direction goes in, as before.
        if self.ciphers.len() >= MAX_CIPHERS && !self.ciphers.contains_key(&dir) {
            self.ciphers.clear();
        }
        let cipher = self.ciphers.entry(dir).or_insert_with(|| {
            let mut info = [0u8; 4 + 4 + 4 + 8];
            info[..4].copy_from_slice(b"dgrm");
            info[4..8].copy_from_slice(&sender.0.to_le_bytes());
            info[8..12].copy_from_slice(&receiver.0.to_le_bytes());
            info[12..].copy_from_slice(&incarnation.to_le_bytes());
            let key = expand(prk, &info);
            let key = UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte AES-256 key");
            Box::new(LessSafeKey::new(key))
        });
        Some(&**cipher)
    }

    /// Encrypts `buf[header_len..]` in place with `buf[..header_len]` as associated data
    /// and appends the tag.
    pub(crate) fn seal(
        &mut self,
        dir: DirectionKey,
        packet_number: u64,
        buf: &mut Vec<u8>,
        header_len: usize,
    ) {
        let cipher = self
            .cipher(dir)
            .expect("the send key id is always in the ring");
        let (aad, body) = buf.split_at_mut(header_len);
        let tag = cipher
            .seal_in_place_separate_tag(nonce(packet_number), Aad::from(&*aad), body)
            .expect("a datagram is far below AES-GCM's length limit");
        buf.extend_from_slice(tag.as_ref());
    }

    /// Checks and decrypts a sealed datagram into `out` (cleared first); false if the key
    /// id is unknown or the tag does not match (forged, damaged or wrong key).
    pub(crate) fn open(
        &mut self,
        dir: DirectionKey,
        packet_number: u64,
        datagram: &[u8],
        header_len: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        if datagram.len() < header_len + TAG_LEN {
            return false;
        }
        let Some(cipher) = self.cipher(dir) else {
            return false;
        };
        let (aad, sealed) = datagram.split_at(header_len);
        out.clear();
        out.extend_from_slice(sealed);
        let ok = cipher
            .open_in_place(nonce(packet_number), Aad::from(aad), out)
            .is_ok();
        // On success the plaintext is the front of `out`; drop the tag.
        out.truncate(sealed.len() - TAG_LEN);
        ok
    }
}

/// The 96-bit nonce of a packet number (unique per key: see the module docs).
fn nonce(packet_number: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&packet_number.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Words of the replay bitmap: 2048 bits, as WireGuard.
const WINDOW_WORDS: usize = 32;
/// Packet numbers the window covers below the highest seen.
pub const REPLAY_WINDOW: u64 = (WINDOW_WORDS as u64) * 64 - 64;

/// RFC 6479 anti-replay window over authenticated packet numbers of one peer life.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    /// Highest packet number accepted, plus one (0: none yet).
    top: u64,
    bits: [u64; WINDOW_WORDS],
}

impl ReplayWindow {
    /// Accepts `pn` if it was not seen and is not older than the window, and records it;
    /// false for a replay (or a duplicate, which the two cannot be told apart).
    pub fn accept(&mut self, pn: u64) -> bool {
        let Some(n) = pn.checked_add(1) else {
            return false;
        };
        if n > self.top {
            // Clear the words between the old top and the new one.
            let old_word = self.top / 64;
            let new_word = n / 64;
            let span = (new_word - old_word).min(WINDOW_WORDS as u64);
            for w in 1..=span {
                self.bits[((old_word + w) % WINDOW_WORDS as u64) as usize] = 0;
            }
            self.top = n;
        } else if self.top - n > REPLAY_WINDOW {
            return false;
        }
        let word = ((n / 64) % WINDOW_WORDS as u64) as usize;
        let bit = 1u64 << (n % 64);
        if self.bits[word] & bit != 0 {
            return false;
        }
        self.bits[word] |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn key_file_round_trips_and_errors_name_the_line() {
        let ring =
            KeyRing::parse(&format!("# comment\n\n1 {HEX}\n2 {}\n", "ab".repeat(32))).unwrap();
        assert_eq!(ring.send_id(), 2, "the highest id sends by default");
        assert_eq!(KeyRing::parse(&ring.to_text()).unwrap(), ring);
        let ring = KeyRing::parse(&format!("1 {HEX}\n2 {}\nsend 1\n", "ab".repeat(32))).unwrap();
        assert_eq!(ring.send_id(), 1);
        assert_eq!(format!("{ring:?}"), "KeyRing { send: 1, ids: [1, 2] }");
        let e = KeyRing::parse(&format!("1 {HEX}\n1 {HEX}")).unwrap_err();
        assert_eq!(e.to_string(), "line 2: key id 1 is listed twice");
        let e = KeyRing::parse("7 deadbeef").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: key 7: expected 64 hex digits, found \"deadbeef\""
        );
        assert_eq!(KeyRing::parse("# nothing\n"), Err(KeyError::Empty));
        assert_eq!(
            KeyRing::parse(&format!("1 {HEX}\nsend 3")),
            Err(KeyError::UnknownSend(3))
        );
        assert!(KeyRing::parse(&format!("300 {HEX}")).is_err());
        assert!(KeyRing::parse(&format!("1 {HEX} extra")).is_err());
    }

    #[test]
    fn sealed_bytes_open_only_with_the_same_direction_and_key() {
        let ring = KeyRing::parse(&format!("1 {HEX}")).unwrap();
        let mut a = Sealer::new(ring.clone());
        let mut b = Sealer::new(ring);
        let dir = (1, NodeId(0), NodeId(1), 5);
        let mut buf = b"header|secret frames".to_vec();
        a.seal(dir, 9, &mut buf, 7);
        assert_eq!(&buf[..7], b"header|");
        assert!(!buf.windows(6).any(|w| w == b"secret"), "encrypted");
        let mut out = Vec::new();
        assert!(b.open(dir, 9, &buf, 7, &mut out));
        assert_eq!(out, b"secret frames");
        // Another packet number, direction, incarnation or a flipped bit: refused.
        assert!(!b.open(dir, 10, &buf, 7, &mut out));
        assert!(!b.open((1, NodeId(1), NodeId(0), 5), 9, &buf, 7, &mut out));
        assert!(!b.open((1, NodeId(0), NodeId(1), 6), 9, &buf, 7, &mut out));
        assert!(!b.open((2, NodeId(0), NodeId(1), 5), 9, &buf, 7, &mut out));
        let mut flipped = buf.clone();
        flipped[2] ^= 1;
        assert!(
            !b.open(dir, 9, &flipped, 7, &mut out),
            "header is authenticated"
        );
        let other = KeyRing::single(1, [7; KEY_LEN]);
        assert!(!Sealer::new(other).open(dir, 9, &buf, 7, &mut out));
    }

    #[test]
    fn replay_window_accepts_each_number_once() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(0));
        assert!(!w.accept(0));
        assert!(w.accept(5));
        assert!(w.accept(3), "reordered but new");
        assert!(!w.accept(3));
        assert!(w.accept(5000));
        assert!(!w.accept(5), "older than the window");
        assert!(w.accept(5000 - REPLAY_WINDOW), "oldest in the window");
        assert!(w.accept(4999));
        assert!(!w.accept(4999));
        // A jump far ahead clears everything in between.
        assert!(w.accept(1_000_000));
        assert!(w.accept(1_000_000 - 64));
        assert!(!w.accept(u64::MAX));
    }
}
