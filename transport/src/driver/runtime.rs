//! [`multi_thread`]: the tokio runtime the host loops run on, optionally with its
//! worker threads pinned one per CPU.
//!
//! Why pinning: with many node tasks in one process (a local cluster) the workers hand
//! work to each other all the time, and a worker woken by another is often placed on
//! the waker's CPU (the scheduler's wake-affine heuristic) while the other CPU idles.
//! It then waits for the waker's time slice or the next load-balancing tick: 4 ms on a
//! 250 Hz kernel. `perf sched latency` on `shutter-bench snapshots --sizes 64 --losses 0`
//! showed exactly that, a worker runnable but not running for 4.000 ms, and the
//! 64-node snapshot p99 came out at 7.8-8.4 ms unpinned against 2.8-3.8 ms pinned
//! (ARCHITECTURE.md has the figures). Pinned workers cannot be stacked on one CPU.
//!
//! Why not always: a process pinned to CPUs 0 and 1 competes for them with every other
//! process pinned the same way, while other CPUs idle. Pinning suits a process that has
//! the machine to itself (a local cluster, a benchmark), so it is the caller's choice.
//! Workers take the CPUs the process may run on (its affinity mask, which `taskset` or
//! a cgroup may have narrowed) in turn.

use std::io;

/// A multi-threaded tokio runtime (IO and time enabled) with `workers` worker threads
/// (tokio's default, one per CPU, if `None`). With `pin`, worker `k` is pinned to the
/// `k`-th CPU of the process's affinity mask; threads the runtime starts later (its
/// blocking pool) run on the whole mask again, since a new thread inherits the mask
/// of the worker that spawned it. If the mask cannot be read or set (not Linux, or a
/// sandbox forbids it) threads run unpinned and a warning is logged.
pub fn multi_thread(workers: Option<usize>, pin: bool) -> io::Result<tokio::runtime::Runtime> {
    let workers = workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all().worker_threads(workers);
    if pin {
        let whole = affinity();
        let next = std::sync::atomic::AtomicUsize::new(0);
        // tokio starts its workers first, while `build` runs; nothing here uses
        // `block_in_place`, which would hand a worker's queue to a new thread.
        b.on_thread_start(move || {
            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let done = match &whole {
                Ok(cpus) if k < workers => pin_to(cpus[k % cpus.len()]),
                Ok(cpus) => set_affinity(cpus),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            if let Err(e) = done {
                tracing::warn!(error = %e, "cannot pin a runtime thread to a CPU; it runs unpinned");
            }
        });
    }
    b.build()
}

/// The CPUs the calling thread may run on.
#[cfg(target_os = "linux")]
pub fn affinity() -> io::Result<Vec<usize>> {
    use nix::sched::{CpuSet, sched_getaffinity};
    let mask = sched_getaffinity(nix::unistd::Pid::from_raw(0)).map_err(io::Error::from)?;
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| mask.is_set(c).unwrap_or(false))
        .collect();
    if cpus.is_empty() {
        return Err(io::Error::other("the affinity mask allows no CPU"));
    }
    Ok(cpus)
}

/// Lets the calling thread run on exactly `cpus`.
#[cfg(target_os = "linux")]
fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    use nix::sched::{CpuSet, sched_setaffinity};
    let mut mask = CpuSet::new();
    for &c in cpus {
        mask.set(c).map_err(io::Error::from)?;
    }
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &mask).map_err(io::Error::from)
}

/// Pins the calling thread to `cpu`.
#[cfg(target_os = "linux")]
pub fn pin_to(cpu: usize) -> io::Result<()> {
    set_affinity(&[cpu])
}

#[cfg(not(target_os = "linux"))]
fn unsupported<T>() -> io::Result<T> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "CPU affinity is implemented on Linux only",
    ))
}

/// The CPUs the calling thread may run on (Linux only).
#[cfg(not(target_os = "linux"))]
pub fn affinity() -> io::Result<Vec<usize>> {
    unsupported()
}

#[cfg(not(target_os = "linux"))]
fn set_affinity(_cpus: &[usize]) -> io::Result<()> {
    unsupported()
}

/// Pins the calling thread to `cpu` (Linux only).
#[cfg(not(target_os = "linux"))]
pub fn pin_to(_cpu: usize) -> io::Result<()> {
    unsupported()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The mask each of a pinned runtime's threads runs with: its workers', and that of
    /// a blocking thread started by a worker.
    #[test]
    fn workers_are_pinned_one_per_cpu_and_blocking_threads_are_not() {
        let whole = affinity().expect("the test's own mask");
        let rt = multi_thread(Some(2), true).expect("runtime");
        let (workers, blocking) = rt.block_on(async {
            let mut seen = std::collections::BTreeSet::new();
            // Tasks land on both workers sooner or later; each reports its mask.
            for _ in 0..200 {
                let hs: Vec<_> = (0..4)
                    .map(|_| tokio::spawn(async { affinity().unwrap() }))
                    .collect();
                for h in hs {
                    seen.insert(h.await.unwrap());
                }
                tokio::task::yield_now().await;
            }
            let blocking = tokio::spawn(async {
                tokio::task::spawn_blocking(|| affinity().unwrap())
                    .await
                    .unwrap()
            })
            .await
            .unwrap();
            (seen, blocking)
        });
        for mask in &workers {
            assert_eq!(mask.len(), 1, "a worker runs on one CPU: {mask:?}");
            assert!(whole.contains(&mask[0]));
        }
        if whole.len() >= 2 {
            let cpus: Vec<usize> = workers.iter().map(|m| m[0]).collect();
            assert!(
                workers.len() <= 2 && cpus.iter().all(|c| whole[..2].contains(c)),
                "workers take the first two CPUs: {cpus:?}"
            );
        }
        assert_eq!(blocking, whole, "a blocking thread runs on the whole mask");
    }
}
