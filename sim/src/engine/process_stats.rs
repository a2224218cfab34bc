//! What the harness process itself costs: its resident memory, read from `/proc/self/status`
//! (Linux), and the CPU time it has used, so a run can say how many bytes each connected
//! device takes and how much of a core its messages cost.

use std::time::Duration;

/// A process's memory and CPU at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessStats {
    /// Resident memory, bytes (0 where unknown).
    pub rss_bytes: u64,
    /// CPU time used since the process started.
    pub cpu: Duration,
}

impl ProcessStats {
    /// This process's, now.
    pub fn now() -> Self {
        Self {
            rss_bytes: rss_bytes().unwrap_or(0),
            cpu: cpu_time(),
        }
    }
}

/// CPU time (user and system, all threads) the process has used.
pub fn cpu_time() -> Duration {
    let spent = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(spent.tv_sec).unwrap_or(0),
        u32::try_from(spent.tv_nsec).unwrap_or(0),
    )
}

/// The process's resident set size in bytes (`VmRSS`), or `None` where `/proc` does not say.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

/// What the run ran on, for the summary: cores, memory, the open-file limit, the OS.
pub fn machine_facts() -> serde_json::Value {
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| kib_field(&text, "MemTotal:"));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|k| k.trim().to_owned());
    serde_json::json!({
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "memory_bytes": memory_bytes,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "kernel": kernel,
    })
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    kib_field(status, "VmRSS:")
}

/// A `/proc` field written in kB (`VmRSS:   2048 kB`), in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line
        .trim_start_matches(key)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tfleetsim\nVmPeak:\t  123 kB\nVmRSS:\t   2048 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        if cfg!(target_os = "linux") {
            assert!(rss_bytes().is_some_and(|b| b > 0));
        }
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_time();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_time() > before);
    }
}
