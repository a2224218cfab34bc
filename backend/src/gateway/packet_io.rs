//! Framed MQTT over one device connection (TCP or TLS), on rumqttc's packet codecs: 3.1.1,
//! or MQTT 5 for a client whose CONNECT says protocol level 5, side by side per connection.
//!
//! An MQTT 5 connection's packets are read in 5's layout and handed to the gateway as the
//! 3.1.1 packets it acts on, and the gateway's 3.1.1 packets are written in 5's layout, with
//! reason codes where 5 has them (a refused CONNECT's 0x87, a refused subscription's 0x87, a
//! refused message's PUBACK [`PacketIo::acknowledge`], the server's DISCONNECT
//! [`PacketIo::goodbye`]); an accepted client is told the gateway's Maximum QoS, 1. What 5
//! adds that the gateway does not act on yet (properties, a
//! will's delay) is read and dropped; a CONNECT's clean start is 3.1.1's clean session (a stored
//! session is discarded), and its session expiry interval (or a DISCONNECT's) how long the
//! session outlives the connection ([`PacketIo::session_expiry`]); topic aliases are not offered (a CONNACK
//! without a topic alias maximum allows none, so a client's alias is a protocol error); the
//! client's Receive Maximum bounds the messages the gateway has in flight to it.
//!
//! The read buffer starts small and grows only to fit the packet being read, and both
//! buffers shrink back after a large packet, so an idle connection holds a few hundred bytes
//! of buffer rather than a packet-sized one.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, Login, Packet, PubAck, Publish, SubAck, Subscribe, SubscribeFilter,
    SubscribeReasonCode, Unsubscribe,
};
use rumqttc::mqttbytes::{self, Protocol, QoS};
use rumqttc::v5::mqttbytes::v5 as mqtt5;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::stream::DeviceStream;
use super::topics;

/// Initial read buffer: enough for a CONNECT, a SUBSCRIBE or a small telemetry message.
const READ_BUFFER_INITIAL: usize = 256;
/// Buffers larger than this are given back once empty, so one large packet does not pin
/// memory for the rest of an idle connection's life.
const BUFFER_KEEP_LIMIT: usize = 4096;

/// Why reading or writing a packet failed.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a valid MQTT 3.1.1 (or, on an MQTT 5 connection, 5) packet.
    #[error("malformed packet: {0}")]
    Malformed(mqttbytes::Error),
    /// The packet is larger than the gateway accepts.
    #[error("packet of {0} bytes is over the limit")]
    TooLarge(usize),
    /// The packet is well formed but breaks a rule of the protocol (MQTT 5: 0x82); says which.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// How one filter of a SUBSCRIBE was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granted {
    /// Subscribed at this QoS.
    Qos(QoS),
    /// The filter is not the client's to subscribe to (MQTT 5: 0x87).
    NotAuthorized,
    /// The session holds as many subscriptions as it may (MQTT 5: 0x97).
    QuotaExceeded,
}

/// One connection's stream with its buffers.
#[derive(Debug)]
pub struct PacketIo {
    stream: DeviceStream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    max_packet_bytes: usize,
    /// The client speaks MQTT 5 (its CONNECT said protocol level 5).
    v5: bool,
    /// A packet was read: the version is settled (a second CONNECT is a protocol error, not a
    /// change of version).
    started: bool,
    /// MQTT 5: how many QoS 1 messages the client takes unacknowledged (its Receive Maximum).
    receive_max: u16,
    /// MQTT 5: how many filters the last UNSUBSCRIBE named (its UNSUBACK has a reason each).
    unsubscribed: u16,
    /// How long the session outlives the connection, seconds ([`PacketIo::session_expiry`]).
    session_expiry: u32,
    /// MQTT 5: whether the last message read, a command's result with correlation data,
    /// echoed its command id ([`PacketIo::take_echoed`]).
    echoed: Option<bool>,
}

impl PacketIo {
    /// Wraps an accepted stream.
    pub fn new(stream: DeviceStream, max_packet_bytes: usize) -> Self {
        Self {
            stream,
            read_buf: BytesMut::with_capacity(READ_BUFFER_INITIAL),
            write_buf: BytesMut::new(),
            max_packet_bytes,
            v5: false,
            started: false,
            receive_max: u16::MAX,
            unsubscribed: 0,
            session_expiry: 0,
            echoed: None,
        }
    }

    /// For the message just read: `Some(true)` when it is an MQTT 5 command result whose
    /// correlation data is its command id (the request's, echoed), `Some(false)` when its
    /// correlation data names another, `None` without any.
    pub fn take_echoed(&mut self) -> Option<bool> {
        self.echoed.take()
    }

    /// How long, in seconds, the session outlives the connection: 0 ends it with the
    /// connection, [`u32::MAX`] keeps it until the client starts clean. 3.1.1's clean session
    /// 0 keeps it; MQTT 5's CONNECT names the interval (none is 0), and a DISCONNECT may change
    /// it, though not from 0 (MQTT 5, 3.14.2.2.2: that is a protocol error, [`PacketIo::read`]'s
    /// [`PacketError::Protocol`]).
    pub fn session_expiry(&self) -> u32 {
        self.session_expiry
    }

    /// Whether the client speaks MQTT 5.
    pub fn is_v5(&self) -> bool {
        self.v5
    }

    /// How many QoS 1 messages the client takes unacknowledged: its Receive Maximum (MQTT 5),
    /// else no limit of its own.
    pub fn receive_max(&self) -> u16 {
        self.receive_max
    }

    /// Reads the next packet; `None` when the peer closed the stream cleanly between
    /// packets.
    ///
    /// Cancel-safe: bytes read before a cancellation stay in the buffer for the next call.
    pub async fn read(&mut self) -> Result<Option<Packet>, PacketError> {
        loop {
            if !self.started && connect_level(&self.read_buf) == Some(5) {
                self.v5 = true;
            }
            let read = if self.v5 {
                read_v5(&mut self.read_buf, self.max_packet_bytes).map(|read| self.took_v5(read))
            } else {
                read_v4(&mut self.read_buf, self.max_packet_bytes).map(Ok)
            };
            match read {
                Ok(Err(rule)) => return Err(PacketError::Protocol(rule)),
                Ok(Ok(packet)) => {
                    if let (false, Packet::Connect(connect)) = (self.v5, &packet) {
                        self.session_expiry = if connect.clean_session { 0 } else { u32::MAX };
                    }
                    self.started = true;
                    if self.read_buf.is_empty() && self.read_buf.capacity() > BUFFER_KEEP_LIMIT {
                        self.read_buf = BytesMut::with_capacity(READ_BUFFER_INITIAL);
                    }
                    return Ok(Some(packet));
                }
                Err(mqttbytes::Error::InsufficientBytes(needed)) => {
                    self.read_buf.reserve(needed);
                    if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                        if self.read_buf.is_empty() {
                            return Ok(None);
                        }
                        return Err(PacketError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Err(mqttbytes::Error::PayloadSizeLimitExceeded(size)) => return Err(PacketError::TooLarge(size)),
                Err(other) => return Err(PacketError::Malformed(other)),
            }
        }
    }

    /// Keeps what an MQTT 5 packet read says of the connection, and gives the 3.1.1 packet
    /// the gateway acts on; `Err` names the rule it breaks.
    fn took_v5(&mut self, read: Read5) -> Result<Packet, &'static str> {
        if let (Some(1..), Packet::Disconnect) = (read.session_expiry, &read.packet)
            && self.session_expiry == 0
        {
            // MQTT 5, 3.14.2.2.2: not a valid DISCONNECT, so the session still ends with the
            // connection.
            return Err("a DISCONNECT set a session expiry interval after a CONNECT's 0");
        }
        if let Some(receive_max) = read.receive_max {
            self.receive_max = receive_max;
        }
        if let Some(filters) = read.unsubscribed {
            self.unsubscribed = filters;
        }
        self.echoed = read.echoed;
        if let (Some(seconds), Packet::Connect(_) | Packet::Disconnect) = (read.session_expiry, &read.packet) {
            self.session_expiry = seconds;
        }
        Ok(read.packet)
    }

    /// Writes a message to the device; over MQTT 5 with what is left of its message expiry,
    /// `expiry` seconds (3.1.1 has no such property: the gateway drops an expired message
    /// instead, for either).
    pub async fn write_publish(&mut self, publish: Publish, expiry: Option<u32>) -> Result<(), PacketError> {
        let packet = Packet::Publish(publish);
        if self.v5 {
            let mut packet = self.v5_of(&packet);
            if let (mqtt5::Packet::Publish(v5), Some(seconds)) = (&mut packet, expiry) {
                v5.properties
                    .get_or_insert_with(Default::default)
                    .message_expiry_interval = Some(seconds);
            }
            self.encode_v5(&packet)?;
            return self.flush().await;
        }
        self.write(&packet).await
    }

    /// Answers SUBSCRIBE `pkid`, a code a filter; 3.1.1 says only that a refused one failed.
    pub async fn suback(&mut self, pkid: u16, granted: &[Granted]) -> Result<(), PacketError> {
        if self.v5 {
            let return_codes = granted
                .iter()
                .map(|g| match g {
                    Granted::Qos(qos) => mqtt5::SubscribeReasonCode::Success(qos_v5(*qos)),
                    Granted::NotAuthorized => mqtt5::SubscribeReasonCode::NotAuthorized,
                    Granted::QuotaExceeded => mqtt5::SubscribeReasonCode::QuotaExceeded,
                })
                .collect();
            let ack = mqtt5::SubAck {
                pkid,
                return_codes,
                properties: None,
            };
            self.encode_v5(&mqtt5::Packet::SubAck(ack))?;
            return self.flush().await;
        }
        let codes = granted
            .iter()
            .map(|g| match g {
                Granted::Qos(qos) => SubscribeReasonCode::Success(*qos),
                Granted::NotAuthorized | Granted::QuotaExceeded => SubscribeReasonCode::Failure,
            })
            .collect();
        self.write(&Packet::SubAck(SubAck::new(pkid, codes))).await
    }

    /// Writes one packet.
    pub async fn write(&mut self, packet: &Packet) -> Result<(), PacketError> {
        self.encode(packet)?;
        self.flush().await
    }

    /// Acknowledges QoS 1 message `pkid`; over MQTT 5 with `refused`'s reason code when the
    /// gateway refused it (3.1.1 has none: the message is acknowledged and dropped).
    pub async fn acknowledge(&mut self, pkid: u16, refused: Option<mqtt5::PubAckReason>) -> Result<(), PacketError> {
        match refused {
            Some(reason) if self.v5 => {
                let mut ack = mqtt5::PubAck::new(pkid, None);
                ack.reason = reason;
                self.encode_v5(&mqtt5::Packet::PubAck(ack))?;
                self.flush().await
            }
            _ => self.write(&Packet::PubAck(PubAck::new(pkid))).await,
        }
    }

    /// Tells an MQTT 5 client why the gateway ends its connection (a DISCONNECT with
    /// `reason`); nothing for 3.1.1, where a server just closes. A client already gone is no
    /// matter.
    pub async fn goodbye(&mut self, reason: mqtt5::DisconnectReasonCode) {
        if self.v5 {
            // The reason code and no properties (MQTT 5, 3.14.2.2.1): written by hand, as
            // rumqttc's encoder adds a property length its remaining length does not count.
            self.write_buf.extend_from_slice(&[0xE0, 0x01, reason as u8]);
            let _ = self.flush().await;
        }
    }

    /// Encodes a packet into the write buffer without sending it, so several can go out in
    /// one write.
    pub fn encode(&mut self, packet: &Packet) -> Result<(), PacketError> {
        if self.v5 {
            let packet = self.v5_of(packet);
            return self.encode_v5(&packet);
        }
        // Outgoing packets are the gateway's own; the limit for them is the protocol's.
        packet
            .write(&mut self.write_buf, usize::MAX)
            .map(|_| ())
            .map_err(PacketError::Malformed)
    }

    fn encode_v5(&mut self, packet: &mqtt5::Packet) -> Result<(), PacketError> {
        packet
            .write(&mut self.write_buf, None)
            .map(|_| ())
            .map_err(|_| PacketError::Malformed(mqttbytes::Error::MalformedPacket))
    }

    /// The gateway's 3.1.1 packet in MQTT 5's layout, with the reason codes 5 has.
    fn v5_of(&self, packet: &Packet) -> mqtt5::Packet {
        match packet {
            Packet::ConnAck(ack) => mqtt5::Packet::ConnAck(mqtt5::ConnAck {
                session_present: ack.session_present,
                code: connack_code(ack.code),
                properties: (ack.code == ConnectReturnCode::Success).then(accepted_properties),
            }),
            Packet::Publish(publish) => mqtt5::Packet::Publish(mqtt5::Publish {
                dup: publish.dup,
                qos: qos_v5(publish.qos),
                retain: publish.retain,
                topic: Bytes::copy_from_slice(publish.topic.as_bytes()),
                pkid: publish.pkid,
                payload: publish.payload.clone(),
                properties: request_properties(&publish.topic),
            }),
            Packet::PubAck(ack) => mqtt5::Packet::PubAck(mqtt5::PubAck::new(ack.pkid, None)),
            Packet::SubAck(ack) => mqtt5::Packet::SubAck(mqtt5::SubAck {
                pkid: ack.pkid,
                return_codes: ack
                    .return_codes
                    .iter()
                    .map(|code| match code {
                        SubscribeReasonCode::Success(qos) => mqtt5::SubscribeReasonCode::Success(qos_v5(*qos)),
                        SubscribeReasonCode::Failure => mqtt5::SubscribeReasonCode::NotAuthorized,
                    })
                    .collect(),
                properties: None,
            }),
            Packet::UnsubAck(ack) => mqtt5::Packet::UnsubAck(mqtt5::UnsubAck {
                pkid: ack.pkid,
                reasons: vec![mqtt5::UnsubAckReason::Success; usize::from(self.unsubscribed)],
                properties: None,
            }),
            Packet::PingResp => mqtt5::Packet::PingResp(mqtt5::PingResp),
            // The gateway sends nothing else; a stray one goes as a normal disconnection.
            _ => mqtt5::Packet::Disconnect(mqtt5::Disconnect::new(mqtt5::DisconnectReasonCode::NormalDisconnection)),
        }
    }

    /// Sends everything encoded so far.
    pub async fn flush(&mut self) -> Result<(), PacketError> {
        self.stream.write_all(&self.write_buf).await?;
        // TLS holds what it encrypted until flushed; TCP's flush does nothing.
        self.stream.flush().await?;
        self.write_buf.clear();
        if self.write_buf.capacity() > BUFFER_KEEP_LIMIT {
            self.write_buf = BytesMut::new();
        }
        Ok(())
    }
}

/// Reads the next 3.1.1 packet from `buf`; `InsufficientBytes` only until a whole packet is
/// there ([`insufficient`]).
fn read_v4(buf: &mut BytesMut, max_packet_bytes: usize) -> Result<Packet, mqttbytes::Error> {
    let held = buf.len();
    Packet::read(buf, max_packet_bytes).map_err(|error| match error {
        mqttbytes::Error::InsufficientBytes(needed) => insufficient(held, buf.len(), needed),
        other => other,
    })
}

/// What rumqttc's `InsufficientBytes` means, from the buffer's length before (`held`) and
/// after (`left`) its read. rumqttc splits a packet off the buffer once all the remaining
/// length its fixed header declares is there, and only then reads inside it; a field short
/// inside (an MQTT 5 property length past the declared end) fails the same way, though no
/// later byte can complete a packet already taken. So only a buffer left as it was waits for
/// more bytes; one a packet was taken from held a malformed packet.
fn insufficient(held: usize, left: usize, needed: usize) -> mqttbytes::Error {
    if left == held {
        mqttbytes::Error::InsufficientBytes(needed)
    } else {
        mqttbytes::Error::MalformedPacket
    }
}

/// An MQTT 5 packet read as the gateway acts on it: the 3.1.1 packet it means, and what else
/// it says of the connection.
#[derive(Debug)]
pub struct Read5 {
    /// The 3.1.1 packet.
    pub packet: Packet,
    /// A CONNECT's Receive Maximum (65,535 when it names none).
    pub receive_max: Option<u16>,
    /// An UNSUBSCRIBE's count of filters.
    pub unsubscribed: Option<u16>,
    /// A CONNECT's session expiry interval (0 when it names none), or the one a DISCONNECT
    /// names, seconds.
    pub session_expiry: Option<u32>,
    /// A command result's correlation data: whether it is the command's id.
    pub echoed: Option<bool>,
}

/// Reads the next MQTT 5 packet from `buf` as the 3.1.1 packet the gateway acts on; the
/// errors are 3.1.1's codec's, for the same handling (`InsufficientBytes` only until a whole
/// packet is there, [`insufficient`]). What every MQTT 5 connection's bytes go through, and
/// the fuzz target `device_packet` feeds arbitrary bytes to.
pub fn read_v5(buf: &mut BytesMut, max_packet_bytes: usize) -> Result<Read5, mqttbytes::Error> {
    let mut receive_max = None;
    let mut unsubscribed = None;
    let mut session_expiry = None;
    let mut echoed = None;
    // A DISCONNECT may leave out its reason and properties (a normal disconnection, MQTT 5
    // 3.14.2.1), or only the properties' length (3.14.2.2.1), which rumqttc's reader requires:
    // read here, the client's goodbye is not a protocol error.
    let short = match buf[..] {
        [0xE0, 0x00, ..] => Some(2),
        [0xE0, 0x01, reason, ..] => {
            mqtt5::DisconnectReasonCode::try_from(reason).map_err(|_| mqttbytes::Error::MalformedPacket)?;
            Some(3)
        }
        _ => None,
    };
    if let Some(len) = short {
        let _ = buf.split_to(len);
        return Ok(Read5 {
            packet: Packet::Disconnect,
            receive_max,
            unsubscribed,
            session_expiry,
            echoed,
        });
    }
    let max = u32::try_from(max_packet_bytes).unwrap_or(u32::MAX);
    let held = buf.len();
    let packet = match mqtt5::Packet::read(buf, Some(max)) {
        Ok(packet) => packet,
        Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(needed)) => {
            return Err(insufficient(held, buf.len(), needed));
        }
        Err(rumqttc::v5::mqttbytes::Error::PayloadSizeLimitExceeded { pkt_size, .. }) => {
            return Err(mqttbytes::Error::PayloadSizeLimitExceeded(pkt_size));
        }
        Err(_) => return Err(mqttbytes::Error::MalformedPacket),
    };
    let packet = match packet {
        mqtt5::Packet::Connect(connect, _will, login) => {
            let properties = connect.properties.as_ref();
            let max = properties.and_then(|p| p.receive_maximum).unwrap_or(u16::MAX);
            if max == 0 {
                return Err(mqttbytes::Error::MalformedPacket);
            }
            receive_max = Some(max);
            session_expiry = Some(properties.and_then(|p| p.session_expiry_interval).unwrap_or(0));
            Packet::Connect(Connect {
                protocol: Protocol::V4,
                keep_alive: connect.keep_alive,
                client_id: connect.client_id,
                // Clean start discards a stored session, as 3.1.1's clean session does; how
                // long this one is kept is the expiry's business.
                clean_session: connect.clean_start,
                last_will: None,
                login: login.map(|login| Login {
                    username: login.username,
                    password: login.password,
                }),
            })
        }
        mqtt5::Packet::Publish(publish) => {
            // No alias was offered (the CONNACK names no topic alias maximum).
            let aliased = publish.properties.as_ref().is_some_and(|p| p.topic_alias.is_some());
            let topic = String::from_utf8(publish.topic.to_vec()).map_err(|_| mqttbytes::Error::TopicNotUtf8)?;
            if aliased || topic.is_empty() {
                return Err(mqttbytes::Error::MalformedPacket);
            }
            let correlation = publish.properties.as_ref().and_then(|p| p.correlation_data.as_ref());
            if let (Some(data), Some(cmd_id)) = (correlation, topics::result_command_id(&topic)) {
                echoed = Some(data.as_ref() == cmd_id.as_bytes());
            }
            Packet::Publish(Publish {
                dup: publish.dup,
                qos: qos_of(publish.qos),
                retain: publish.retain,
                topic,
                pkid: publish.pkid,
                payload: publish.payload,
            })
        }
        mqtt5::Packet::PubAck(ack) => Packet::PubAck(PubAck::new(ack.pkid)),
        mqtt5::Packet::Subscribe(subscribe) => Packet::Subscribe(Subscribe {
            pkid: subscribe.pkid,
            filters: subscribe
                .filters
                .into_iter()
                .map(|filter| SubscribeFilter::new(filter.path, qos_of(filter.qos)))
                .collect(),
        }),
        mqtt5::Packet::Unsubscribe(unsubscribe) => {
            unsubscribed = Some(u16::try_from(unsubscribe.filters.len()).unwrap_or(u16::MAX));
            Packet::Unsubscribe(Unsubscribe {
                pkid: unsubscribe.pkid,
                topics: unsubscribe.filters,
            })
        }
        mqtt5::Packet::PingReq(_) => Packet::PingReq,
        mqtt5::Packet::Disconnect(disconnect) => {
            session_expiry = disconnect.properties.and_then(|p| p.session_expiry_interval);
            Packet::Disconnect
        }
        // QoS 2 flows, AUTH and what only a server sends: not the gateway's to take.
        _ => return Err(mqttbytes::Error::IncorrectPacketFormat),
    };
    Ok(Read5 {
        packet,
        receive_max,
        unsubscribed,
        session_expiry,
        echoed,
    })
}

/// A command as MQTT 5's request and response: its response topic (where the gateway takes
/// the device's result) and its id as correlation data. `None` for any other message.
fn request_properties(topic: &str) -> Option<mqtt5::PublishProperties> {
    let cmd_id = topics::command_id(topic)?;
    Some(mqtt5::PublishProperties {
        response_topic: Some(format!("{topic}/result")),
        correlation_data: Some(Bytes::copy_from_slice(cmd_id.as_bytes())),
        ..mqtt5::PublishProperties::default()
    })
}

/// The protocol level a CONNECT at the start of `buf` names, once enough of it is there
/// (fixed header, remaining length, the protocol name `MQTT`, the level); `None` otherwise.
fn connect_level(buf: &[u8]) -> Option<u8> {
    if buf.first()? >> 4 != 1 {
        return None;
    }
    // The remaining length: one to four bytes, the top bit of each saying more follow.
    let length_bytes = buf.iter().skip(1).take(4).position(|b| b & 0x80 == 0)? + 1;
    let rest = buf.get(1 + length_bytes..)?;
    match rest.get(..7)? {
        [0, 4, b'M', b'Q', b'T', b'T', level] => Some(*level),
        _ => None,
    }
}

/// What an accepted MQTT 5 client is told of the gateway: QoS 2 is not offered (Maximum QoS 1,
/// so a QoS 2 message is the client's protocol error). No topic alias maximum: no aliases.
fn accepted_properties() -> mqtt5::ConnAckProperties {
    mqtt5::ConnAckProperties {
        session_expiry_interval: None,
        receive_max: None,
        max_qos: Some(1),
        retain_available: None,
        max_packet_size: None,
        assigned_client_identifier: None,
        topic_alias_max: None,
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: None,
        subscription_identifiers_available: None,
        shared_subscription_available: None,
        server_keep_alive: None,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    }
}

/// A 3.1.1 CONNACK return code as MQTT 5's reason code.
fn connack_code(code: ConnectReturnCode) -> mqtt5::ConnectReturnCode {
    match code {
        ConnectReturnCode::Success => mqtt5::ConnectReturnCode::Success,
        ConnectReturnCode::RefusedProtocolVersion => mqtt5::ConnectReturnCode::UnsupportedProtocolVersion,
        ConnectReturnCode::BadClientId => mqtt5::ConnectReturnCode::ClientIdentifierNotValid,
        ConnectReturnCode::ServiceUnavailable => mqtt5::ConnectReturnCode::ServerUnavailable,
        ConnectReturnCode::BadUserNamePassword => mqtt5::ConnectReturnCode::BadUserNamePassword,
        ConnectReturnCode::NotAuthorized => mqtt5::ConnectReturnCode::NotAuthorized,
    }
}

fn qos_of(qos: rumqttc::v5::mqttbytes::QoS) -> QoS {
    match qos {
        rumqttc::v5::mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
        rumqttc::v5::mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn qos_v5(qos: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match qos {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DISCONNECT may leave out what MQTT 5 lets it (3.14.2.1, 3.14.2.2.1): everything after
    /// its fixed header (a normal disconnection), or the property length after its reason. Each
    /// is a goodbye, not a malformed packet, and only its own bytes are taken.
    #[test]
    fn a_disconnects_short_forms_are_goodbyes() {
        for (bytes, len) in [(&[0xE0, 0x01, 0x04][..], 3), (&[0xE0, 0x00][..], 2)] {
            let mut buf = BytesMut::from(bytes);
            // A PINGREQ after it.
            buf.extend_from_slice(&[0xC0, 0x00]);
            let read = read_v5(&mut buf, 1024).expect("a goodbye");
            assert!(matches!(read.packet, Packet::Disconnect), "{bytes:?}");
            assert_eq!(buf[..], [0xC0, 0x00], "{bytes:?}: only its own {len} bytes taken");
        }
        // A reason no DISCONNECT has is malformed.
        let mut buf = BytesMut::from(&[0xE0, 0x01, 0x03][..]);
        assert!(read_v5(&mut buf, 1024).is_err());
    }

    /// A packet whose declared length is all there but whose contents stop short is malformed:
    /// rumqttc has split it off the buffer before it finds the contents short, so nothing
    /// coming later could complete it. Every prefix of a whole packet is waited for instead,
    /// the buffer untouched.
    #[test]
    fn short_inside_is_malformed_short_of_the_declared_length_waits() {
        // Each followed by a PINGREQ, which must not be read in its stead. A QoS 1 PUBLISH,
        // topic `t`, packet id 7, with no property length.
        let mut buf = BytesMut::from(&[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x07, 0xC0, 0x00][..]);
        assert!(matches!(
            read_v5(&mut buf, 1024),
            Err(mqttbytes::Error::MalformedPacket)
        ));
        // SUBSCRIBE, packet id 1, no property length.
        let mut buf = BytesMut::from(&[0x82, 0x02, 0x00, 0x01, 0xC0, 0x00][..]);
        assert!(matches!(
            read_v5(&mut buf, 1024),
            Err(mqttbytes::Error::MalformedPacket)
        ));
        // 3.1.1: a QoS 1 PUBLISH, topic `t`, with no packet id.
        let mut buf = BytesMut::from(&[0x32, 0x03, 0x00, 0x01, b't', 0xC0, 0x00][..]);
        assert!(matches!(
            read_v4(&mut buf, 1024),
            Err(mqttbytes::Error::MalformedPacket)
        ));

        let whole5 = [0x32, 0x06, 0x00, 0x01, b't', 0x00, 0x07, 0x00];
        let whole4 = [0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x07];
        for len in 0..whole5.len() {
            let mut buf = BytesMut::from(&whole5[..len]);
            let read = read_v5(&mut buf, 1024);
            assert!(
                matches!(read, Err(mqttbytes::Error::InsufficientBytes(_))),
                "MQTT 5, {len} bytes: {read:?}"
            );
            assert_eq!(buf[..], whole5[..len], "MQTT 5, {len} bytes");
        }
        for len in 0..whole4.len() {
            let mut buf = BytesMut::from(&whole4[..len]);
            let read = read_v4(&mut buf, 1024);
            assert!(
                matches!(read, Err(mqttbytes::Error::InsufficientBytes(_))),
                "3.1.1, {len} bytes: {read:?}"
            );
            assert_eq!(buf[..], whole4[..len], "3.1.1, {len} bytes");
        }
        let mut buf = BytesMut::from(&whole5[..]);
        assert!(matches!(
            read_v5(&mut buf, 1024).map(|read| read.packet),
            Ok(Packet::Publish(_))
        ));
        let mut buf = BytesMut::from(&whole4[..]);
        assert!(matches!(read_v4(&mut buf, 1024), Ok(Packet::Publish(_))));
    }
}
