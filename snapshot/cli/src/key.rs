//! The cluster key: where `shutter node`, `snapshot` and `status` find it, and
//! `shutter keygen`.
//!
//! The key file (see [`shutter_transport::auth::KeyRing::parse`]) comes from
//! `--key-file`, else the peers file's `key_file` (relative to the peers file). Without
//! either the command refuses to run; `--insecure` is the explicit opt-in to plain,
//! unauthenticated datagrams and admin requests, and prints a warning.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use shutter_transport::auth::{Auth, KeyRing};

use crate::args::{KeyArgs, KeygenArgs};
use crate::peers::PeersFile;
use crate::usage;

/// The protection `args` and the peers file at `peers_path` ask for.
pub fn cluster_auth(args: &KeyArgs, peers: &PeersFile, peers_path: &Path) -> Result<Auth> {
    if args.insecure {
        tracing::warn!(
            "--insecure: datagrams and admin requests are neither authenticated nor \
             encrypted; anyone who can reach this cluster's ports can forge transfers and \
             cut nodes off"
        );
        return Ok(Auth::Insecure);
    }
    let path: PathBuf = match (&args.key_file, &peers.key_file) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => peers_path.parent().unwrap_or(Path::new(".")).join(p),
        (None, None) => {
            return Err(usage(format!(
                "no cluster key: give --key-file FILE or `key_file = \"FILE\"` in {} \
                 (make one with `shutter keygen --out FILE`), or --insecure to run \
                 without authentication",
                peers_path.display()
            )));
        }
    };
    Ok(Auth::Keys(load(&path)?))
}

/// Reads a key file; errors name the file (and the line).
pub fn load(path: &Path) -> Result<KeyRing> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    KeyRing::parse(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
}

/// `shutter keygen`: writes a fresh random key file (owner-only permissions on Unix).
pub fn keygen(args: &KeygenArgs) -> Result<ExitCode> {
    let ring = KeyRing::random().context("drawing a key")?;
    if args.out.exists() && !args.force {
        return Err(usage(format!(
            "{} exists; pass --force to replace it",
            args.out.display()
        )));
    }
    write_private(&args.out, ring.to_text().as_bytes())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("wrote a new cluster key to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
