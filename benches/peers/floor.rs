//! The peers benchmark's floor at fleetsim's packets (`benches/peers.sh`, tool `packets`).
//!
//! The other floor, `mosquitto_pub -l`, writes its 10,000 messages a second on one connection,
//! where the kernel packs many into a TCP segment and acknowledges them together. fleetsim's
//! 1,000 clients each send theirs on their own connection every 100 ms: a segment per message,
//! its acknowledgement, and at QoS 1 a PUBACK and the acknowledgement of that. This program sends
//! the same MQTT packets as fleetsim's peers work (the same sizes: a 19-character client id, a
//! CONNECT and a SUBSCRIBE in one write, 95-byte PUBLISHes at QoS 1) on as many connections, and
//! does as little else as a program can: one thread that wakes every 4 ms (fleetsim's grid),
//! takes the readiness events since the last wake from epoll (mio's), reads what the broker
//! sent, then writes the reports now due. One write per message, one read per PUBACK, no timers,
//! no tasks, nothing parsed (it counts the bytes the broker owes), every packet encoded before
//! the run. So its CPU is what the kernel charges for those packets and their epoll on the
//! machine, and little more. It watches no command topic and measures no latency.
//!
//! ```text
//! peers-floor --port 1883 --work qos0|qos1|idle [--clients N] [--rate PER_SECOND]
//! ```
//!
//! Clients arrive at `--rate` a second (200 in the message works, as fleetsim's 5 s ramp of
//! 1,000; 20,000 idle). It runs until it is stopped, and exits with an error if the broker
//! refuses or drops a client. It never sends PINGREQ, so the broker drops its clients 90 s after
//! they connect (1.5 times the 60 s keep-alive): longer than any work of the benchmark holds them.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fleetsim::transport::source::{LOOPBACK_BLOCK, SourceAddrs};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, Packet, Publish, Subscribe};
use socket2::{Domain, Socket, Type};

/// How often the floor wakes: fleetsim's wake grid.
const TICK: Duration = Duration::from_millis(4);
/// Each client's report interval in the message works: 10 a second.
const INTERVAL: Duration = Duration::from_millis(100);
/// A report's payload, as the peers work's.
const PAYLOAD_BYTES: usize = 64;
/// The broker's answer to a client's hello: CONNACK (4 bytes) and SUBACK (5).
const HELLO_ANSWER_BYTES: usize = 9;
/// Readiness events taken at once.
const EVENTS: usize = 1024;
/// A PUBACK's length.
const PUBACK_BYTES: usize = 4;
/// The keep-alive fleetsim's peers clients ask for.
const KEEP_ALIVE_S: u16 = 60;

#[derive(Clone, Copy, PartialEq)]
enum Work {
    Qos0,
    Qos1,
    Idle,
}

impl Work {
    /// The QoS of the work's reports: the peers' idle clients report at QoS 1 (every 15
    /// minutes, so once in the benchmark: when they have connected).
    fn qos(self) -> QoS {
        match self {
            Work::Qos0 => QoS::AtMostOnce,
            Work::Qos1 | Work::Idle => QoS::AtLeastOnce,
        }
    }
}

struct Options {
    port: u16,
    work: Work,
    clients: usize,
    rate_per_s: u32,
}

/// One client: its socket and what it is waiting for.
struct Client {
    stream: TcpStream,
    /// Its CONNECT and SUBSCRIBE, until they are written (the connection may still be opening).
    hello: Option<Vec<u8>>,
    /// Bytes the broker still owes it: the hello's answer, then a PUBACK for each report.
    owed_bytes: usize,
    /// Whether the broker has answered its hello.
    ready: bool,
    /// Its PUBLISH, encoded once; at QoS 1 the packet id is rewritten before each write.
    publish: Vec<u8>,
    packet_id: u16,
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!(
                "error: {message}\nusage: peers-floor --port PORT --work qos0|qos1|idle [--clients N] [--rate PER_SECOND]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let (mut port, mut work, mut clients, mut rate_per_s) = (None, None, None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |expected: &str| format!("{flag} {value:?}: expected {expected}");
        match flag.as_str() {
            "--port" => port = Some(value.parse().map_err(|_| bad("a port number"))?),
            "--work" => {
                work = Some(match value.as_str() {
                    "qos0" => Work::Qos0,
                    "qos1" => Work::Qos1,
                    "idle" => Work::Idle,
                    _ => return Err(bad("qos0, qos1 or idle")),
                })
            }
            "--clients" => clients = Some(value.parse().map_err(|_| bad("a number of clients"))?),
            "--rate" => rate_per_s = Some(value.parse().map_err(|_| bad("clients a second, above 0"))?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let work = work.ok_or("--work is required")?;
    let idle = work == Work::Idle;
    let rate_per_s = rate_per_s.unwrap_or(if idle { 20_000 } else { 200 });
    if rate_per_s == 0 {
        return Err("--rate 0: expected clients a second, above 0".into());
    }
    Ok(Options {
        port: port.ok_or("--port is required")?,
        work,
        clients: clients.unwrap_or(if idle { 15_000 } else { 1_000 }),
        rate_per_s,
    })
}

fn run(options: &Options) -> Result<(), String> {
    let broker = SocketAddr::from((Ipv4Addr::LOCALHOST, options.port));
    let mut poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    let mut events = Events::with_capacity(EVENTS);
    let mut clients: Vec<Client> = Vec::with_capacity(options.clients);
    // Reports due, earliest first: every client has the same interval, so a report put at the
    // back for one interval after it was due keeps the queue in order.
    let mut due: VecDeque<(Instant, usize)> = VecDeque::new();
    let mut buf = [0u8; 1024];
    let start = Instant::now();
    let mut wake = start;
    loop {
        wake += TICK;
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        let now = Instant::now();

        let arrived = (now.duration_since(start).as_secs_f64() * f64::from(options.rate_per_s)) as usize;
        while clients.len() < arrived.min(options.clients) {
            let index = clients.len();
            let mut client = Client::open(broker, &poll, index, options.work)
                .map_err(|e| format!("client {index}: could not open a connection: {e}"))?;
            // On loopback the connection is mostly open already; if not, its writable event says when.
            client
                .write_hello()
                .map_err(|e| format!("client {index}: hello: {e}"))?;
            clients.push(client);
        }

        while let Some(&(at, index)) = due.front() {
            if at > now {
                break;
            }
            due.pop_front();
            clients[index]
                .report(options.work)
                .map_err(|e| format!("client {index}: report: {e}"))?;
            due.push_back((at + INTERVAL, index));
        }

        // What happened since the last wake, in batches of at most EVENTS.
        loop {
            poll.poll(&mut events, Some(Duration::ZERO))
                .map_err(|e| format!("epoll: {e}"))?;
            for event in &events {
                let index = event.token().0;
                let client = &mut clients[index];
                if event.is_writable() {
                    client
                        .write_hello()
                        .map_err(|e| format!("client {index}: hello: {e}"))?;
                }
                if event.is_readable() && client.read_owed(&mut buf).map_err(|e| format!("client {index}: {e}"))? {
                    // The broker has answered the hello: the client's first report goes now, as
                    // fleetsim's devices' do (idle ones too), and in the message works one every
                    // interval after it. Pushed after the due reports', it keeps the queue in order.
                    client
                        .report(options.work)
                        .map_err(|e| format!("client {index}: report: {e}"))?;
                    if options.work != Work::Idle {
                        due.push_back((now + INTERVAL, index));
                    }
                }
            }
            if events.iter().count() < EVENTS {
                break;
            }
        }
    }
}

impl Client {
    /// A client of `work` whose connection to `broker` is opening, watched by `poll`.
    fn open(broker: SocketAddr, poll: &Poll, index: usize, work: Work) -> io::Result<Client> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM.nonblocking(), None)?;
        // fleetsim's own source spreading towards loopback: client i from 127.0.0.1 + i. Without
        // it each connect searches the ports left between 127.0.0.1 and the broker, which took
        // 60% of this floor's CPU over a storm of 15,000.
        let source = SourceAddrs::new(LOOPBACK_BLOCK).for_device(index as u64);
        socket.bind(&SocketAddr::new(source, 0).into())?;
        // As fleetsim's: a report leaves at once, not when the last one's ACK is back.
        socket.set_tcp_nodelay(true)?;
        match socket.connect(&broker.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) => {}
            Err(e) => return Err(e),
        }
        let mut stream = TcpStream::from_std(socket.into());
        poll.registry()
            .register(&mut stream, Token(index), Interest::READABLE | Interest::WRITABLE)?;
        Ok(Client::new(stream, index, work))
    }

    fn new(stream: TcpStream, index: usize, work: Work) -> Client {
        // fleetsim's peers clients are "PM-" and 16 hex digits.
        let id = format!("PF-{index:016X}");
        let mut hello = encode(&Packet::Connect({
            let mut connect = Connect::new(id.as_str());
            connect.clean_session = true;
            connect.keep_alive = KEEP_ALIVE_S;
            connect
        }));
        let mut subscribe = Subscribe::new(format!("fleetsim/meters/{id}/commands"), QoS::AtLeastOnce);
        subscribe.pkid = 1; // a SUBSCRIBE's id is never 0
        hello.extend(encode(&Packet::Subscribe(subscribe)));
        let mut publish = Publish::new(format!("peers/{id}"), work.qos(), vec![b'x'; PAYLOAD_BYTES]);
        publish.pkid = u16::from(work.qos() == QoS::AtLeastOnce);
        let publish = encode(&Packet::Publish(publish));
        Client {
            stream,
            hello: Some(hello),
            owed_bytes: HELLO_ANSWER_BYTES,
            ready: false,
            publish,
            packet_id: 0,
        }
    }

    /// Writes the hello if the connection is open: whether it has gone.
    fn write_hello(&mut self) -> io::Result<bool> {
        let Some(hello) = &self.hello else { return Ok(true) };
        match self.stream.write(hello) {
            Ok(n) if n == hello.len() => {
                self.hello = None;
                Ok(true)
            }
            Ok(n) => Err(io::Error::other(format!("wrote {n} of {} bytes", hello.len()))),
            // Still connecting (the broker's backlog was full, its SYN waits to be sent again).
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads what the broker sent (edge-triggered: a read that fills less than `buf` has taken
    /// all there was): whether that completed the answer to the hello.
    fn read_owed(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        loop {
            let n = match self.stream.read(buf) {
                Ok(0) => return Err(io::Error::other("the broker closed the connection")),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            if n > self.owed_bytes {
                return Err(io::Error::other(format!(
                    "the broker sent {n} bytes, {} owed",
                    self.owed_bytes
                )));
            }
            self.owed_bytes -= n;
            if self.owed_bytes == 0 && !self.ready {
                self.ready = true;
                return Ok(true);
            }
            if n < buf.len() {
                return Ok(false);
            }
        }
    }

    /// Writes the next report: one write.
    fn report(&mut self, work: Work) -> io::Result<()> {
        if work.qos() == QoS::AtLeastOnce {
            self.packet_id = self.packet_id % u16::MAX + 1;
            // A QoS 1 PUBLISH ends with its packet id and then the payload.
            let at = self.publish.len() - PAYLOAD_BYTES - 2;
            self.publish[at..at + 2].copy_from_slice(&self.packet_id.to_be_bytes());
            self.owed_bytes += PUBACK_BYTES;
        }
        match self.stream.write(&self.publish) {
            Ok(n) if n == self.publish.len() => Ok(()),
            Ok(n) => Err(io::Error::other(format!("wrote {n} of {} bytes", self.publish.len()))),
            Err(e) => Err(e),
        }
    }
}

fn encode(packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    // The packets above are a few dozen bytes, far under the limit: encoding cannot fail.
    #[allow(clippy::unwrap_used)]
    packet.write(&mut out, 1 << 16).unwrap();
    out.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client of `work` and the far end of its connection.
    fn client(work: Work) -> (Client, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (
            Client::new(TcpStream::from_std(stream), 0x2A, work),
            listener.accept().unwrap().0,
        )
    }

    #[test]
    fn packets_are_the_size_of_fleetsims() {
        // fleetsim's peers QoS 1 client, from strace: an 84-byte hello, 95-byte reports.
        let (c, _far) = client(Work::Qos1);
        assert_eq!(c.hello.as_ref().unwrap().len(), 84);
        assert_eq!(c.publish.len(), 95);
        assert_eq!(client(Work::Qos0).0.publish.len(), 93);
        assert_eq!(client(Work::Idle).0.publish.len(), 95);
    }

    #[test]
    fn a_qos1_report_carries_the_next_packet_id() {
        let (mut c, mut far) = client(Work::Qos1);
        c.packet_id = u16::MAX - 1;
        c.report(Work::Qos1).unwrap();
        c.report(Work::Qos1).unwrap();
        let mut sent = vec![0; 2 * c.publish.len()];
        far.read_exact(&mut sent).unwrap();
        let mut bytes = BytesMut::from(&sent[..]);
        let Packet::Publish(publish) = Packet::read(&mut bytes, 1 << 16).unwrap() else {
            panic!("not a PUBLISH")
        };
        assert_eq!(publish.pkid, u16::MAX);
        let Packet::Publish(publish) = Packet::read(&mut bytes, 1 << 16).unwrap() else {
            panic!("not a PUBLISH")
        };
        assert_eq!(publish.pkid, 1, "wraps past 65,535 to 1, never 0");
        assert_eq!(publish.topic, "peers/PF-000000000000002A");
        assert_eq!(publish.payload.len(), PAYLOAD_BYTES);
    }
}
