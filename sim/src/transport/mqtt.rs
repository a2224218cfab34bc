//! A lean MQTT 3.1.1 or 5 client connection for virtual devices: one byte stream
//! ([`super::stream`]) and one small buffer, encoding and decoding with rumqttc's packet
//! types (its v4 and v5 codecs; the hot path's PUBLISH is encoded here). No event loop, no
//! background task, no queues: the device's own task writes a packet when its model says so
//! and reads what arrives, so an idle connected device costs its socket and its task: the
//! read buffer exists only while a packet is partly read, and a packet to send only for the
//! moment it is written.
//!
//! MQTT 5 (a model's `[mqtt] version = 5`): the CONNECT carries the session expiry interval
//! and the model's user properties; a refused CONNACK, a PUBACK's failure and a server's
//! DISCONNECT are read with their reason codes ([`Reason`]); telemetry carries the model's
//! message expiry and user properties, and goes under topic alias 1 after its first message
//! when the model asks and the server allows aliases. What a v5 server sends is handed on as
//! the 3.1.1 shapes the devices already read.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, Packet, PubAck, Publish, SubAck, Subscribe, SubscribeFilter, SubscribeReasonCode,
};
use rumqttc::mqttbytes::{self, QoS};
use rumqttc::v5::mqttbytes::v5 as mqtt5;
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
    #[error("connect refused: {}", .0.name())]
    Refused(Reason),
    /// The server sent something that is not MQTT, or not what the exchange expects.
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

/// Why a server refused or ended something, as MQTT 5's reason codes say it (a 3.1.1 CONNACK's
/// return codes map onto the same): small and copyable, counted by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not authorized (5.0 0x87, 3.1.1 5).
    NotAuthorized,
    /// Bad user name or password (0x86, 3.1.1 4).
    BadLogin,
    /// The server is unavailable or busy (0x88, 0x89, 3.1.1 3).
    Unavailable,
    /// Banned (0x8A).
    Banned,
    /// A quota or the connection rate was exceeded (0x97, 0x9F).
    QuotaExceeded,
    /// Another connection took over the session (a DISCONNECT's 0x8E).
    SessionTakenOver,
    /// The server is shutting down (a DISCONNECT's 0x8B).
    ShuttingDown,
    /// The server saw no packet for 1.5 keep-alives (a DISCONNECT's 0x8D).
    KeepAliveTimeout,
    /// Any other code: the protocol version, the client id, a malformed packet, a topic.
    Other(u8),
}

impl Reason {
    /// The reason MQTT 5 code `code` gives.
    pub fn of(code: u8) -> Self {
        match code {
            0x87 => Self::NotAuthorized,
            0x86 => Self::BadLogin,
            0x88 | 0x89 => Self::Unavailable,
            0x8A => Self::Banned,
            0x97 | 0x9F => Self::QuotaExceeded,
            0x8E => Self::SessionTakenOver,
            0x8B => Self::ShuttingDown,
            0x8D => Self::KeepAliveTimeout,
            other => Self::Other(other),
        }
    }

    /// The reason of a 3.1.1 CONNACK's refusal.
    pub fn of_v4(code: ConnectReturnCode) -> Self {
        match code {
            ConnectReturnCode::NotAuthorized => Self::NotAuthorized,
            ConnectReturnCode::BadUserNamePassword => Self::BadLogin,
            ConnectReturnCode::ServiceUnavailable => Self::Unavailable,
            ConnectReturnCode::RefusedProtocolVersion => Self::Other(0x84),
            ConnectReturnCode::BadClientId => Self::Other(0x85),
            ConnectReturnCode::Success => Self::Other(0),
        }
    }

    /// As reports name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotAuthorized => "not authorized",
            Self::BadLogin => "bad user name or password",
            Self::Unavailable => "server unavailable or busy",
            Self::Banned => "banned",
            Self::QuotaExceeded => "quota or rate exceeded",
            Self::SessionTakenOver => "session taken over",
            Self::ShuttingDown => "server shutting down",
            Self::KeepAliveTimeout => "keep alive timeout",
            Self::Other(_) => "another reason",
        }
    }
}

/// The MQTT version a device speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    #[default]
    V311,
    /// MQTT 5.
    V5,
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
    /// Clean session (false keeps subscriptions and queued messages across connections); in
    /// MQTT 5, clean start.
    pub clean_session: bool,
    /// MQTT 5's session and properties, for a v5 device; `None` speaks 3.1.1.
    pub v5: Option<V5Connect<'a>>,
    /// A subscription sent in the CONNECT's write, without waiting for the CONNACK (MQTT
    /// 3.1.1, 3.1.4, and 5 alike: a server that refuses the CONNECT acts on nothing after it):
    /// a connect then makes one write fewer. Its packet id is 1. The connect waits for its
    /// SUBACK too ([`MqttConn::take_suback`]), unless the server sends something else first.
    pub subscribe: Option<(&'a str, QoS)>,
}

impl<'a> ConnectParams<'a> {
    /// A clean MQTT 3.1.1 session as `client_id`, with no login and nothing subscribed.
    #[cfg(test)]
    pub(crate) fn plain(client_id: &'a str, keep_alive_s: u16) -> Self {
        Self {
            client_id,
            login: None,
            keep_alive_s,
            clean_session: true,
            v5: None,
            subscribe: None,
        }
    }
}

/// What an MQTT 5 device's CONNECT carries beyond 3.1.1's.
#[derive(Debug, Clone, Copy)]
pub struct V5Connect<'a> {
    /// How long the server keeps the session after the connection ends, seconds (0: it ends
    /// with the connection).
    pub session_expiry_s: u32,
    /// User properties.
    pub user_properties: &'a [(String, String)],
    /// Telemetry goes under a topic alias after its first message, if the server allows.
    pub topic_alias: bool,
}

/// MQTT 5's topic alias for telemetry, as a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alias {
    /// None: the model did not ask, or the server allows none (and over 3.1.1).
    Off,
    /// Telemetry may go under alias 1 (the model asked, the server allows); not named yet.
    Allowed,
    /// Alias 1 is set to the telemetry topic (its first message named both).
    Set,
}

/// An open MQTT connection.
#[derive(Debug)]
pub struct MqttConn {
    stream: ByteStream,
    buf: BytesMut,
    next_pkid: u16,
    /// It speaks MQTT 5.
    v5: bool,
    /// MQTT 5: whether telemetry goes under topic alias 1, and whether it is set yet.
    alias: Alias,
    /// How many QoS 1 messages the server takes unacknowledged (MQTT 5's Receive Maximum from
    /// its CONNACK; no limit for 3.1.1).
    send_quota: u16,
    /// The keep-alive the CONNECT asked for, seconds (0: none).
    keep_alive_s: u16,
}

impl MqttConn {
    /// Connects from `source` (port chosen by the system) to `target` over TCP, sends
    /// CONNECT and waits for CONNACK. Returns the connection and what the server answered.
    ///
    /// The CONNECT is encoded before anything waits, so the future (held by every device
    /// whose connect is in flight, thousands in a burst) holds its bytes, not the packet.
    pub async fn connect(
        target: SocketAddr,
        source: Option<IpAddr>,
        params: ConnectParams<'_>,
    ) -> Result<(Self, Greeting), TransportError> {
        let hello = encode_connect(params)?;
        let stream = ByteStream::tcp(target, source).await?;
        Self::greet(stream, hello).await
    }

    /// Opens an MQTT session over `stream`: sends CONNECT and waits for CONNACK.
    pub async fn open(stream: ByteStream, params: ConnectParams<'_>) -> Result<(Self, Greeting), TransportError> {
        let hello = encode_connect(params)?;
        Self::greet(stream, hello).await
    }

    /// Sends an encoded CONNECT over `stream` and waits for CONNACK (and the SUBACK of a
    /// subscription sent with it).
    async fn greet(stream: ByteStream, hello: Hello) -> Result<(Self, Greeting), TransportError> {
        let Hello {
            bytes: hello,
            version,
            alias_wanted,
            assigned_wanted,
            subscribed,
            keep_alive_s,
        } = hello;
        let mut conn = Self {
            stream,
            buf: BytesMut::new(),
            // The subscription sent with the CONNECT took packet id 1.
            next_pkid: u16::from(subscribed),
            v5: version == Version::V5,
            alias: Alias::Off,
            send_quota: u16::MAX,
            keep_alive_s,
        };
        conn.write(hello).await?;
        let session_present = conn.read_connack(assigned_wanted, alias_wanted).await?;
        let subscription_refused = subscribed && conn.take_suback().await?;
        Ok((
            conn,
            Greeting {
                session_present,
                subscription_refused,
            },
        ))
    }

    /// Reads the CONNACK: the session-present flag if the server accepted the CONNECT.
    async fn read_connack(&mut self, assigned_wanted: bool, alias_wanted: bool) -> Result<bool, TransportError> {
        if self.v5 {
            return match std::future::poll_fn(|cx| self.poll_read_v5(cx)).await? {
                Some(mqtt5::Packet::ConnAck(ack)) if ack.code == mqtt5::ConnectReturnCode::Success => {
                    // A client that sent no id is told the one the server assigned (MQTT 5,
                    // 3.2.2.3.7); without it the session has no name.
                    let assigned = ack
                        .properties
                        .as_ref()
                        .and_then(|p| p.assigned_client_identifier.as_ref());
                    if assigned_wanted && assigned.is_none_or(String::is_empty) {
                        return Err(TransportError::Protocol);
                    }
                    let aliases = ack.properties.as_ref().and_then(|p| p.topic_alias_max).unwrap_or(0);
                    if alias_wanted && aliases >= 1 {
                        self.alias = Alias::Allowed;
                    }
                    // Absent, it is 65,535 (MQTT 5, 3.2.2.3.3); 0 is a protocol error.
                    self.send_quota = ack.properties.as_ref().and_then(|p| p.receive_max).unwrap_or(u16::MAX);
                    if self.send_quota == 0 {
                        return Err(TransportError::Protocol);
                    }
                    Ok(ack.session_present)
                }
                Some(mqtt5::Packet::ConnAck(ack)) => Err(TransportError::Refused(Reason::of(connack_code(ack.code)))),
                Some(_) => Err(TransportError::Protocol),
                None => Err(TransportError::Closed),
            };
        }
        match self.read().await? {
            Some(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => Ok(ack.session_present),
            Some(Packet::ConnAck(ack)) => Err(TransportError::Refused(Reason::of_v4(ack.code))),
            Some(_) => Err(TransportError::Protocol),
            None => Err(TransportError::Closed),
        }
    }

    /// Waits for the SUBACK of the subscription sent with the CONNECT and takes it, so the
    /// device's first packet acknowledges it. Sent before it, that packet (a report, as soon
    /// as the device connects) would find the SUBACK unacknowledged at a server that leaves
    /// Nagle's algorithm on (Mosquitto's default): its answer would wait for this side's
    /// delayed ACK, about 40 ms, once a connect. A packet the server sends before the SUBACK
    /// (MQTT 3.1.1, 3.8.4 allows a PUBLISH first; a resumed MQTT 5 session's queue may come
    /// first) is left for the device's reads, which then read the SUBACK like any other.
    /// True when the SUBACK refused the subscription.
    async fn take_suback(&mut self) -> Result<bool, TransportError> {
        std::future::poll_fn(|cx| self.poll_take_suback(cx)).await
    }

    fn poll_take_suback(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, TransportError>> {
        loop {
            match mqttbytes::check(self.buf.iter(), MAX_PACKET_BYTES) {
                Ok(header) if matches!(header.packet_type(), Ok(mqttbytes::PacketType::SubAck)) => {
                    // The packet is whole, so this takes it.
                    let refused = if self.v5 {
                        matches!(self.take(decode_v5)?, Some(mqtt5::Packet::SubAck(ack)) if refuses_v5(&ack))
                    } else {
                        matches!(self.take(decode)?, Some(Packet::SubAck(ack)) if refuses(&ack))
                    };
                    return Poll::Ready(Ok(refused));
                }
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                // Something else came first, or a packet the reads will refuse.
                _ => return Poll::Ready(Ok(false)),
            }
            if !std::task::ready!(self.poll_fill(cx))? {
                // Closed: the device's reads will see it.
                return Poll::Ready(Ok(false));
            }
        }
    }

    /// Whether it speaks MQTT 5.
    pub fn is_v5(&self) -> bool {
        self.v5
    }

    /// The keep-alive its CONNECT asked for; `None` when it asked for none (0).
    pub fn keep_alive(&self) -> Option<std::time::Duration> {
        (self.keep_alive_s > 0).then(|| std::time::Duration::from_secs(u64::from(self.keep_alive_s)))
    }

    /// How many QoS 1 messages may await their PUBACK at once: the server's Receive Maximum
    /// (MQTT 5), else no limit.
    pub fn send_quota(&self) -> u16 {
        self.send_quota
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
        self.start(topic, payload, qos, (&[], false))
    }

    /// As [`MqttConn::start_publish`], over MQTT 5 with `properties`, already encoded (an
    /// answer's correlation data, [`answer_properties`]), never under a topic alias; 3.1.1
    /// has none.
    pub fn start_with(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        properties: &[u8],
    ) -> Result<Started, TransportError> {
        self.start(topic, payload, qos, (properties, false))
    }

    /// As [`MqttConn::start_publish`], for telemetry: over MQTT 5 with `properties` (the
    /// model's, encoded by [`telemetry_properties`]) and, once the server allows it, under
    /// topic alias 1 (named with its topic the first time, with an empty topic after).
    pub fn start_telemetry(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        properties: &[u8],
    ) -> Result<Started, TransportError> {
        self.start(topic, payload, qos, (properties, true))
    }

    /// Encodes and writes a publish; over MQTT 5 with `properties`, under topic alias 1 when
    /// `aliased` (telemetry's).
    fn start(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        (properties, aliased): (&[u8], bool),
    ) -> Result<Started, TransportError> {
        let pkid = if qos == QoS::AtMostOnce { 0 } else { self.next_pkid() };
        let mut packet = scratch::bytes();
        let encoded = if self.v5 {
            let (topic, alias) = match (aliased, self.alias) {
                (true, Alias::Set) => ("", Some(1)),
                (true, Alias::Allowed) => (topic, Some(1)),
                (false, _) | (true, Alias::Off) => (topic, None),
            };
            let encoded = encode_publish_v5(&mut packet, topic, payload, qos, pkid, (alias, properties));
            // Set once the packet that names it has gone out in whole or in part: the rest is
            // written before anything else.
            if alias.is_some() && encoded.is_ok() {
                self.alias = Alias::Set;
            }
            encoded
        } else {
            encode_publish(&mut packet, topic, payload, qos, pkid)
        };
        let rest = encoded.and_then(|()| self.try_write(&packet));
        scratch::give_bytes(packet);
        Ok(Started { pkid, rest: rest? })
    }

    /// The packet id of a started publish the socket took whole, with nothing held for TLS to
    /// send: done, with nothing to wait for (nearly every publish); otherwise the publish
    /// back, for [`MqttConn::finish`].
    pub fn finished(&self, started: Started) -> Result<u16, Started> {
        if started.rest.is_none() && !self.stream.wants_flush() {
            Ok(started.pkid)
        } else {
            Err(started)
        }
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
        let out = encode_subscribe(self.v5, pkid, filters)?;
        self.write(out).await?;
        Ok(pkid)
    }

    /// Acknowledges a QoS 1 message the server sent (the same four bytes in 3.1.1 and 5: a
    /// v5 PUBACK without a reason code is a success).
    pub async fn ack(&mut self, pkid: u16) -> Result<(), TransportError> {
        let out = encode(&Packet::PubAck(PubAck::new(pkid)))?;
        self.write(out).await
    }

    /// Sends PINGREQ (the same in 3.1.1 and 5).
    pub async fn ping(&mut self) -> Result<(), TransportError> {
        let out = encode(&Packet::PingReq)?;
        self.write(out).await
    }

    /// Closes the connection as a failed link does: no DISCONNECT, and the connection reset
    /// ([`ByteStream::abort_on_close`]), not closed with a goodbye, on the closer thread
    /// ([`super::closer`]), so a mass outage's resets do not hold up the devices still online.
    /// (Dropped without it, as at the end of a run, it closes as usual, here.)
    pub fn abort(self) {
        super::closer::reset_later(self.stream);
    }

    /// Sends DISCONNECT (in MQTT 5, a normal disconnection: the same two bytes) and closes
    /// the socket, both on the closer thread ([`super::closer`]) over plain TCP, so many
    /// devices leaving at once do not hold up those staying. Over TLS the DISCONNECT and
    /// close_notify are written here, and the close is the closer's; a failed write still
    /// closes the socket.
    pub async fn disconnect(mut self) -> Result<(), TransportError> {
        let out = encode(&Packet::Disconnect)?;
        if !self.stream.is_tls() {
            super::closer::close_later(self.stream, out);
            return Ok(());
        }
        let said = self.say_goodbye(out).await;
        super::closer::close_later(self.stream, BytesMut::new());
        said
    }

    /// Writes `last_words`, then TLS's close_notify.
    async fn say_goodbye(&mut self, last_words: BytesMut) -> Result<(), TransportError> {
        self.write(last_words).await?;
        self.stream.say_goodbye().await?;
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
        let read = if self.v5 { read_incoming_v5 } else { read_incoming };
        self.poll_decoded(cx, read)
    }

    /// As [`MqttConn::poll_read`], for MQTT 5.
    fn poll_read_v5(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<mqtt5::Packet>, TransportError>> {
        self.poll_decoded(cx, decode_v5)
    }

    /// The next packet, if one is there; otherwise the task is woken when the socket is
    /// readable. What [`MqttConn::read`] waits on.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Packet>, TransportError>> {
        self.poll_decoded(cx, decode)
    }

    /// The next packet `read` takes whole from the buffer, if one is there; otherwise the task
    /// is woken when the socket is readable.
    fn poll_decoded<T>(
        &mut self,
        cx: &mut Context<'_>,
        read: fn(&mut BytesMut) -> Result<Option<T>, TransportError>,
    ) -> Poll<Result<Option<T>, TransportError>> {
        loop {
            // An empty buffer holds no packet (the usual case: a device polled while it waits).
            if !self.buf.is_empty()
                && let Some(packet) = self.take(read)?
            {
                return Poll::Ready(Ok(Some(packet)));
            }
            if !std::task::ready!(self.poll_fill(cx))? {
                return Poll::Ready(Ok(None));
            }
        }
    }

    /// The packet `read` takes whole from the buffer, if one is there; the buffer is given back
    /// once a packet leaves it empty.
    fn take<T>(
        &mut self,
        read: fn(&mut BytesMut) -> Result<Option<T>, TransportError>,
    ) -> Result<Option<T>, TransportError> {
        let packet = read(&mut self.buf)?;
        if packet.is_some() {
            self.release_if_empty();
        }
        Ok(packet)
    }

    /// Gives the read buffer back to the thread's spares when nothing is partly read: an idle
    /// connection holds none, and the next read (a QoS 1 publisher's next PUBACK) takes a
    /// spare rather than allocating.
    fn release_if_empty(&mut self) {
        if self.buf.is_empty() {
            scratch::give_read_buf(std::mem::take(&mut self.buf));
        }
    }

    /// Reads more bytes; false when the server closed the connection between packets.
    ///
    /// Waits for the socket to be readable before making room to read into (a spare buffer of
    /// the thread's, when it holds none), so a connection waiting for its server holds no
    /// buffer; a read never waits, so nothing is lost when the caller stops polling.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, TransportError>> {
        std::task::ready!(self.stream.poll_read_ready(cx))?;
        if self.buf.capacity() == 0 {
            // Room made as in a new buffer: a spare keeps what its last reader advanced past
            // until then.
            self.buf = scratch::read_buf();
            self.buf.reserve(READ_ROOM);
        } else if self.buf.capacity() == self.buf.len() {
            self.buf.reserve(READ_ROOM);
        }
        match self.stream.poll_read_buf(cx, &mut self.buf) {
            Poll::Ready(Ok(0)) if self.buf.is_empty() => Poll::Ready(Ok(false)),
            Poll::Ready(Ok(0)) => Poll::Ready(Err(TransportError::Closed)),
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(true)),
            Poll::Ready(Err(error)) => Poll::Ready(Err(error.into())),
            // A wake-up with nothing to read after all: wait again, holding nothing.
            Poll::Pending => {
                self.release_if_empty();
                Poll::Pending
            }
        }
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

/// A whole MQTT 3.1.1 packet from `buf`, if one is there (room made for the rest if not).
fn decode(buf: &mut BytesMut) -> Result<Option<Packet>, TransportError> {
    match Packet::read(buf, MAX_PACKET_BYTES) {
        Ok(packet) => Ok(Some(packet)),
        // Only the fixed header's framing asks for more bytes: a field short inside a packet
        // whose declared length is all there (a topic past its end) is another error, below,
        // unlike MQTT 5's reader (`decode_v5`).
        Err(mqttbytes::Error::InsufficientBytes(needed)) => {
            // Room for the rest of the packet and what may follow it: a read as small as the
            // bytes still missing (two, for a packet not yet begun) would take what the server
            // sent in several reads (a SUBACK and a PUBACK came in three). An empty buffer gets
            // its room only once there is something to read (`poll_fill`).
            if !buf.is_empty() {
                buf.reserve(needed.max(READ_ROOM));
            }
            Ok(None)
        }
        Err(_) => Err(TransportError::Protocol),
    }
}

/// The next packet an MQTT 3.1.1 server sent, from `buf`, as a device acts on it; `None` until
/// a whole one is there. What the fuzz target `mqtt_device` feeds arbitrary bytes to.
pub fn read_incoming(buf: &mut BytesMut) -> Result<Option<Incoming>, TransportError> {
    if let Some(pkid) = take_puback(buf) {
        return Ok(Some(Incoming::PubAck(pkid)));
    }
    Ok(decode(buf)?.map(Incoming::from))
}

/// A whole MQTT 5 packet from `buf`, if one is there (room made for the rest if not).
fn decode_v5(buf: &mut BytesMut) -> Result<Option<mqtt5::Packet>, TransportError> {
    // A DISCONNECT with no reason code is a normal disconnection, and one with a reason code
    // and nothing after it has no properties (MQTT 5, 3.14.2.1 and 3.14.2.2.1): rumqttc's
    // reader refuses the first for want of a payload and waits on the second for a
    // property length that never comes.
    if buf.first() == Some(&0xE0)
        && let Some(&remaining) = buf.get(1)
        && remaining <= 1
    {
        let reason = match (remaining, buf.get(2)) {
            (0, _) => 0,
            (_, Some(&reason)) => reason,
            (_, None) => {
                buf.reserve(READ_ROOM);
                return Ok(None);
            }
        };
        let _ = buf.split_to(2 + usize::from(remaining));
        return Ok(Some(mqtt5::Packet::Disconnect(mqtt5::Disconnect {
            reason_code: reason.try_into().map_err(|_| TransportError::Protocol)?,
            properties: None,
        })));
    }
    let held = buf.len();
    match mqtt5::Packet::read(buf, Some(MAX_PACKET_BYTES as u32)) {
        Ok(packet) => Ok(Some(packet)),
        // rumqttc splits a packet off once all the length its fixed header declares is there,
        // and only then reads inside it: a field short inside (a property length past the
        // declared end) fails as this too, though no later byte can complete a packet already
        // taken. Only a buffer left as it was waits for more.
        Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) if buf.len() != held => Err(TransportError::Protocol),
        Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(needed)) => {
            if !buf.is_empty() {
                buf.reserve(needed.max(READ_ROOM));
            }
            Ok(None)
        }
        Err(_) => Err(TransportError::Protocol),
    }
}

/// The next packet an MQTT 5 server sent, from `buf`, as a device acts on it; `None` until a
/// whole one is there. What the fuzz target `mqtt5_device` feeds arbitrary bytes to.
pub fn read_incoming_v5(buf: &mut BytesMut) -> Result<Option<Incoming>, TransportError> {
    if let Some(pkid) = take_puback(buf) {
        return Ok(Some(Incoming::PubAck(pkid)));
    }
    decode_v5(buf)?.map(Incoming::of_v5).transpose()
}

/// A successful PUBACK at the head of `buf`, taken without the packet reader: what a QoS 1
/// publisher's socket carries for each message, the same four bytes in 3.1.1 and in 5 (an
/// MQTT 5 PUBACK without a reason code is a success). The packet readers read them alike, at
/// a few hundred instructions and an allocation more (tested against them).
fn take_puback(buf: &mut BytesMut) -> Option<u16> {
    let [0x40, 0x02, high, low, ..] = **buf else {
        return None;
    };
    buf.advance(4);
    Some(u16::from_be_bytes([high, low]))
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
    /// MQTT 5: a PUBACK for this packet id with a failure's reason code (0x80 and up).
    PubAckRefused(u16, u8),
    /// A message.
    Publish(Box<Publish>),
    /// MQTT 5: a request, a message with a response topic: where to answer and what to echo.
    Request(Box<Publish>, Box<Reply>),
    /// MQTT 5: the server ended the connection, for this reason (0x00: a normal end).
    Disconnected(u8),
    /// A SUBACK that refused a subscription (3.1.1's 0x80; MQTT 5's 0x80 and up): the
    /// connection goes on, and nothing comes on that topic.
    SubscribeRefused,
    /// Anything else (a SUBACK that granted, PINGRESP, ...): nothing for a device to do.
    Other,
}

impl Incoming {
    /// An MQTT 5 packet as a device acts on it; a message whose topic is not UTF-8, or names
    /// an alias (the device allows none), is a protocol error.
    fn of_v5(packet: mqtt5::Packet) -> Result<Self, TransportError> {
        Ok(match packet {
            mqtt5::Packet::PubAck(ack) => match puback_code(ack.reason) {
                code if code >= 0x80 => Self::PubAckRefused(ack.pkid, code),
                _ => Self::PubAck(ack.pkid),
            },
            mqtt5::Packet::Publish(publish) => {
                let topic = String::from_utf8(publish.topic.to_vec()).map_err(|_| TransportError::Protocol)?;
                if topic.is_empty() {
                    return Err(TransportError::Protocol);
                }
                let reply = publish.properties.and_then(|p| {
                    let topic = p.response_topic.filter(|t| !t.is_empty())?;
                    Some(Box::new(Reply {
                        topic,
                        correlation: p.correlation_data,
                    }))
                });
                let message = Box::new(Publish {
                    dup: publish.dup,
                    qos: qos_v4(publish.qos),
                    retain: publish.retain,
                    topic,
                    pkid: publish.pkid,
                    payload: publish.payload,
                });
                match reply {
                    Some(reply) => Self::Request(message, reply),
                    None => Self::Publish(message),
                }
            }
            mqtt5::Packet::Disconnect(disconnect) => Self::Disconnected(disconnect.reason_code as u8),
            mqtt5::Packet::SubAck(ack) if refuses_v5(&ack) => Self::SubscribeRefused,
            _ => Self::Other,
        })
    }
}

impl From<Packet> for Incoming {
    fn from(packet: Packet) -> Self {
        match packet {
            Packet::PubAck(ack) => Self::PubAck(ack.pkid),
            Packet::Publish(publish) => Self::Publish(Box::new(publish)),
            Packet::SubAck(ack) if refuses(&ack) => Self::SubscribeRefused,
            _ => Self::Other,
        }
    }
}

/// What a server answered a CONNECT with, beyond accepting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greeting {
    /// The server resumed a session it held for this client.
    pub session_present: bool,
    /// The SUBACK of the subscription sent with the CONNECT refused it (taken only when it
    /// came first; a later one reaches the reads as [`Incoming::SubscribeRefused`]).
    pub subscription_refused: bool,
}

/// Whether an MQTT 3.1.1 SUBACK refused any of its subscriptions (return code 0x80).
fn refuses(ack: &SubAck) -> bool {
    ack.return_codes.contains(&SubscribeReasonCode::Failure)
}

/// Whether an MQTT 5 SUBACK refused any of its subscriptions (a reason code of 0x80 or more).
fn refuses_v5(ack: &mqtt5::SubAck) -> bool {
    ack.return_codes
        .iter()
        .any(|code| !matches!(code, mqtt5::SubscribeReasonCode::Success(_)))
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

/// Encodes an MQTT 5 PUBLISH into `out`, as [`encode_publish`] does 3.1.1's: `alias` is a
/// topic alias to name (with `topic`, or an empty one to use it), `properties` what else the
/// message carries, already encoded ([`telemetry_properties`]).
pub fn encode_publish_v5(
    out: &mut Vec<u8>,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    pkid: u16,
    (alias, properties): (Option<u16>, &[u8]),
) -> Result<(), TransportError> {
    let topic_len = u16::try_from(topic.len()).map_err(|_| TransportError::Protocol)?;
    let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let properties_len = properties.len() + if alias.is_some() { 3 } else { 0 };
    let remaining = 2 + topic.len() + id_len + varint_len(properties_len) + properties_len + payload.len();
    if remaining > MAX_PACKET_BYTES {
        return Err(TransportError::Protocol);
    }
    out.clear();
    out.reserve(5 + remaining);
    out.push(0x30 | ((qos as u8) << 1));
    write_varint(out, remaining);
    out.extend_from_slice(&topic_len.to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    if id_len > 0 {
        out.extend_from_slice(&pkid.to_be_bytes());
    }
    write_varint(out, properties_len);
    if let Some(alias) = alias {
        // Topic Alias (MQTT 5, 3.3.2.3.4).
        out.push(0x23);
        out.extend_from_slice(&alias.to_be_bytes());
    }
    out.extend_from_slice(properties);
    out.extend_from_slice(payload);
    Ok(())
}

/// Where an MQTT 5 request asks to be answered (its response topic, MQTT 5 4.10), and the
/// correlation data the answer echoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The response topic.
    pub topic: String,
    /// The correlation data, if the request carried any.
    pub correlation: Option<Bytes>,
}

/// The properties an answer to `reply` carries over MQTT 5: its correlation data (3.3.2.3.6),
/// if any. Empty for none.
pub fn answer_properties(reply: &Reply) -> Vec<u8> {
    let Some(data) = &reply.correlation else {
        return Vec::new();
    };
    // rumqttc's reader took it as binary data, at most 65,535 bytes.
    let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(3 + usize::from(len));
    out.push(0x09);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&data[..usize::from(len)]);
    out
}

/// The properties a model's telemetry carries over MQTT 5, encoded once for every message: the
/// message expiry interval (seconds, MQTT 5 3.3.2.3.3) and user properties (3.3.2.3.7).
/// Empty for none.
pub fn telemetry_properties(message_expiry_s: Option<u32>, user_properties: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(expiry) = message_expiry_s {
        out.push(0x02);
        out.extend_from_slice(&expiry.to_be_bytes());
    }
    for (name, value) in user_properties {
        out.push(0x26);
        for text in [name, value] {
            // Checked by the model's parser: at most 65,535 bytes each.
            let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&text.as_bytes()[..usize::from(len)]);
        }
    }
    out
}

/// How many bytes MQTT's variable byte integer takes for `value`.
fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `value` as MQTT's variable byte integer: seven bits a byte, least significant
/// first, the top bit saying more follow.
fn write_varint(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value % 128) as u8;
        value /= 128;
        out.push(if value > 0 { byte | 0x80 } else { byte });
        if value == 0 {
            break;
        }
    }
}

/// Encodes the CONNECT a device opens its session with, with the version it speaks, whether
/// it wants a topic alias and whether it leaves its client id to the server.
/// A CONNECT encoded, with what the CONNACK is read for.
struct Hello {
    /// The CONNECT, and the SUBSCRIBE sent with it.
    bytes: BytesMut,
    version: Version,
    /// MQTT 5: telemetry wants topic alias 1.
    alias_wanted: bool,
    /// MQTT 5: the client id is the server's to assign.
    assigned_wanted: bool,
    /// A SUBSCRIBE (packet id 1) follows the CONNECT.
    subscribed: bool,
    /// The keep-alive the CONNECT asks for, seconds.
    keep_alive_s: u16,
}

fn encode_connect(params: ConnectParams<'_>) -> Result<Hello, TransportError> {
    let (mut bytes, version, alias_wanted, assigned_wanted) = encode_connect_only(&params)?;
    if let Some(filter) = params.subscribe {
        bytes.extend_from_slice(&encode_subscribe(version == Version::V5, 1, &[filter])?);
    }
    Ok(Hello {
        bytes,
        version,
        alias_wanted,
        assigned_wanted,
        subscribed: params.subscribe.is_some(),
        keep_alive_s: params.keep_alive_s,
    })
}

/// Encodes a SUBSCRIBE of `filters` with packet id `pkid`, in MQTT 5's layout when `v5`.
fn encode_subscribe(v5: bool, pkid: u16, filters: &[(&str, QoS)]) -> Result<BytesMut, TransportError> {
    if v5 {
        let filters = filters
            .iter()
            .map(|(path, qos)| mqtt5::Filter::new((*path).to_owned(), qos_v5(*qos)))
            .collect();
        return encode_v5(&mqtt5::Packet::Subscribe(mqtt5::Subscribe {
            pkid,
            filters,
            properties: None,
        }));
    }
    let filters = filters
        .iter()
        .map(|(path, qos)| SubscribeFilter::new((*path).to_owned(), *qos))
        .collect();
    encode(&Packet::Subscribe(Subscribe { pkid, filters }))
}

fn encode_connect_only(params: &ConnectParams<'_>) -> Result<(BytesMut, Version, bool, bool), TransportError> {
    if let Some(v5) = params.v5 {
        let properties = mqtt5::ConnectProperties {
            session_expiry_interval: (v5.session_expiry_s > 0).then_some(v5.session_expiry_s),
            user_properties: v5.user_properties.to_vec(),
            ..mqtt5::ConnectProperties::new()
        };
        let connect = mqtt5::Connect {
            keep_alive: params.keep_alive_s,
            client_id: params.client_id.to_owned(),
            clean_start: params.clean_session,
            properties: Some(properties),
        };
        let login = params.login.map(|(user, password)| mqtt5::Login::new(user, password));
        let out = encode_v5(&mqtt5::Packet::Connect(connect, None, login))?;
        return Ok((out, Version::V5, v5.topic_alias, params.client_id.is_empty()));
    }
    let mut connect = Connect::new(params.client_id);
    connect.keep_alive = params.keep_alive_s;
    connect.clean_session = params.clean_session;
    if let Some((user, password)) = params.login {
        connect.set_login(user, password);
    }
    Ok((encode(&Packet::Connect(connect))?, Version::V311, false, false))
}

/// Encodes one MQTT 5 packet into a buffer of its size.
fn encode_v5(packet: &mqtt5::Packet) -> Result<BytesMut, TransportError> {
    let mut out = BytesMut::with_capacity(packet.size());
    packet
        .write(&mut out, Some(MAX_PACKET_BYTES as u32))
        .map_err(|_| TransportError::Protocol)?;
    Ok(out)
}

/// A v5 CONNACK's reason code as its number.
fn connack_code(code: mqtt5::ConnectReturnCode) -> u8 {
    use mqtt5::ConnectReturnCode as C;
    match code {
        C::Success => 0x00,
        C::UnspecifiedError => 0x80,
        C::MalformedPacket => 0x81,
        C::ProtocolError => 0x82,
        C::ImplementationSpecificError => 0x83,
        C::UnsupportedProtocolVersion | C::RefusedProtocolVersion => 0x84,
        C::ClientIdentifierNotValid | C::BadClientId => 0x85,
        C::BadUserNamePassword => 0x86,
        C::NotAuthorized => 0x87,
        C::ServerUnavailable | C::ServiceUnavailable => 0x88,
        C::ServerBusy => 0x89,
        C::Banned => 0x8A,
        C::BadAuthenticationMethod => 0x8C,
        C::TopicNameInvalid => 0x90,
        C::PacketTooLarge => 0x95,
        C::QuotaExceeded => 0x97,
        C::PayloadFormatInvalid => 0x99,
        C::RetainNotSupported => 0x9A,
        C::QoSNotSupported => 0x9B,
        C::UseAnotherServer => 0x9C,
        C::ServerMoved => 0x9D,
        C::ConnectionRateExceeded => 0x9F,
    }
}

/// A v5 PUBACK's reason code as its number.
fn puback_code(reason: mqtt5::PubAckReason) -> u8 {
    use mqtt5::PubAckReason as R;
    match reason {
        R::Success => 0x00,
        R::NoMatchingSubscribers => 0x10,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicNameInvalid => 0x90,
        R::PacketIdentifierInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
    }
}

fn qos_v5(qos: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match qos {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

fn qos_v4(qos: rumqttc::v5::mqttbytes::QoS) -> QoS {
    match qos {
        rumqttc::v5::mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
        rumqttc::v5::mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
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

    /// An MQTT 5 PUBLISH as rumqttc's v5 reader reads it: the topic alias, the message expiry
    /// and the user properties given, the packet id and the payload; an empty topic with an
    /// alias once the alias is set.
    #[test]
    fn an_mqtt5_publish_carries_its_alias_and_properties() {
        let user = [("site".to_owned(), "lab-3".to_owned())];
        let properties = telemetry_properties(Some(600), &user);
        for (topic, payload_len) in [("t/sensors/TS-1", 64), ("", 64), ("t/sensors/TS-1", 20_000)] {
            let payload = vec![b'p'; payload_len];
            let mut ours = Vec::new();
            encode_publish_v5(&mut ours, topic, &payload, QoS::AtLeastOnce, 9, (Some(1), &properties))
                .expect("encodes");
            let mut buf = BytesMut::from(&ours[..]);
            let mqtt5::Packet::Publish(publish) = mqtt5::Packet::read(&mut buf, None).expect("decodes") else {
                panic!("not a publish")
            };
            assert!(buf.is_empty(), "one whole packet");
            assert_eq!(publish.topic, topic.as_bytes());
            assert_eq!(publish.pkid, 9);
            assert_eq!(publish.payload.len(), payload_len);
            let read = publish.properties.expect("properties");
            assert_eq!(read.topic_alias, Some(1));
            assert_eq!(read.message_expiry_interval, Some(600));
            assert_eq!(read.user_properties, user.to_vec());
        }
        // No alias, no properties: a property length of zero.
        let mut ours = Vec::new();
        encode_publish_v5(&mut ours, "a", b"x", QoS::AtMostOnce, 0, (None, &[])).expect("encodes");
        assert_eq!(ours, [0x30, 5, 0, 1, b'a', 0, b'x']);
    }

    /// What a server sends, cut and bit-flipped 20,000 ways (the fuzz target `mqtt5_device`
    /// explores further): read as a device reads it, never a panic; the short DISCONNECT forms
    /// read as their reasons.
    #[test]
    fn whatever_an_mqtt5_server_sends_is_read_without_a_panic() {
        let mut valid = Vec::new();
        let properties = telemetry_properties(Some(60), &[("k".to_owned(), "v".to_owned())]);
        encode_publish_v5(&mut valid, "c/d", b"{}", QoS::AtLeastOnce, 3, (Some(1), &properties)).expect("encodes");
        valid.extend_from_slice(&encode_v5(&mqtt5::Packet::PubAck(mqtt5::PubAck::new(3, None))).expect("encodes"));
        valid.extend_from_slice(&[0xE0, 0x01, 0x8B, 0xE0, 0x00]);
        let mut buf = BytesMut::from(&valid[..]);
        let mut read = Vec::new();
        while let Ok(Some(incoming)) = read_incoming_v5(&mut buf) {
            read.push(format!("{incoming:?}"));
        }
        assert_eq!(read.len(), 4, "{read:?}");
        assert!(
            read[2].contains("Disconnected(139)") && read[3].contains("Disconnected(0)"),
            "{read:?}"
        );
        for mut buf in mutations(&valid, 0x9E37_79B9_7F4A_7C15) {
            while let Ok(Some(_)) = read_incoming_v5(&mut buf) {}
        }
    }

    /// Every prefix of the packet `whole` is waited for by `read` (`Ok(None)`), the buffer
    /// kept as it was.
    fn assert_every_prefix_waits(whole: &[u8], read: fn(&mut BytesMut) -> Result<Option<Incoming>, TransportError>) {
        for len in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..len]);
            let got = read(&mut buf);
            assert!(matches!(got, Ok(None)), "{len} bytes: {got:?}");
            assert_eq!(buf[..], whole[..len], "{len} bytes kept");
        }
    }

    /// 20,000 copies of `valid`, each with one to four bits flipped and cut short at a random
    /// length, from a xorshift generator seeded with `seed` (the same copies every run).
    fn mutations(valid: &[u8], seed: u64) -> impl Iterator<Item = BytesMut> + '_ {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..20_000).map(move |_| {
            let mut bytes = valid.to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] ^= 1 << (next() % 8);
            }
            bytes.truncate(1 + (next() % bytes.len() as u64) as usize);
            BytesMut::from(&bytes[..])
        })
    }

    /// MQTT 3.1.1 as 5: a PUBLISH whose topic runs past its declared length, or a PUBACK too
    /// short for its packet id, is a protocol error (the device closes the connection and
    /// counts it), not a packet dropped while the device waits for bytes that cannot complete
    /// it; every prefix of a whole packet is waited for, the buffer kept.
    #[test]
    fn an_mqtt3_server_packet_short_inside_its_length_is_a_protocol_error() {
        // A QoS 0 PUBLISH of two bytes whose topic says five; then a PINGRESP.
        let mut buf = BytesMut::from(&[0x30, 0x02, 0x00, 0x05, 0xD0, 0x00][..]);
        assert!(matches!(read_incoming(&mut buf), Err(TransportError::Protocol)));
        // A PUBACK of one byte: half a packet id.
        let mut buf = BytesMut::from(&[0x40, 0x01, 0x00][..]);
        assert!(matches!(read_incoming(&mut buf), Err(TransportError::Protocol)));
        let whole = [0x40, 0x02, 0x00, 0x07];
        assert_every_prefix_waits(&whole, read_incoming);
        let mut buf = BytesMut::from(&whole[..]);
        assert!(matches!(read_incoming(&mut buf), Ok(Some(Incoming::PubAck(7)))));
    }

    /// A PUBACK is read as the packet readers read it, in 3.1.1 and in 5, whatever its packet
    /// id and whatever follows it (the rest of the buffer left the same); one with anything
    /// more than a packet id (an MQTT 5 reason code) goes to the reader.
    #[test]
    fn a_puback_is_read_as_the_packet_readers_read_it() {
        let tails: [&[u8]; 4] = [&[], &[0xD0, 0x00], &[0x40, 0x02, 0x00], &[0x40]];
        let heads: [&[u8]; 3] = [&[0x40, 0x02], &[0x40, 0x03], &[0x41, 0x02]];
        for pkid in [0, 1, 7, 0xFF, 0x100, 0x1234, 0xFFFE, 0xFFFF] {
            for head in heads {
                for tail in tails {
                    let mut bytes = head.to_vec();
                    bytes.extend_from_slice(&u16::to_be_bytes(pkid));
                    if head[1] == 0x03 {
                        bytes.push(0x10); // No matching subscribers.
                    }
                    bytes.extend_from_slice(tail);
                    let (mut fast, mut slow) = (BytesMut::from(&bytes[..]), BytesMut::from(&bytes[..]));
                    let read = format!("{:?}", read_incoming(&mut fast));
                    let reader = format!("{:?}", decode(&mut slow).map(|packet| packet.map(Incoming::from)));
                    assert_eq!((read, &fast[..]), (reader, &slow[..]), "3.1.1: {bytes:02X?}");
                    let (mut fast, mut slow) = (BytesMut::from(&bytes[..]), BytesMut::from(&bytes[..]));
                    let read = format!("{:?}", read_incoming_v5(&mut fast));
                    let reader = format!(
                        "{:?}",
                        decode_v5(&mut slow).and_then(|p| p.map(Incoming::of_v5).transpose())
                    );
                    assert_eq!((read, &fast[..]), (reader, &slow[..]), "5: {bytes:02X?}");
                }
            }
        }
    }

    /// What an MQTT 3.1.1 server sends, cut and bit-flipped 20,000 ways (the fuzz target
    /// `mqtt_device` explores further): read as a device reads it, never a panic.
    #[test]
    fn whatever_an_mqtt3_server_sends_is_read_without_a_panic() {
        let mut valid = Vec::new();
        encode_publish(&mut valid, "c/d", b"{}", QoS::AtLeastOnce, 3).expect("encodes");
        valid.extend_from_slice(&[0x40, 0x02, 0x00, 0x03]); // PUBACK 3
        valid.extend_from_slice(&[0x90, 0x03, 0x00, 0x01, 0x80]); // SUBACK 1, refused
        valid.extend_from_slice(&[0xD0, 0x00]); // PINGRESP
        let mut buf = BytesMut::from(&valid[..]);
        let mut read = Vec::new();
        while let Ok(Some(incoming)) = read_incoming(&mut buf) {
            read.push(format!("{incoming:?}"));
        }
        assert_eq!(read.len(), 4, "{read:?}");
        assert!(read[1] == "PubAck(3)" && read[2] == "SubscribeRefused", "{read:?}");
        for mut buf in mutations(&valid, 0x2545_F491_4F6C_DD1D) {
            while let Ok(Some(_)) = read_incoming(&mut buf) {}
        }
    }

    /// A packet whose declared length is all there but whose contents stop short (a
    /// PUBLISH, a CONNACK with no property length) is a protocol error, not a wait for bytes
    /// that cannot complete it; every prefix of a whole packet is waited for, the buffer kept.
    #[test]
    fn a_server_packet_short_inside_its_length_is_a_protocol_error() {
        // A QoS 1 PUBLISH, topic `t`, packet id 7, no property length; then a PINGRESP that
        // must not be read in its stead.
        let mut buf = BytesMut::from(&[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x07, 0xD0, 0x00][..]);
        assert!(matches!(read_incoming_v5(&mut buf), Err(TransportError::Protocol)));
        // A CONNACK: flags and reason code, no property length.
        let mut buf = BytesMut::from(&[0x20, 0x02, 0x00, 0x00][..]);
        assert!(matches!(decode_v5(&mut buf), Err(TransportError::Protocol)));
        let whole = [0x32, 0x06, 0x00, 0x01, b't', 0x00, 0x07, 0x00];
        assert_every_prefix_waits(&whole, read_incoming_v5);
        let mut buf = BytesMut::from(&whole[..]);
        assert!(matches!(read_incoming_v5(&mut buf), Ok(Some(_))));
    }

    #[test]
    fn reason_codes_name_why_a_server_refused() {
        assert_eq!(Reason::of(0x87), Reason::NotAuthorized);
        assert_eq!(Reason::of(0x89), Reason::Unavailable);
        assert_eq!(Reason::of(0x9F), Reason::QuotaExceeded);
        assert_eq!(Reason::of(0x8E), Reason::SessionTakenOver);
        assert_eq!(Reason::of(0x84), Reason::Other(0x84));
        assert_eq!(Reason::of_v4(ConnectReturnCode::BadUserNamePassword), Reason::BadLogin);
        assert_eq!(connack_code(mqtt5::ConnectReturnCode::ConnectionRateExceeded), 0x9F);
    }

    /// Over a real socket, against a hand-written MQTT 5 server: the CONNECT is v5 with its
    /// session expiry and user properties; the server allows aliases, so the first telemetry
    /// message names its topic and alias 1 and the next only the alias; a PUBACK with a failure
    /// code and a DISCONNECT with a reason reach the device as such.
    #[tokio::test]
    async fn an_mqtt5_session_aliases_its_telemetry_and_reads_reasons() {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = BytesMut::new();
            let mut seen = Vec::new();
            while seen.len() < 3 {
                match mqtt5::Packet::read(&mut buf, None) {
                    Ok(mqtt5::Packet::Connect(connect, _, _)) => {
                        seen.push(mqtt5::Packet::Connect(connect, None, None));
                        // CONNACK, success, with a Topic Alias Maximum (0x22) of 10.
                        let ack = [0x20, 0x06, 0x00, 0x00, 0x03, 0x22, 0x00, 0x0A];
                        socket.write_all(&ack).await.expect("write");
                    }
                    Ok(packet) => seen.push(packet),
                    Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {
                        if socket.read_buf(&mut buf).await.expect("read") == 0 {
                            break;
                        }
                    }
                    Err(error) => panic!("bad packet: {error:?}"),
                }
            }
            let mut refused = mqtt5::PubAck::new(2, None);
            refused.reason = mqtt5::PubAckReason::NotAuthorized;
            let mut out = encode_v5(&mqtt5::Packet::PubAck(refused)).expect("encodes");
            out.extend_from_slice(
                &encode_v5(&mqtt5::Packet::Disconnect(mqtt5::Disconnect::new(
                    mqtt5::DisconnectReasonCode::SessionTakenOver,
                )))
                .expect("encodes"),
            );
            socket.write_all(&out).await.expect("write");
            seen
        });
        let user = [("site".to_owned(), "lab-3".to_owned())];
        let params = ConnectParams {
            client_id: "d5",
            login: None,
            keep_alive_s: 60,
            clean_session: false,
            v5: Some(V5Connect {
                session_expiry_s: 300,
                user_properties: &user,
                topic_alias: true,
            }),
            subscribe: None,
        };
        let (mut conn, _) = MqttConn::connect(addr, None, params).await.expect("connect");
        assert!(conn.is_v5());
        let properties = telemetry_properties(Some(60), &[]);
        for _ in 0..2 {
            let started = conn
                .start_telemetry("t/d5", b"{}", QoS::AtLeastOnce, &properties)
                .expect("starts");
            conn.finish(started).await.expect("sent");
        }
        let seen = server.await.expect("server");
        let mqtt5::Packet::Connect(connect, _, _) = &seen[0] else {
            panic!("{seen:?}")
        };
        let connect_properties = connect.properties.as_ref().expect("properties");
        assert_eq!(connect_properties.session_expiry_interval, Some(300));
        assert_eq!(connect_properties.user_properties, user.to_vec());
        assert!(!connect.clean_start);
        let aliases: Vec<(Vec<u8>, Option<u16>)> = seen[1..]
            .iter()
            .map(|p| match p {
                mqtt5::Packet::Publish(publish) => (
                    publish.topic.to_vec(),
                    publish.properties.as_ref().and_then(|p| p.topic_alias),
                ),
                other => panic!("not a publish: {other:?}"),
            })
            .collect();
        assert_eq!(aliases, [(b"t/d5".to_vec(), Some(1)), (Vec::new(), Some(1))]);
        assert!(matches!(
            conn.incoming().await,
            Ok(Some(Incoming::PubAckRefused(2, 0x87)))
        ));
        assert!(matches!(conn.incoming().await, Ok(Some(Incoming::Disconnected(0x8E)))));
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

    /// A connection waiting for its server holds no read buffer, before and after what it
    /// read: every idle device holds one of these for the whole run.
    #[tokio::test]
    async fn a_waiting_connection_holds_no_read_buffer() {
        let (addr, tell, server) = connack_then_told().await;
        let params = ConnectParams::plain("d", 60);
        let (mut conn, _) = MqttConn::connect(addr, None, params).await.expect("connect");
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(conn.poll_incoming(&mut cx).is_pending(), "nothing sent yet");
        assert_eq!(conn.buf.capacity(), 0, "waiting, before anything came");
        // A PUBACK for packet id 1.
        tell.send(&[0x40, 2, 0, 1]).await.expect("server waits");
        let read = conn.incoming().await.expect("read");
        assert!(matches!(read, Some(Incoming::PubAck(1))), "{read:?}");
        assert_eq!(conn.buf.capacity(), 0, "all of it read");
        assert!(conn.poll_incoming(&mut cx).is_pending(), "nothing more");
        assert_eq!(conn.buf.capacity(), 0, "waiting again");
        drop(tell);
        drop(server.await.expect("server"));
    }

    /// A server on a real socket for one client: it answers the CONNECT with a CONNACK, then
    /// writes whatever it is told, until the teller is dropped; it ends with the socket.
    async fn connack_then_told() -> (
        SocketAddr,
        tokio::sync::mpsc::Sender<&'static [u8]>,
        tokio::task::JoinHandle<tokio::net::TcpStream>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tell, mut told) = tokio::sync::mpsc::channel::<&'static [u8]>(1);
        let server = tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut connect = [0u8; 64];
            assert!(socket.read(&mut connect).await.expect("CONNECT") > 0);
            socket.write_all(&[0x20, 2, 0, 0]).await.expect("CONNACK");
            while let Some(bytes) = told.recv().await {
                socket.write_all(bytes).await.expect("write");
            }
            socket
        });
        (addr, tell, server)
    }

    /// The read buffer is a spare of the thread's, taken when there is something to read and
    /// given back once it is read (a QoS 1 publisher reads a PUBACK a message: no allocation
    /// each); a packet partly read keeps it.
    #[tokio::test]
    async fn a_read_buffer_is_the_threads_spare_taken_and_given_back() {
        let (addr, tell, server) = connack_then_told().await;
        let (mut conn, _) = MqttConn::connect(addr, None, ConnectParams::plain("d", 60))
            .await
            .expect("connect");
        assert_eq!(conn.buf.capacity(), 0, "the CONNACK read: given back");
        let mut spare = scratch::read_buf();
        spare.reserve(READ_ROOM);
        scratch::give_read_buf(spare);
        // Half a PUBACK for packet id 9: no packet yet, held in the spare.
        tell.send(&[0x40, 2]).await.expect("server waits");
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while conn.buf.is_empty() {
            assert!(conn.poll_incoming(&mut cx).is_pending(), "half a PUBACK is no packet");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(&conn.buf[..], &[0x40, 2], "half a PUBACK, held");
        assert_eq!(scratch::read_buf().capacity(), 0, "the spare was taken: none left");
        let held = conn.buf.as_ptr();
        tell.send(&[0, 9]).await.expect("server waits");
        let read = conn.incoming().await.expect("read");
        assert!(matches!(read, Some(Incoming::PubAck(9))), "{read:?}");
        assert_eq!(conn.buf.capacity(), 0, "all of it read: given back");
        // The same allocation, from where it was read up to (or its start, room made).
        let again = (scratch::read_buf().as_ptr() as usize).wrapping_sub(held as usize);
        assert!(again <= 4, "the buffer read into is the next read's spare: {again}");
        drop(tell);
        drop(server.await.expect("server"));
    }

    /// A server on a real socket that answers the CONNECT (with its SUBSCRIBE) with `first`,
    /// then, once told, with `then`.
    async fn answering(first: &'static [u8], then: &'static [u8]) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tell, told) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut hello = [0u8; 256];
            assert!(socket.read(&mut hello).await.expect("CONNECT") > 0);
            socket.write_all(first).await.expect("first");
            if told.await.is_ok() {
                socket.write_all(then).await.expect("then");
            }
            // Held open until the test ends.
            let _ = socket.read(&mut hello).await;
        });
        (addr, tell)
    }

    fn subscribing(client_id: &str) -> ConnectParams<'_> {
        ConnectParams {
            subscribe: Some(("c/1", QoS::AtLeastOnce)),
            ..ConnectParams::plain(client_id, 60)
        }
    }

    /// A connect that subscribes in its CONNECT's write is done at the SUBACK, not the
    /// CONNACK, and takes it: the device's first report then acknowledges it, and a server
    /// with Nagle's algorithm on answers that report at once rather than after this side's
    /// delayed ACK (about 40 ms against Mosquitto's defaults, docs/scale.md).
    #[tokio::test]
    async fn a_subscribing_connect_waits_for_its_suback_and_takes_it() {
        const CONNACK: &[u8] = &[0x20, 2, 0, 0];
        // The SUBACK for packet id 1 (QoS 1 granted), then a PUBACK for packet id 7.
        const SUBACK_THEN_PUBACK: &[u8] = &[0x90, 3, 0, 1, 1, 0x40, 2, 0, 7];
        let (addr, tell) = answering(CONNACK, SUBACK_THEN_PUBACK).await;
        let connect = tokio::spawn(async move { MqttConn::connect(addr, None, subscribing("d")).await });
        // However long this waits, the connect is not done without its SUBACK.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!connect.is_finished(), "connected at the CONNACK, before the SUBACK");
        tell.send(()).expect("server waits");
        let (mut conn, greeting) = connect.await.expect("task").expect("connects");
        assert!(!greeting.subscription_refused, "QoS 1 granted");
        let read = conn.incoming().await.expect("read");
        assert!(
            matches!(read, Some(Incoming::PubAck(7))),
            "the SUBACK was taken: {read:?}"
        );
        assert_eq!(conn.next_pkid(), 2, "packet id 1 was the subscription's");
    }

    /// What a server sends before the SUBACK (a message on the topic, MQTT 3.1.1, 3.8.4) is
    /// not taken by the connect: the device reads it, and then the SUBACK.
    #[tokio::test]
    async fn a_message_before_the_suback_is_left_for_the_device() {
        // CONNACK; a QoS 0 PUBLISH of "x" on "c/1"; the SUBACK for packet id 1.
        const ANSWERS: &[u8] = &[0x20, 2, 0, 0, 0x30, 6, 0, 3, b'c', b'/', b'1', b'x', 0x90, 3, 0, 1, 1];
        let (addr, _tell) = answering(ANSWERS, &[]).await;
        let (mut conn, _) = MqttConn::connect(addr, None, subscribing("d")).await.expect("connects");
        let read = conn.incoming().await.expect("read");
        assert!(
            matches!(&read, Some(Incoming::Publish(p)) if p.payload.as_ref() == b"x"),
            "{read:?}"
        );
        let read = conn.incoming().await.expect("read");
        assert!(matches!(read, Some(Incoming::Other)), "then the SUBACK: {read:?}");
    }

    /// A SUBACK refusing the subscription (return code 0x80) is told: in the greeting when it
    /// is the connect's, to the reads when a message came before it. The connection goes on.
    #[tokio::test]
    async fn a_refused_subscription_is_told_where_its_suback_is_read() {
        const REFUSED_FIRST: &[u8] = &[0x20, 2, 0, 0, 0x90, 3, 0, 1, 0x80, 0x40, 2, 0, 7];
        let (addr, _tell) = answering(REFUSED_FIRST, &[]).await;
        let (mut conn, greeting) = MqttConn::connect(addr, None, subscribing("d")).await.expect("connects");
        assert!(
            greeting.subscription_refused && !greeting.session_present,
            "{greeting:?}"
        );
        let read = conn.incoming().await.expect("read");
        assert!(matches!(read, Some(Incoming::PubAck(7))), "and it goes on: {read:?}");

        const MESSAGE_FIRST: &[u8] = &[
            0x20, 2, 0, 0, 0x30, 6, 0, 3, b'c', b'/', b'1', b'x', 0x90, 3, 0, 1, 0x80,
        ];
        let (addr, _tell) = answering(MESSAGE_FIRST, &[]).await;
        let (mut conn, greeting) = MqttConn::connect(addr, None, subscribing("d")).await.expect("connects");
        assert!(!greeting.subscription_refused, "its SUBACK was not read yet");
        let read = conn.incoming().await.expect("read");
        assert!(matches!(read, Some(Incoming::Publish(_))), "{read:?}");
        let read = conn.incoming().await.expect("read");
        assert!(
            matches!(read, Some(Incoming::SubscribeRefused)),
            "then the SUBACK: {read:?}"
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
        let params = ConnectParams::plain("d", 60);
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
