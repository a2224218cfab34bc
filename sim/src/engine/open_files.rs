//! The open-file limit: every connection a device or the backend holds is a file descriptor,
//! so a process raises its soft limit to the hard limit at start, and says plainly when even
//! the hard limit is below what a run needs.

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
