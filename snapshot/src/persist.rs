//! Snapshot files and restore helpers.
//!
//! A file is a 22-byte header followed by the postcard encoding of a [`GlobalSnapshot`]:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `SHUTSNAP` |
//! | 8..10 | format version, u16 little endian (currently 3; 2 changed the vector clock encoding, 3 added the channel counts) |
//! | 10..18 | body length, u64 little endian |
//! | 18..22 | CRC32C of the body, u32 little endian |
//!
//! [`save`] is atomic: it writes a temporary file in the same directory, fsyncs it,
//! renames it over the target and fsyncs the directory, so a crash leaves either the old
//! file or the new one. [`load`] and [`decode`] never panic on any input; each kind of
//! damage has its own [`PersistError`].
//!
//! Restore: [`restore_for`] gives one node its state bytes, its cut clock and the
//! recorded messages it must receive again before new traffic (see
//! [`crate::process::Node::restored`]).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use shutter_vclock::{NodeId, VClock};
use thiserror::Error;

use crate::global::GlobalSnapshot;
use crate::wire::RecordedMessage;

/// First bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"SHUTSNAP";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 3;
/// Header size in bytes.
pub const HEADER_LEN: usize = 22;

/// What is wrong with a snapshot file.
#[derive(Debug, Error)]
pub enum PersistError {
    /// Reading or writing failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The magic is wrong: this is not a shutter snapshot file.
    #[error("not a shutter snapshot file (bad magic)")]
    NotShutterFile,
    /// Written by a different format version.
    #[error("unsupported snapshot format version {found} (this build reads {supported})")]
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
        /// Version this build supports.
        supported: u16,
    },
    /// The file ends before the header or the body is complete.
    #[error("truncated snapshot file: expected {expected} bytes, found {found}")]
    Truncated {
        /// Bytes the header promises (or the header size).
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// Bytes follow the body.
    #[error("snapshot file has {extra} unexpected bytes after the body")]
    TrailingBytes {
        /// How many.
        extra: u64,
    },
    /// The body does not match its checksum.
    #[error("snapshot checksum mismatch: header says {expected:#010x}, body is {actual:#010x}")]
    ChecksumMismatch {
        /// CRC32C in the header.
        expected: u32,
        /// CRC32C of the body as read.
        actual: u32,
    },
    /// The checksum matched but the body is not a valid snapshot encoding.
    #[error("snapshot body does not decode: {0}")]
    Decode(#[from] postcard::Error),
}

/// Encodes a snapshot into file bytes (header and body).
pub fn encode(snap: &GlobalSnapshot) -> Vec<u8> {
    let body = postcard::to_allocvec(snap).expect("postcard encoding into a Vec cannot fail");
    frame(&MAGIC, FORMAT_VERSION, &body)
}

/// Decodes file bytes; every kind of damage is a distinct error, never a panic.
pub fn decode(bytes: &[u8]) -> Result<GlobalSnapshot, PersistError> {
    let body = unframe(bytes, &MAGIC, FORMAT_VERSION)?;
    let (snap, rest) = postcard::take_from_bytes::<GlobalSnapshot>(body)?;
    if !rest.is_empty() {
        return Err(PersistError::TrailingBytes {
            extra: rest.len() as u64,
        });
    }
    Ok(snap)
}

/// `magic`, `version`, body length and CRC32C, then `body`: the header every shutter
/// file kind shares (snapshot files, checkpoints).
pub(crate) fn frame(magic: &[u8; 8], version: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Checks the header of a framed file and returns its body.
pub(crate) fn unframe<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    version_supported: u16,
) -> Result<&'a [u8], PersistError> {
    let n = bytes.len();
    let magic_len = n.min(magic.len());
    if bytes[..magic_len] != magic[..magic_len] {
        return Err(PersistError::NotShutterFile);
    }
    if n < HEADER_LEN {
        return Err(PersistError::Truncated {
            expected: HEADER_LEN as u64,
            found: n as u64,
        });
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != version_supported {
        return Err(PersistError::UnsupportedVersion {
            found: version,
            supported: version_supported,
        });
    }
    let len = u64::from_le_bytes(bytes[10..18].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[18..22].try_into().expect("4 bytes"));
    let body = &bytes[HEADER_LEN..];
    let have = body.len() as u64;
    if have < len {
        return Err(PersistError::Truncated {
            expected: (HEADER_LEN as u64).saturating_add(len),
            found: n as u64,
        });
    }
    if have > len {
        return Err(PersistError::TrailingBytes { extra: have - len });
    }
    let actual = crc32c::crc32c(body);
    if actual != crc {
        return Err(PersistError::ChecksumMismatch {
            expected: crc,
            actual,
        });
    }
    Ok(body)
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `snap` to `path` atomically (temp file in the same directory, fsync, rename,
/// fsync of the directory).
pub fn save(path: &Path, snap: &GlobalSnapshot) -> Result<(), PersistError> {
    write_atomic(path, &encode(snap))
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one: a temp
/// file in the same directory, fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> Result<(), PersistError> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, path).map_err(io(path))?;
        // The rename is only durable once the directory entry is.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        Ok(())
    };
    let result = write();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads and decodes a snapshot file.
pub fn load(path: &Path) -> Result<GlobalSnapshot, PersistError> {
    let bytes = fs::read(path).map_err(io(path))?;
    decode(&bytes)
}

/// What one node needs to resume from a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRestore {
    /// Its application state bytes.
    pub state: Vec<u8>,
    /// Its cut clock (the engine resumes from it).
    pub clock: VClock,
    /// Recorded messages to it, by sender, to deliver again before any new traffic.
    pub incoming: Vec<(NodeId, RecordedMessage)>,
}

/// The restore material of `node`, or `None` if it is not in the snapshot.
pub fn restore_for(snap: &GlobalSnapshot, node: NodeId) -> Option<NodeRestore> {
    Some(NodeRestore {
        state: snap.states.get(&node)?.clone(),
        clock: snap.cuts.get(&node)?.clone(),
        incoming: snap
            .incoming(node)
            .map(|(from, m)| (from, m.clone()))
            .collect(),
    })
}
