//! Framed MQTT 3.1.1 over one device connection (TCP or TLS), on rumqttc's packet codec.
//!
//! The read buffer starts small and grows only to fit the packet being read, and both
//! buffers shrink back after a large packet, so an idle connection holds a few hundred bytes
//! of buffer rather than a packet-sized one.

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::Packet;
use rumqttc::mqttbytes::{self};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::stream::DeviceStream;

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
    /// The bytes are not a valid MQTT 3.1.1 packet.
    #[error("malformed packet: {0}")]
    Malformed(mqttbytes::Error),
    /// The packet is larger than the gateway accepts.
    #[error("packet of {0} bytes is over the limit")]
    TooLarge(usize),
}

/// One connection's stream with its buffers.
#[derive(Debug)]
pub struct PacketIo {
    stream: DeviceStream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    max_packet_bytes: usize,
}

impl PacketIo {
    /// Wraps an accepted stream.
    pub fn new(stream: DeviceStream, max_packet_bytes: usize) -> Self {
        Self {
            stream,
            read_buf: BytesMut::with_capacity(READ_BUFFER_INITIAL),
            write_buf: BytesMut::new(),
            max_packet_bytes,
        }
    }

    /// Reads the next packet; `None` when the peer closed the stream cleanly between
    /// packets.
    ///
    /// Cancel-safe: bytes read before a cancellation stay in the buffer for the next call.
    pub async fn read(&mut self) -> Result<Option<Packet>, PacketError> {
        loop {
            match Packet::read(&mut self.read_buf, self.max_packet_bytes) {
                Ok(packet) => {
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

    /// Writes one packet.
    pub async fn write(&mut self, packet: &Packet) -> Result<(), PacketError> {
        self.encode(packet)?;
        self.flush().await
    }

    /// Encodes a packet into the write buffer without sending it, so several can go out in
    /// one write.
    pub fn encode(&mut self, packet: &Packet) -> Result<(), PacketError> {
        // Outgoing packets are the gateway's own; the limit for them is the protocol's.
        packet
            .write(&mut self.write_buf, usize::MAX)
            .map(|_| ())
            .map_err(PacketError::Malformed)
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
