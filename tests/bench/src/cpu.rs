//! CPU time of this whole process (all threads, user + system) from `getrusage`, so a
//! part can report CPU per message next to its rate.

use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};

/// User + system CPU time used by the process so far (zero if the call fails, which
/// it does not on Linux; a zero shows up as an obviously wrong 0 µs/msg, not a panic).
pub fn process_cpu() -> Duration {
    getrusage(UsageWho::RUSAGE_SELF).map_or(Duration::ZERO, |u| {
        let t = |tv: nix::sys::time::TimeVal| {
            Duration::from_secs(tv.tv_sec().max(0) as u64)
                + Duration::from_micros(tv.tv_usec().max(0) as u64)
        };
        t(u.user_time()) + t(u.system_time())
    })
}
