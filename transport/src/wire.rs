//! The datagram wire format of the reliable transport (hand-written, varints, and
//! either an AEAD tag or a CRC32C).
//!
//! ```text
//! sealed   := magic "SHT" | 2 u8 | key_id u8 | header | AEAD(frame*) | tag [16]
//! plain    := magic "SHT" | 1 u8 | header | frame* | crc32c u32 little-endian
//!                                                    (over every byte before it)
//! header   := sender varint | sender_incarnation varint
//!             | dest_incarnation varint (0 = unknown) | packet_number varint
//! frame    := 0x01 DATA  message_id | index | count | total_len | sent_at | len | payload
//!           | 0x02 ACK   ack_delay_us | largest | first_range | extra_ranges
//!                        | (gap | range_len){extra_ranges}
//!           | 0x03 PING
//! ```
//!
//! All integers are unsigned LEB128 varints. ACK ranges follow QUIC (RFC 9000 §19.3): the
//! first range covers `largest - first_range ..= largest`; each further range starts
//! `gap + 2` below the previous range's low end and spans `range_len + 1` packet numbers.
//! Packet numbers are never reused, so every ACK gives an unambiguous RTT sample.
//!
//! Decoding never panics and never allocates more than a small multiple of the input
//! length: every frame and every ACK range consumes at least one input byte.

use shutter_vclock::NodeId;
use thiserror::Error;

/// First bytes of every datagram.
pub const MAGIC: [u8; 3] = *b"SHT";
/// Wire format version of plain (CRC-checked) datagrams.
pub const VERSION: u8 = 1;
/// Wire format version of sealed (authenticated, encrypted) datagrams; see
/// [`crate::auth`]. Everything after the clear header is ciphertext, then the tag.
pub const VERSION_SEALED: u8 = 2;
/// Length of the trailing CRC32C.
pub const CRC_LEN: usize = 4;
/// Upper bound on the encoded header length (magic, version, key id, four varints).
pub const MAX_HEADER_LEN: usize = MAGIC.len() + 1 + 1 + 5 + 10 + 10 + 10;
/// Upper bound on what follows the frames (the AEAD tag; a CRC is shorter).
pub const MAX_TRAILER_LEN: usize = crate::auth::TAG_LEN;
/// Upper bound on a DATA frame's encoding minus its payload.
pub const MAX_DATA_OVERHEAD: usize = 1 + 10 + 5 + 5 + 5 + 10 + 5;
/// Smallest datagram that still holds a header and the checksum.
pub const MIN_DATAGRAM_LEN: usize = MAGIC.len() + 1 + 4 + CRC_LEN;

const FRAME_DATA: u8 = 0x01;
const FRAME_ACK: u8 = 0x02;
const FRAME_PING: u8 = 0x03;

/// Why a datagram was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Shorter than the smallest possible datagram.
    #[error("datagram too short")]
    TooShort,
    /// The magic bytes do not match: not a shutter datagram.
    #[error("bad magic")]
    BadMagic,
    /// An unsupported wire version.
    #[error("unsupported version {0}")]
    BadVersion(u8),
    /// The CRC32C does not match: corrupted in transit.
    #[error("checksum mismatch")]
    BadChecksum,
    /// The checksum matched but the contents do not parse.
    #[error("malformed datagram: {0}")]
    Malformed(&'static str),
    /// A plain datagram where sealed ones are required, or the reverse.
    #[error("datagram is {0}")]
    WrongProtection(&'static str),
}

/// The fixed part of every datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sending node.
    pub sender: NodeId,
    /// The sender's incarnation (nonzero).
    pub sender_incarnation: u64,
    /// The receiver's incarnation as the sender knows it; 0 if unknown.
    pub dest_incarnation: u64,
    /// Per (sender, receiver) packet number, never reused.
    pub packet_number: u64,
}

/// One fragment of an application message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrame<'a> {
    /// Message id, per destination.
    pub message_id: u64,
    /// Fragment index, `< count`.
    pub index: u32,
    /// Number of fragments of the message (at least 1).
    pub count: u32,
    /// Length of the whole message in bytes.
    pub total_len: u32,
    /// Microsecond stamp of the message's first transmission.
    pub sent_at: u64,
    /// The fragment's bytes.
    pub payload: &'a [u8],
}

impl DataFrame<'_> {
    /// Exact encoded length of this frame.
    pub fn encoded_len(&self) -> usize {
        1 + varint_len(self.message_id)
            + varint_len(self.index.into())
            + varint_len(self.count.into())
            + varint_len(self.total_len.into())
            + varint_len(self.sent_at)
            + varint_len(self.payload.len() as u64)
            + self.payload.len()
    }
}

/// Selective acknowledgement of packet numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckFrame {
    /// Time between receiving the largest acknowledged packet and sending this ACK.
    pub ack_delay_micros: u64,
    /// Acknowledged inclusive ranges `(low, high)`, highest first, disjoint, non-adjacent.
    pub ranges: Vec<(u64, u64)>,
}

impl AckFrame {
    /// Largest acknowledged packet number, if any range is present.
    pub fn largest(&self) -> Option<u64> {
        self.ranges.first().map(|r| r.1)
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A message fragment.
    Data(DataFrame<'a>),
    /// An acknowledgement.
    Ack(AckFrame),
    /// A liveness probe; elicits an acknowledgement.
    Ping,
}

/// Builds one datagram, refusing frames that would exceed the size limit.
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
    limit: usize,
    frames: usize,
    header_len: usize,
}

impl Writer {
    /// Starts a plain datagram of at most `max_len` bytes (checksum included).
    pub fn new(header: &Header, max_len: usize) -> Writer {
        Self::start(header, None, max_len)
    }

    /// Starts a sealed datagram of at most `max_len` bytes (tag included) for key
    /// `key_id`; finish it with [`Writer::into_sealable`] and seal the frames.
    pub fn sealed(header: &Header, key_id: u8, max_len: usize) -> Writer {
        Self::start(header, Some(key_id), max_len)
    }

    fn start(header: &Header, key_id: Option<u8>, max_len: usize) -> Writer {
        let mut buf = Vec::with_capacity(max_len.min(64 * 1024));
        buf.extend_from_slice(&MAGIC);
        match key_id {
            Some(id) => buf.extend_from_slice(&[VERSION_SEALED, id]),
            None => buf.push(VERSION),
        }
        put_varint(&mut buf, header.sender.0.into());
        put_varint(&mut buf, header.sender_incarnation);
        put_varint(&mut buf, header.dest_incarnation);
        put_varint(&mut buf, header.packet_number);
        let trailer = if key_id.is_some() {
            crate::auth::TAG_LEN
        } else {
            CRC_LEN
        };
        Writer {
            buf,
            limit: max_len.saturating_sub(trailer),
            frames: 0,
            header_len: 0,
        }
        .mark_header()
    }

    fn mark_header(mut self) -> Writer {
        self.header_len = self.buf.len();
        self
    }

    /// The bytes written and the length of the clear header before the frames: encrypt
    /// `bytes[header_len..]` with `bytes[..header_len]` as associated data, append the tag.
    pub fn into_sealable(self) -> (Vec<u8>, usize) {
        (self.buf, self.header_len)
    }

    /// Bytes still available for frames.
    pub fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }

    /// Number of frames written so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Appends a DATA frame if it fits; returns whether it did.
    pub fn push_data(&mut self, f: &DataFrame<'_>) -> bool {
        if f.encoded_len() > self.remaining() {
            return false;
        }
        self.buf.push(FRAME_DATA);
        put_varint(&mut self.buf, f.message_id);
        put_varint(&mut self.buf, f.index.into());
        put_varint(&mut self.buf, f.count.into());
        put_varint(&mut self.buf, f.total_len.into());
        put_varint(&mut self.buf, f.sent_at);
        put_varint(&mut self.buf, f.payload.len() as u64);
        self.buf.extend_from_slice(f.payload);
        self.frames += 1;
        true
    }

    /// Appends a PING frame if it fits.
    pub fn push_ping(&mut self) -> bool {
        if self.remaining() < 1 {
            return false;
        }
        self.buf.push(FRAME_PING);
        self.frames += 1;
        true
    }

    /// Appends an ACK frame of the given ranges (highest first), using at most `budget`
    /// bytes: lower ranges that do not fit are left out. Returns the largest acknowledged
    /// packet number written, or `None` if nothing was written.
    pub fn push_ack(
        &mut self,
        ack_delay_micros: u64,
        ranges: &[(u64, u64)],
        budget: usize,
    ) -> Option<u64> {
        let budget = budget.min(self.remaining());
        let &(lo0, hi0) = ranges.first()?;
        let mut head = vec![FRAME_ACK];
        put_varint(&mut head, ack_delay_micros);
        put_varint(&mut head, hi0);
        put_varint(&mut head, hi0 - lo0);
        // Reserve the worst case for the extra-range count so the total stays in budget.
        let fixed = head.len() + 2;
        if fixed > budget {
            return None;
        }
        let mut tail = Vec::new();
        let mut extra = 0u64;
        let mut prev_lo = lo0;
        for &(lo, hi) in &ranges[1..] {
            // Ranges are disjoint and non-adjacent, so `prev_lo >= hi + 2`.
            let Some(gap) = prev_lo.checked_sub(hi).and_then(|d| d.checked_sub(2)) else {
                break;
            };
            let before = tail.len();
            put_varint(&mut tail, gap);
            put_varint(&mut tail, hi - lo);
            if fixed + tail.len() > budget {
                tail.truncate(before);
                break;
            }
            extra += 1;
            prev_lo = lo;
        }
        self.buf.extend_from_slice(&head);
        put_varint(&mut self.buf, extra);
        self.buf.extend_from_slice(&tail);
        self.frames += 1;
        Some(hi0)
    }

    /// Appends the checksum and returns the datagram.
    pub fn finish(mut self) -> Vec<u8> {
        let crc = crc32c::crc32c(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// Checks and parses one datagram.
pub fn decode(bytes: &[u8]) -> Result<(Header, Vec<Frame<'_>>), DecodeError> {
    if bytes.len() <= MAGIC.len() {
        return Err(DecodeError::TooShort);
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    match bytes[MAGIC.len()] {
        VERSION => {}
        VERSION_SEALED => return Err(DecodeError::WrongProtection("sealed, not plain")),
        v => return Err(DecodeError::BadVersion(v)),
    }
    if bytes.len() < MIN_DATAGRAM_LEN {
        return Err(DecodeError::TooShort);
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != crc {
        return Err(DecodeError::BadChecksum);
    }
    let mut r = Reader {
        buf: &body[MAGIC.len() + 1..],
    };
    let header = r.header()?;
    Ok((header, r.frames()?))
}

/// Parses the clear part of a sealed datagram: `(header, key id, header length)`. The
/// caller authenticates and decrypts the rest ([`crate::auth`]) and parses the plaintext
/// with [`decode_frames`]. A plain datagram is [`DecodeError::WrongProtection`].
pub fn decode_sealed_header(bytes: &[u8]) -> Result<(Header, u8, usize), DecodeError> {
    if bytes.len() <= MAGIC.len() {
        return Err(DecodeError::TooShort);
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    match bytes[MAGIC.len()] {
        VERSION_SEALED => {}
        VERSION => return Err(DecodeError::WrongProtection("plain, not sealed")),
        v => return Err(DecodeError::BadVersion(v)),
    }
    if bytes.len() < MAGIC.len() + 2 + 4 + crate::auth::TAG_LEN {
        return Err(DecodeError::TooShort);
    }
    let key_id = bytes[MAGIC.len() + 1];
    let body = &bytes[..bytes.len() - crate::auth::TAG_LEN];
    let mut r = Reader {
        buf: &body[MAGIC.len() + 2..],
    };
    let header = r.header()?;
    Ok((header, key_id, body.len() - r.buf.len()))
}

/// Parses the frames of a datagram's (decrypted) body.
pub fn decode_frames(body: &[u8]) -> Result<Vec<Frame<'_>>, DecodeError> {
    Reader { buf: body }.frames()
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or(DecodeError::Malformed("truncated"))?;
        self.buf = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            // The tenth byte may only contribute the top bit of a u64.
            if i == 9 && b > 1 {
                return Err(DecodeError::Malformed("varint overflow"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed("varint too long"))
    }

    fn header(&mut self) -> Result<Header, DecodeError> {
        let sender = u32::try_from(self.varint()?).map_err(|_| DecodeError::Malformed("sender"))?;
        Ok(Header {
            sender: NodeId(sender),
            sender_incarnation: self.varint()?,
            dest_incarnation: self.varint()?,
            packet_number: self.varint()?,
        })
    }

    fn frames(&mut self) -> Result<Vec<Frame<'a>>, DecodeError> {
        let mut frames = Vec::new();
        while !self.buf.is_empty() {
            frames.push(self.frame()?);
        }
        Ok(frames)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::Malformed(what))
    }

    fn frame(&mut self) -> Result<Frame<'a>, DecodeError> {
        match self.byte()? {
            FRAME_DATA => {
                let message_id = self.varint()?;
                let index = self.u32("fragment index")?;
                let count = self.u32("fragment count")?;
                let total_len = self.u32("message length")?;
                let sent_at = self.varint()?;
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| DecodeError::Malformed("length"))?;
                if len > self.buf.len() {
                    return Err(DecodeError::Malformed("payload truncated"));
                }
                let (payload, rest) = self.buf.split_at(len);
                self.buf = rest;
                if count == 0 || index >= count {
                    return Err(DecodeError::Malformed("fragment index"));
                }
                Ok(Frame::Data(DataFrame {
                    message_id,
                    index,
                    count,
                    total_len,
                    sent_at,
                    payload,
                }))
            }
            FRAME_ACK => {
                let ack_delay_micros = self.varint()?;
                let largest = self.varint()?;
                let first = self.varint()?;
                let extra = self.varint()?;
                let mut lo = largest
                    .checked_sub(first)
                    .ok_or(DecodeError::Malformed("ack range"))?;
                // Each extra range takes at least two bytes, which bounds the allocation.
                if extra > self.buf.len() as u64 / 2 {
                    return Err(DecodeError::Malformed("ack range count"));
                }
                let mut ranges = Vec::with_capacity(extra as usize + 1);
                ranges.push((lo, largest));
                for _ in 0..extra {
                    let gap = self.varint()?;
                    let len = self.varint()?;
                    let hi = lo
                        .checked_sub(gap)
                        .and_then(|v| v.checked_sub(2))
                        .ok_or(DecodeError::Malformed("ack gap"))?;
                    lo = hi
                        .checked_sub(len)
                        .ok_or(DecodeError::Malformed("ack range"))?;
                    ranges.push((lo, hi));
                }
                Ok(Frame::Ack(AckFrame {
                    ack_delay_micros,
                    ranges,
                }))
            }
            FRAME_PING => Ok(Frame::Ping),
            _ => Err(DecodeError::Malformed("unknown frame type")),
        }
    }
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Encoded length of a varint.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            sender: NodeId(7),
            sender_incarnation: 99,
            dest_incarnation: 0,
            packet_number: 300,
        }
    }

    #[test]
    fn round_trip_all_frames() {
        let mut w = Writer::new(&header(), 1200);
        let ranges = [(90, 100), (50, 60), (10, 10)];
        assert_eq!(w.push_ack(17, &ranges, 64), Some(100));
        assert!(w.push_ping());
        let data = DataFrame {
            message_id: 5,
            index: 1,
            count: 3,
            total_len: 30,
            sent_at: 123_456,
            payload: b"0123456789",
        };
        assert!(w.push_data(&data));
        let bytes = w.finish();
        let (h, frames) = decode(&bytes).unwrap();
        assert_eq!(h, header());
        assert_eq!(frames.len(), 3);
        assert_eq!(
            frames[0],
            Frame::Ack(AckFrame {
                ack_delay_micros: 17,
                ranges: ranges.to_vec()
            })
        );
        assert_eq!(frames[1], Frame::Ping);
        assert_eq!(frames[2], Frame::Data(data));
    }

    #[test]
    fn writer_respects_limit_and_ack_budget() {
        let mut w = Writer::new(&header(), 100);
        let big = [0u8; 100];
        let data = DataFrame {
            message_id: 0,
            index: 0,
            count: 1,
            total_len: 100,
            sent_at: 0,
            payload: &big,
        };
        assert!(!w.push_data(&data));
        let ranges: Vec<(u64, u64)> = (0..100u64)
            .rev()
            .map(|i| (i * 1000, i * 1000 + 5))
            .collect();
        assert!(w.push_ack(0, &ranges, 40).is_some());
        let bytes = w.finish();
        assert!(bytes.len() <= 100);
        let (_, frames) = decode(&bytes).unwrap();
        let Frame::Ack(ack) = &frames[0] else {
            panic!()
        };
        assert!(ack.ranges.len() > 1 && ack.ranges.len() < 100);
        assert_eq!(&ack.ranges[..], &ranges[..ack.ranges.len()]);
    }

    #[test]
    fn varint_lengths() {
        for v in [0, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            assert_eq!(Reader { buf: &b }.varint().unwrap(), v);
        }
    }

    #[test]
    fn rejects_damage() {
        let bytes = Writer::new(&header(), 1200).finish();
        assert!(decode(&bytes).is_ok());
        assert_eq!(decode(&bytes[..3]), Err(DecodeError::TooShort));
        let mut b = bytes.clone();
        b[0] ^= 1;
        assert_eq!(decode(&b), Err(DecodeError::BadMagic));
        let mut b = bytes.clone();
        b[3] = 9;
        assert_eq!(decode(&b), Err(DecodeError::BadVersion(9)));
        let mut b = bytes.clone();
        b[5] ^= 0x10;
        assert_eq!(decode(&b), Err(DecodeError::BadChecksum));
    }
}
