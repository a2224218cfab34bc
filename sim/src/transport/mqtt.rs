//! A lean MQTT 3.1.1 client connection for virtual devices: one byte stream
//! ([`super::stream`]) and one small buffer, encoding and decoding with rumqttc's packet
//! types. No event loop, no background task, no queues: the device's own task writes a packet
//! when its model says so and reads what arrives, so an idle connected device costs its
//! socket, its buffer and its task.

use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, PubAck, Publish, Subscribe, SubscribeFilter};
use rumqttc::mqttbytes::{self, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::stream::ByteStream;

/// The read buffer a connection starts with: a CONNACK, a SUBACK or a small message.
const READ_BUFFER_INITIAL: usize = 64;
/// A buffer grown past this for a large packet is given back once empty.
const BUFFER_KEEP_LIMIT: usize = 512;
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
}

impl From<io::Error> for TransportError {
    fn from(error: io::Error) -> Self {
        if super::exhausted_here(&error) {
            Self::Local
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
    pub async fn connect(
        target: SocketAddr,
        source: Option<IpAddr>,
        params: ConnectParams<'_>,
    ) -> Result<(Self, bool), TransportError> {
        let stream = ByteStream::tcp(target, source).await?;
        Self::open(stream, params).await
    }

    /// Opens an MQTT session over `stream`: sends CONNECT and waits for CONNACK.
    pub async fn open(stream: ByteStream, params: ConnectParams<'_>) -> Result<(Self, bool), TransportError> {
        let mut conn = Self {
            stream,
            buf: BytesMut::with_capacity(READ_BUFFER_INITIAL),
            next_pkid: 0,
        };
        let mut connect = Connect::new(params.client_id);
        connect.keep_alive = params.keep_alive_s;
        connect.clean_session = params.clean_session;
        if let Some((user, password)) = params.login {
            connect.set_login(user, password);
        }
        conn.send(&Packet::Connect(connect)).await?;
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

    /// Publishes; for QoS 1 returns the packet id whose PUBACK will follow.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS) -> Result<u16, TransportError> {
        let mut publish = Publish::new(topic, qos, payload.to_vec());
        if qos != QoS::AtMostOnce {
            publish.pkid = self.next_pkid();
        }
        let pkid = publish.pkid;
        self.send(&Packet::Publish(publish)).await?;
        Ok(pkid)
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
        loop {
            if let Some(packet) = self.decode()? {
                return Ok(Some(packet));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Reads the next packet as what a device acts on, small enough to wait on in every idle
    /// device's task (a whole `Packet` is a few hundred bytes; a publish is boxed here).
    ///
    /// Cancel-safe, like [`MqttConn::read`].
    pub async fn incoming(&mut self) -> Result<Option<Incoming>, TransportError> {
        loop {
            if let Some(packet) = self.decode()? {
                return Ok(Some(Incoming::from(packet)));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// A whole packet from the buffer, if one is there.
    fn decode(&mut self) -> Result<Option<Packet>, TransportError> {
        match Packet::read(&mut self.buf, MAX_PACKET_BYTES) {
            Ok(packet) => {
                if self.buf.is_empty() && self.buf.capacity() > BUFFER_KEEP_LIMIT {
                    self.buf = BytesMut::with_capacity(READ_BUFFER_INITIAL);
                }
                Ok(Some(packet))
            }
            Err(mqttbytes::Error::InsufficientBytes(needed)) => {
                self.buf.reserve(needed);
                Ok(None)
            }
            Err(_) => Err(TransportError::Protocol),
        }
    }

    /// Reads more bytes; false when the server closed the connection between packets.
    async fn fill(&mut self) -> Result<bool, TransportError> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return if self.buf.is_empty() {
                Ok(false)
            } else {
                Err(TransportError::Closed)
            };
        }
        Ok(true)
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
        Ok(())
    }
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

/// Encodes one packet into a buffer of its size.
fn encode(packet: &Packet) -> Result<BytesMut, TransportError> {
    let mut out = BytesMut::with_capacity(packet.size());
    packet
        .write(&mut out, MAX_PACKET_BYTES)
        .map_err(|_| TransportError::Protocol)?;
    Ok(out)
}
