//! The open-file limit: every connection a device or the backend holds is a file descriptor,
//! so a process raises its soft limit to the hard limit at start, and says plainly when even
//! the hard limit is below what a run needs.
//!
//! It also grows its table of descriptors before a run for the sockets the run will open.
//! Linux grows a process's table as descriptors are opened, doubling it, and in a process of
//! more than one thread each growth waits out an RCU grace period (`expand_fdtable`'s
//! `synchronize_rcu`) in the thread that opened the descriptor: 8 to 16 ms on the 2-core
//! machine, in which that thread's devices all fell late, at 8,192 and 16,384 sockets
//! (docs/scale.md, "The calendar, and late sends").

use std::fs::File;
use std::os::fd::RawFd;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors a process keeps for everything but connections (listeners, the registry's
/// files, the runtime): subtracted when saying how many connections fit.
pub const RESERVED: u64 = 100;

/// The limit in force after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit now in force (`None`: unlimited).
    pub soft: Option<u64>,
    /// The hard limit, the most an unprivileged process can raise to.
    pub hard: Option<u64>,
}

impl OpenFiles {
    /// Roughly how many sockets fit under the soft limit.
    pub fn connections(&self) -> Option<u64> {
        self.soft.map(|soft| soft.saturating_sub(RESERVED))
    }

    /// A message for a run that needs `sockets` descriptors, when the limit is too low for it.
    pub fn shortfall(&self, sockets: u64) -> Option<String> {
        let fits = self.connections()?;
        (sockets > fits).then(|| {
            format!(
                "this process may open {} files (hard limit {}), room for about {fits} connections, \
                 but {sockets} are needed: raise the hard limit (ulimit -Hn, limits.conf) or run \
                 fewer devices (--devices)",
                self.soft.map_or("unlimited".to_owned(), |s| s.to_string()),
                self.hard.map_or("unlimited".to_owned(), |h| h.to_string()),
            )
        })
    }

    /// Grows this process's table of descriptors now to hold `sockets` more beside
    /// [`RESERVED`] (as far as the soft limit allows), by asking for a descriptor numbered that
    /// high and closing it: the table never shrinks, so opening the sockets later never grows
    /// it. An error leaves the table to grow as it would have.
    pub fn reserve(&self, sockets: u64) -> std::io::Result<()> {
        let wanted = sockets.saturating_add(RESERVED);
        let highest = match self.soft {
            Some(soft) => wanted.min(soft.saturating_sub(1)),
            None => wanted,
        };
        let highest = RawFd::try_from(highest).unwrap_or(RawFd::MAX);
        let anything = File::open("/dev/null")?;
        // Closed at once; only the table's size stays.
        rustix::io::fcntl_dupfd_cloexec(&anything, highest)?;
        Ok(())
    }
}

/// Raises the soft open-file limit to the hard limit and returns what is in force. A failure
/// to raise leaves the old limit, which the result reports.
pub fn raise() -> OpenFiles {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        // A refusal (a hardened system) is not an error: the caller reports the limit in force.
        let _ = setrlimit(Resource::Nofile, raised);
    }
    let now = getrlimit(Resource::Nofile);
    OpenFiles {
        soft: now.current,
        hard: now.maximum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit() {
        let limit = raise();
        assert_eq!(limit.soft, limit.hard, "soft limit raised to the hard limit");
    }

    /// The reservation grows the table to hold the sockets asked for, and stops at the soft
    /// limit when more are asked for than it allows.
    #[test]
    fn a_reservation_grows_the_table_within_the_limit() {
        let limit = raise();
        limit.reserve(3_000).expect("reserved");
        let table = table_size();
        assert!(table > 3_000 + RESERVED, "the table holds {table} descriptors");
        if limit.soft.is_some() {
            limit.reserve(u64::MAX).expect("capped at the soft limit");
        }
    }

    /// The size of this process's descriptor table, from `/proc/self/status`'s `FDSize`.
    fn table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("FDSize:"))
            .and_then(|size| size.trim().parse().ok())
            .expect("FDSize")
    }

    #[test]
    fn a_shortfall_names_the_limit_and_the_way_out() {
        let limit = OpenFiles {
            soft: Some(20_000),
            hard: Some(20_000),
        };
        assert_eq!(limit.connections(), Some(19_900));
        assert_eq!(limit.shortfall(19_000), None);
        let message = limit.shortfall(50_000).expect("too many");
        assert!(
            message.contains("room for about 19900 connections, but 50000 are needed"),
            "{message}"
        );
        assert!(message.contains("run fewer devices (--devices)"), "{message}");
        assert_eq!(
            OpenFiles { soft: None, hard: None }.shortfall(u64::MAX),
            None,
            "unlimited"
        );
    }
}
