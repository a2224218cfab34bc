//! A lean MQTT 3.1.1 client connection for virtual devices: one byte stream
//! ([`super::stream`]) and one small buffer, encoding and decoding with rumqttc's packet
//! types. No event loop, no background task, no queues: the device's own task writes a packet
//! when its model says so and reads what arrives, so an idle connected device costs its
//! socket and its task: the read buffer exists only while a packet is partly read, and a
//! packet to send only for the moment it is written.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, PubAck, Publish, Subscribe, SubscribeFilter};
use rumqttc::mqttbytes::{self, QoS};
use tokio::io::AsyncWriteExt;

use super::stream::ByteStream;
use super::tls::TlsFailure;
use crate::scratch;

/// The room a read starts with: a CONNACK, a SUBACK, a PUBACK or a small message.
const READ_ROOM: usize = 64;
/// The largest packet a device accepts (an OTA job, a config document).
pub const MAX_PACKET_BYTES: usize = 1 << 20;

/// Why a transport operation failed: small and copyable, so the device's hot path counts
/// errors by kind instead of formatting strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The socket failed (refused, reset, timed out, no address).
    #[error("socket: {0}")]
    Io(io::ErrorKind),
    /// This machine had no file, local port or memory left for the socket.
    #[error("out of open files, local ports or memory on this machine")]
    Local,
    /// The server answered CONNECT with a refusal.
    #[error("connect refused: {0:?}")]
    Refused(ConnectReturnCode),
    /// The server sent something that is not MQTT 3.1.1, or not what the exchange expects.
    #[error("protocol error")]
    Protocol,
    /// The server closed the connection.
    #[error("connection closed")]
    Closed,
    /// A TLS handshake failed, or the server refused the device's certificate after it.
    #[error("TLS: {}", .0.name())]
    Tls(TlsFailure),
}

impl From<io::Error> for TransportError {
    fn from(error: io::Error) -> Self {
        if super::exhausted_here(&error) {
            Self::Local
        } else if let Some(failure) = TlsFailure::of_io(&error) {
            Self::Tls(failure)
        } else {
            Self::Io(error.kind())
        }
    }
}

/// What a device connects with.
#[derive(Debug, Clone, Copy)]
pub struct ConnectParams<'a> {
    /// Client id.
    pub client_id: &'a str,
    /// Username and password, if any.
    pub login: Option<(&'a str, &'a str)>,
    /// Keep-alive, seconds (0 turns it off).
    pub keep_alive_s: u16,
    /// Clean session (false keeps subscriptions and queued messages across connections).
    pub clean_session: bool,
}

/// An open MQTT connection.
#[derive(Debug)]
pub struct MqttConn {
    stream: ByteStream,
    buf: BytesMut,
    next_pkid: u16,
}

impl MqttConn {
    /// Connects from `source` (port chosen by the system) to `target` over TCP, sends
    /// CONNECT and waits for CONNACK. Returns the connection and the session-present flag.
    ///
    /// The CONNECT is encoded before anything waits, so the future (held by every device
    /// whose connect is in flight, thousands in a burst) holds its bytes, not the packet.
    pub async fn connect(
        target: SocketAddr,
        source: Option<IpAddr>,
        params: ConnectParams<'_>,
    ) -> Result<(Self, bool), TransportError> {
        let hello = encode_connect(params)?;
        let stream = ByteStream::tcp(target, source).await?;
        Self::greet(stream, hello).await
    }

    /// Opens an MQTT session over `stream`: sends CONNECT and waits for CONNACK.
    pub async fn open(stream: ByteStream, params: ConnectParams<'_>) -> Result<(Self, bool), TransportError> {
        let hello = encode_connect(params)?;
        Self::greet(stream, hello).await
    }

    /// Sends an encoded CONNECT over `stream` and waits for CONNACK.
    async fn greet(stream: ByteStream, hello: BytesMut) -> Result<(Self, bool), TransportError> {
        let mut conn = Self {
            stream,
            buf: BytesMut::new(),
            next_pkid: 0,
        };
        conn.write(hello).await?;
        match conn.read().await? {
            Some(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => Ok((conn, ack.session_present)),
            Some(Packet::ConnAck(ack)) => Err(TransportError::Refused(ack.code)),
            Some(_) => Err(TransportError::Protocol),
            None => Err(TransportError::Closed),
        }
    }

    /// The local address the connection was made from.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        Ok(self.stream.local_addr()?)
    }

    /// A packet id for a QoS 1 exchange (never 0).
    pub fn next_pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    /// Publishes; for QoS 1 returns the packet id whose PUBACK will follow (0 for QoS 0).
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS) -> Result<u16, TransportError> {
        let started = self.start_publish(topic, payload, qos)?;
        self.finish(started).await
    }

    /// Starts a publish without waiting: the hot path of a busy fleet. The packet is encoded
    /// into a scratch buffer and written with one non-blocking write, so a publish allocates
    /// nothing and makes one syscall; only what the socket could not take at once is copied
    /// out, for [`MqttConn::finish`] to write. A caller's future that awaits the finish holds
    /// neither the topic nor the payload.
    pub fn start_publish(&mut self, topic: &str, payload: &[u8], qos: QoS) -> Result<Started, TransportError> {
        let pkid = if qos == QoS::AtMostOnce { 0 } else { self.next_pkid() };
        let mut packet = scratch::bytes();
        let encoded = encode_publish(&mut packet, topic, payload, qos, pkid);
        let rest = encoded.and_then(|()| self.try_write(&packet));
        scratch::give_bytes(packet);
        Ok(Started { pkid, rest: rest? })
    }

    /// Writes what a started publish left, if anything; its packet id.
    pub async fn finish(&mut self, started: Started) -> Result<u16, TransportError> {
        if let Some(rest) = started.rest {
            self.stream.write_all(&rest).await?;
        }
        self.flush_held().await?;
        Ok(started.pkid)
    }

    /// Writes what the socket takes now; the bytes it did not take, owned, to be awaited.
    fn try_write(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, TransportError> {
        let written = match self.stream.try_write(bytes) {
            Ok(written) => written,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => 0,
            Err(error) => return Err(error.into()),
        };
        Ok(bytes.get(written..).filter(|rest| !rest.is_empty()).map(<[u8]>::to_vec))
    }

    /// Subscribes to `filters`; returns the packet id whose SUBACK will follow.
    pub async fn subscribe(&mut self, filters: &[(&str, QoS)]) -> Result<u16, TransportError> {
        let pkid = self.next_pkid();
        let filters = filters
            .iter()
            .map(|(path, qos)| SubscribeFilter::new((*path).to_owned(), *qos))
            .collect();
        self.send(&Packet::Subscribe(Subscribe { pkid, filters })).await?;
        Ok(pkid)
    }

    /// Acknowledges a QoS 1 message the server sent.
    pub async fn ack(&mut self, pkid: u16) -> Result<(), TransportError> {
        let out = encode(&Packet::PubAck(PubAck::new(pkid)))?;
        self.write(out).await
    }

    /// Sends PINGREQ.
    pub async fn ping(&mut self) -> Result<(), TransportError> {
        let out = encode(&Packet::PingReq)?;
        self.write(out).await
    }

    /// Sends DISCONNECT and closes the socket.
    pub async fn disconnect(mut self) -> Result<(), TransportError> {
        let out = encode(&Packet::Disconnect)?;
        self.write(out).await?;
        self.stream.shutdown().await?;
        Ok(())
    }

    /// Reads the next packet; `None` when the server closed the connection between packets.
    ///
    /// Cancel-safe: bytes read before a cancellation stay in the buffer for the next call.
    pub async fn read(&mut self) -> Result<Option<Packet>, TransportError> {
        std::future::poll_fn(|cx| self.poll_read(cx)).await
    }

    /// Reads the next packet as what a device acts on, small enough to wait on in every idle
    /// device's task (a whole `Packet` is a few hundred bytes; a publish is boxed here).
    ///
    /// Cancel-safe, like [`MqttConn::read`].
    pub async fn incoming(&mut self) -> Result<Option<Incoming>, TransportError> {
        std::future::poll_fn(|cx| self.poll_incoming(cx)).await
    }

    /// The next packet as [`MqttConn::incoming`] gives it, if one is there; otherwise the task
    /// is woken when the socket is readable. The waker waits in the socket's registration,
    /// so a caller that polls this holds no future for it.
    pub fn poll_incoming(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Incoming>, TransportError>> {
        self.poll_read(cx).map_ok(|packet| packet.map(Incoming::from))
    }

    /// The next packet, if one is there; otherwise the task is woken when the socket is
    /// readable. What [`MqttConn::read`] and [`MqttConn::poll_incoming`] wait on.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Packet>, TransportError>> {
        loop {
            if let Some(packet) = self.decode()? {
                return Poll::Ready(Ok(Some(packet)));
            }
            if !std::task::ready!(self.poll_fill(cx))? {
                return Poll::Ready(Ok(None));
            }
        }
    }

    /// A whole packet from the buffer, if one is there.
    fn decode(&mut self) -> Result<Option<Packet>, TransportError> {
        match Packet::read(&mut self.buf, MAX_PACKET_BYTES) {
            Ok(packet) => {
                self.release_if_empty();
                Ok(Some(packet))
            }
            Err(mqttbytes::Error::InsufficientBytes(needed)) => {
                // Room for the rest of the packet and what may follow it: a read as small as
                // the bytes still missing (two, for a packet not yet begun) would take what the
                // server sent in several reads (a SUBACK and a PUBACK came in three).
                self.buf.reserve(needed.max(READ_ROOM));
                Ok(None)
            }
            Err(_) => Err(TransportError::Protocol),
        }
    }

    /// Gives the read buffer back when nothing is partly read: an idle connection holds none.
    fn release_if_empty(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Reads more bytes; false when the server closed the connection between packets.
    ///
    /// Waits for the socket to be readable before making room to read into, so a connection
    /// waiting for its server holds no buffer; a read never waits, so nothing is lost when the
    /// caller stops polling.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, TransportError>> {
        loop {
            std::task::ready!(self.stream.poll_read_ready(cx))?;
            if self.buf.capacity() == self.buf.len() {
                self.buf.reserve(READ_ROOM);
            }
            match self.stream.try_read_buf(&mut self.buf) {
                Ok(0) if self.buf.is_empty() => return Poll::Ready(Ok(false)),
                Ok(0) => return Poll::Ready(Err(TransportError::Closed)),
                Ok(_) => return Poll::Ready(Ok(true)),
                // A wake-up with nothing to read after all: wait again, holding nothing.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.release_if_empty(),
                Err(error) => return Poll::Ready(Err(error.into())),
            }
        }
    }

    /// Encodes and writes one packet.
    async fn send(&mut self, packet: &Packet) -> Result<(), TransportError> {
        let out = encode(packet)?;
        self.write(out).await
    }

    /// Writes encoded bytes. The encode buffer lives only for the call, so an idle connection
    /// holds no write buffer.
    async fn write(&mut self, out: BytesMut) -> Result<(), TransportError> {
        self.stream.write_all(&out).await?;
        self.flush_held().await
    }

    /// Sends what TLS still holds of the bytes written (its records the socket has not taken
    /// yet); nothing to do over TCP.
    async fn flush_held(&mut self) -> Result<(), TransportError> {
        if self.stream.wants_flush() {
            self.stream.flush().await?;
        }
        Ok(())
    }
}

/// A publish the socket took at once, or in part.
#[derive(Debug)]
pub struct Started {
    /// Its packet id (0 at QoS 0).
    pkid: u16,
    /// What the socket did not take: to be written before anything else.
    rest: Option<Vec<u8>>,
}

/// A packet from the server, as a device acts on it.
#[derive(Debug)]
pub enum Incoming {
    /// A PUBACK for this packet id.
    PubAck(u16),
    /// A message.
    Publish(Box<Publish>),
    /// Anything else (SUBACK, PINGRESP, ...): nothing for a device to do.
    Other,
}

impl From<Packet> for Incoming {
    fn from(packet: Packet) -> Self {
        match packet {
            Packet::PubAck(ack) => Self::PubAck(ack.pkid),
            Packet::Publish(publish) => Self::Publish(Box::new(publish)),
            _ => Self::Other,
        }
    }
}

/// Encodes a PUBLISH (MQTT 3.1.1, section 3.3) into `out`: what rumqttc's `Publish` encodes,
/// without building one (it owns its topic and payload, two allocations a message). Public
/// for the publish path's benchmark (`benches/mqtt_codec.rs`).
pub fn encode_publish(
    out: &mut Vec<u8>,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    pkid: u16,
) -> Result<(), TransportError> {
    let topic_len = u16::try_from(topic.len()).map_err(|_| TransportError::Protocol)?;
    let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let remaining = 2 + topic.len() + id_len + payload.len();
    if remaining > MAX_PACKET_BYTES {
        return Err(TransportError::Protocol);
    }
    out.clear();
    out.reserve(5 + remaining);
    out.push(0x30 | ((qos as u8) << 1));
    let mut left = remaining;
    loop {
        // Seven bits a byte, least significant first; the top bit says more follow. Under
        // MAX_PACKET_BYTES (2^20) this is at most three bytes.
        let byte = (left % 128) as u8;
        left /= 128;
        out.push(if left > 0 { byte | 0x80 } else { byte });
        if left == 0 {
            break;
        }
    }
    out.extend_from_slice(&topic_len.to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    if id_len > 0 {
        out.extend_from_slice(&pkid.to_be_bytes());
    }
    out.extend_from_slice(payload);
    Ok(())
}

/// Encodes the CONNECT a device opens its session with.
fn encode_connect(params: ConnectParams<'_>) -> Result<BytesMut, TransportError> {
    let mut connect = Connect::new(params.client_id);
    connect.keep_alive = params.keep_alive_s;
    connect.clean_session = params.clean_session;
    if let Some((user, password)) = params.login {
        connect.set_login(user, password);
    }
    encode(&Packet::Connect(connect))
}

/// Encodes one packet into a buffer of its size.
fn encode(packet: &Packet) -> Result<BytesMut, TransportError> {
    let mut out = BytesMut::with_capacity(packet.size());
    packet
        .write(&mut out, MAX_PACKET_BYTES)
        .map_err(|_| TransportError::Protocol)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-made PUBLISH is byte for byte what rumqttc encodes, and decodes back to the
    /// same message, across the remaining-length boundaries (one, two and three bytes).
    #[test]
    fn a_publish_encodes_as_rumqttc_encodes_it() {
        for payload_len in [0, 1, 64, 110, 111, 120, 16_000, 16_380, 16_400, 70_000] {
            for (qos, pkid) in [(QoS::AtMostOnce, 0), (QoS::AtLeastOnce, 513)] {
                let payload = vec![b'p'; payload_len];
                let mut ours = Vec::new();
                encode_publish(&mut ours, "t/sensors/TS-1", &payload, qos, pkid).expect("encodes");
                let mut publish = Publish::new("t/sensors/TS-1", qos, payload.clone());
                publish.pkid = pkid;
                let theirs = encode(&Packet::Publish(publish.clone())).expect("encodes");
                assert_eq!(ours, theirs.to_vec(), "payload {payload_len} bytes, {qos:?}");
                let mut buf = BytesMut::from(&ours[..]);
                let decoded = Packet::read(&mut buf, MAX_PACKET_BYTES).expect("decodes");
                assert_eq!(decoded, Packet::Publish(publish));
            }
        }
    }

    #[test]
    fn a_publish_too_large_for_mqtt_is_refused_not_sent() {
        let mut out = Vec::new();
        let long_topic = "t".repeat(usize::from(u16::MAX) + 1);
        assert_eq!(
            encode_publish(&mut out, &long_topic, b"x", QoS::AtMostOnce, 0),
            Err(TransportError::Protocol)
        );
        let huge = vec![0u8; MAX_PACKET_BYTES];
        assert_eq!(
            encode_publish(&mut out, "t", &huge, QoS::AtLeastOnce, 1),
            Err(TransportError::Protocol)
        );
    }

    /// Over a real socket: a QoS 1 publish arrives whole and in order after a QoS 0 one, and
    /// a large one the socket cannot take at once is finished by the awaited write.
    #[tokio::test]
    async fn publishes_reach_the_server_whole_over_a_real_socket() {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = BytesMut::new();
            let mut packets = Vec::new();
            while packets.len() < 4 {
                match Packet::read(&mut buf, MAX_PACKET_BYTES * 2) {
                    Ok(Packet::Connect(_)) => {
                        let ack = rumqttc::mqttbytes::v4::ConnAck::new(ConnectReturnCode::Success, false);
                        let out = encode(&Packet::ConnAck(ack)).expect("encodes");
                        socket.write_all(&out).await.expect("write");
                    }
                    Ok(packet) => packets.push(packet),
                    Err(mqttbytes::Error::InsufficientBytes(_)) => {
                        if socket.read_buf(&mut buf).await.expect("read") == 0 {
                            break;
                        }
                    }
                    Err(error) => panic!("bad packet: {error:?}"),
                }
            }
            packets
        });
        let params = ConnectParams {
            client_id: "d",
            login: None,
            keep_alive_s: 60,
            clean_session: true,
        };
        let (mut conn, _) = MqttConn::connect(addr, None, params).await.expect("connect");
        assert_eq!(conn.publish("a", b"zero", QoS::AtMostOnce).await, Ok(0));
        assert_eq!(conn.publish("b", b"one", QoS::AtLeastOnce).await, Ok(1));
        // Larger than a loopback socket's send buffer takes at once.
        let large = vec![b'L'; MAX_PACKET_BYTES - 16];
        assert_eq!(conn.publish("c", &large, QoS::AtLeastOnce).await, Ok(2));
        assert_eq!(conn.publish("d", b"after", QoS::AtMostOnce).await, Ok(0));
        let packets = server.await.expect("server");
        let topics: Vec<(String, usize)> = packets
            .iter()
            .map(|p| match p {
                Packet::Publish(publish) => (publish.topic.clone(), publish.payload.len()),
                other => panic!("not a publish: {other:?}"),
            })
            .collect();
        assert_eq!(
            topics,
            [
                ("a".to_owned(), 4),
                ("b".to_owned(), 3),
                ("c".to_owned(), large.len()),
                ("d".to_owned(), 5)
            ]
        );
    }
}
