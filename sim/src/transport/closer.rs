//! Where devices' connections end: one thread for the whole process, at the lowest priority,
//! that resets those cut off and says goodbye on and closes those of devices that leave, so a
//! mass outage or decommission does not hold up the devices still running.
//!
//! Closing a TCP socket is the kernel's work on the closing thread, and over loopback that
//! includes the server's side of the packet: about 10 µs a socket here. An outage that cut
//! off 4,000 devices at one instant left some 20 ms of it on each shard's thread, and 100 to
//! 170 reports of the devices still online, due in those milliseconds, went out late
//! (docs/scale.md, "The calendar, and late sends"). Handed here, a cut-off costs its shard a
//! channel push; the resets run at nice 19, in time the shards leave over, and never starve:
//! a nice-19 thread still gets its small share of a busy core.
//!
//! A decommission was worse: 4,000 devices leaving at once wrote their DISCONNECTs and closed
//! on the shards' threads, and the others' publish p99 in that second was 77 to 89 ms; with the
//! writes here too, 10 to 19 ms.
//!
//! A connection waits here only until the thread's turn (the 4,000 were all reset within 0.1 s
//! of the outage), so a server sees the device gone a little after the instant it was cut
//! off, as it would see a real link fail; its file stays open until then.

use std::sync::OnceLock;
use std::sync::mpsc::{Sender, channel};

use bytes::BytesMut;

use super::stream::ByteStream;

/// The closer thread's niceness: the lowest priority a normal thread can have.
const NICENESS: i32 = 19;

/// What the closer thread does with a connection.
#[derive(Debug)]
enum Job {
    /// Resets it: a device cut off.
    Reset(ByteStream),
    /// Writes its last words if it takes them now (a plain TCP stream's DISCONNECT), then
    /// closes it (FIN, the end of the stream): a device that says goodbye.
    Close(ByteStream, BytesMut),
}

impl Job {
    fn run(self) {
        match self {
            Self::Reset(stream) => {
                stream.abort_on_close();
                drop(stream);
            }
            Self::Close(mut stream, last_words) => {
                // Not taken (the server has not read what it was sent): it closes without
                // them, as the device would have given up.
                if !last_words.is_empty() {
                    let _ = stream.try_write(&last_words);
                }
                drop(stream);
            }
        }
    }
}

/// Resets `stream` (no goodbye: [`ByteStream::abort_on_close`]) on the closer thread, or here
/// if that thread cannot be had.
pub fn reset_later(stream: ByteStream) {
    hand_over(Job::Reset(stream));
}

/// Writes `last_words` on `stream` (if the socket takes them at once) and closes it as usual
/// (its end of stream after all it was given), on the closer thread, or here if that thread
/// cannot be had. Over TLS the caller writes them itself (its records need the session) and
/// passes none.
pub fn close_later(stream: ByteStream, last_words: BytesMut) {
    hand_over(Job::Close(stream, last_words));
}

fn hand_over(job: Job) {
    match closer() {
        Some(closer) => {
            if let Err(unsent) = closer.send(job) {
                unsent.0.run();
            }
        }
        None => job.run(),
    }
}

/// The closer thread's queue, started on first use; `None` when no thread could be started
/// (then every caller closes in place).
fn closer() -> Option<&'static Sender<Job>> {
    static CLOSER: OnceLock<Option<Sender<Job>>> = OnceLock::new();
    CLOSER
        .get_or_init(|| {
            let (to_close, queue) = channel::<Job>();
            std::thread::Builder::new()
                .name("fleetsim-closer".into())
                .spawn(move || {
                    // Linux keeps a niceness per thread: this lowers only the closer. Refused
                    // (a container without the right), it closes at the usual priority.
                    let _ = rustix::process::setpriority_process(None, NICENESS);
                    for job in queue {
                        job.run();
                    }
                })
                .ok()
                .map(|_| to_close)
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// A connection handed to the closer is reset (the server reads ECONNRESET, not an end of
    /// stream), by a thread that runs at nice 19.
    #[tokio::test]
    async fn a_handed_over_connection_is_reset_by_a_nice_19_thread() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stream, accepted) = tokio::join!(ByteStream::tcp(addr, None), listener.accept());
        let (mut server, _) = accepted.expect("accept");
        reset_later(stream.expect("connect"));
        let mut rest = [0u8; 8];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), server.read(&mut rest)).await;
        assert_eq!(
            read.expect("reset within 10 s").map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionReset),
            "the server sees the connection reset"
        );

        let niceness = std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
            .find_map(|stat| {
                // pid (comm) state ppid ...: the niceness is the 19th field, the 17th after
                // the name's closing parenthesis.
                let (_, after) = stat.rsplit_once(") ")?;
                (stat.contains("(fleetsim-closer)")).then(|| after.split(' ').nth(16)?.parse::<i32>().ok())?
            });
        assert_eq!(niceness, Some(NICENESS), "the closer thread runs at nice 19");
    }
}
