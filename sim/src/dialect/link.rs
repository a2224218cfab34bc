//! A device's link to its backend, whatever carries it: an MQTT session over a byte stream
//! (TCP or TLS), a datagram endpoint (UDP, for CoAP), or no standing connection (a
//! device that polls over HTTP, each request a connection of its own).
//!
//! Design: [`Link::wait`] is a device's only blocking point between events, and the one path
//! by which what the server sends reaches the device: whichever link carried it, what was
//! heard goes to the dialect's reader (in the driver), and only the event it means goes on to
//! the device core; then the link acknowledges it if its protocol asks ([`Link::acknowledge`]).
//! The link answers what its own protocol owes without waking anyone: an MQTT session pings
//! when it has sent nothing for the keep-alive its CONNECT asked for, as MQTT clients do (on
//! the [wake grid](super::wake_grid), so with other devices' wake-ups), and records a QoS 1
//! publish's latency when its PUBACK comes.
//! An idle device's task holds `wait`'s future for the whole run, so it holds one timer and
//! the poll, nothing more.

use std::task::{Context, Poll};
use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use tokio::time::Instant;

use super::device_io::Shared;
use super::fault::disconnect_counter;
use super::inflight::Inflight;
use super::{Inbox, Report};
use crate::device::Event;
use crate::metrics::recorder::{Counter, Latency, Meter};
use crate::scratch;
use crate::transport::datagram::Datagram;
use crate::transport::mqtt::{Incoming, MqttConn, Reply, Started, TransportError};

/// What the server sent a device, as its link carried it.
#[derive(Debug, Clone, Copy)]
pub enum Arrival<'a> {
    /// A message on one of the device's subscriptions.
    Message {
        /// Its topic.
        topic: &'a str,
        /// Its payload.
        payload: &'a [u8],
        /// MQTT 5: where to answer it, when it is a request.
        reply: Option<&'a Reply>,
    },
    /// A datagram.
    Datagram(&'a [u8]),
}

/// What a QoS 1 publish measures when its PUBACK comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaited {
    /// Telemetry: `publish.latency` from the intended send time (and it counts as
    /// `published` once sent).
    Telemetry,
    /// A config report: `config.latency` from when the operator set it.
    Config,
    /// A command's answer: `command.latency` from when the operator sent it.
    Command,
    /// Anything else (OTA progress): nothing to record.
    Nothing,
}

/// The link dropped: the device must connect again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost;

/// A device's link.
#[derive(Debug, Default)]
pub enum Link {
    /// No standing connection: never connected, dropped, or a backend devices poll.
    #[default]
    None,
    /// An MQTT session over a byte stream.
    Stream(MqttSession),
    /// A datagram endpoint.
    Datagram(Datagram),
}

/// An MQTT session as a device holds it: the connection, the QoS 1 publishes awaiting their
/// PUBACK, and when it last sent anything.
#[derive(Debug)]
pub struct MqttSession {
    conn: MqttConn,
    /// QoS 1 publishes awaiting their PUBACK, oldest first.
    inflight: Inflight,
    /// When anything was last sent (a ping goes when nothing has for the keep-alive).
    last_sent: Instant,
}

impl Link {
    /// A fresh MQTT connection as a device's link.
    pub fn stream(conn: MqttConn) -> Self {
        Self::Stream(MqttSession {
            conn,
            inflight: Inflight::default(),
            last_sent: Instant::now(),
        })
    }

    /// Whether the device holds a connection.
    pub fn is_open(&self) -> bool {
        !matches!(self, Self::None)
    }

    /// Publishes on `topic` over an MQTT session; a QoS 1 publish records `awaited` from
    /// `since` at its PUBACK. Nothing happens without a session. `Err` means the connection
    /// just dropped (the link is then [`Link::None`]).
    ///
    /// Not an `async fn`: the packet is written before the future is returned (what the
    /// socket could not take is written when it is awaited), so the future holds neither
    /// topic nor payload.
    pub fn publish<'a>(
        &'a mut self,
        meter: &'a Meter,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        awaited: Awaited,
        since: Instant,
    ) -> impl Future<Output = Result<(), Lost>> + 'a {
        self.publish_with(meter, (topic, payload, &[]), qos, awaited, since)
    }

    /// As [`Link::publish`], with MQTT 5 `properties` (already encoded: an answer's
    /// correlation data, [`crate::transport::mqtt::answer_properties`]).
    pub fn publish_with<'a>(
        &'a mut self,
        meter: &'a Meter,
        (topic, payload, properties): (&str, &[u8], &[u8]),
        qos: QoS,
        awaited: Awaited,
        since: Instant,
    ) -> impl Future<Output = Result<(), Lost>> + 'a {
        let room = self.has_quota(meter, qos);
        let started = match self {
            Self::Stream(session) if room => Some(session.conn.start_with(topic, payload, qos, properties)),
            Self::Stream(_) | Self::None | Self::Datagram(_) => None,
        };
        self.finish_publish(started, meter, qos, awaited, since)
    }

    /// Whether a publish at `qos` may go now: a QoS 1 one not while as many as the server's
    /// Receive Maximum (MQTT 5) await their PUBACK; one held back is counted (`held_back`).
    fn has_quota(&self, meter: &Meter, qos: QoS) -> bool {
        let Self::Stream(session) = self else { return true };
        let room = qos == QoS::AtMostOnce || session.inflight.len() < usize::from(session.conn.send_quota());
        if !room {
            meter.count(Counter::HeldBack);
        }
        room
    }

    /// Publishes a telemetry report at the model's QoS over an MQTT session, timed from its
    /// intended send, on the topic `write_topic` writes into a scratch buffer (given back
    /// once the packet is written, before anything waits), with `properties` over MQTT 5 (the
    /// model's, encoded); a connection that drops on it goes to the inbox.
    #[allow(
        clippy::manual_async_fn,
        reason = "the write starts before the future, which then holds no topic or payload"
    )]
    pub fn publish_report<'a>(
        &'a mut self,
        meter: &'a Meter,
        write_topic: &dyn Fn(&mut String),
        report: Report<'_>,
        properties: &[u8],
        inbox: &'a mut Inbox,
    ) -> impl Future<Output = ()> + use<'a> {
        let qos = if report.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let mut topic = scratch::string();
        write_topic(&mut topic);
        let room = self.has_quota(meter, qos);
        let started = match self {
            Self::Stream(session) if room => {
                Some(session.conn.start_telemetry(&topic, report.payload, qos, properties))
            }
            Self::Stream(_) | Self::None | Self::Datagram(_) => None,
        };
        scratch::give_string(topic);
        let sent = self.finish_publish(started, meter, qos, Awaited::Telemetry, report.intended);
        async move {
            if sent.await.is_err() {
                inbox.push(Event::ConnectionLost);
            }
        }
    }

    /// Writes what a started publish left, then keeps its books ([`MqttSession::keep_books`]).
    ///
    /// A publish the socket took whole (nearly every one) is done before the future: its
    /// books are kept now and the future holds nothing but the outcome. One it took only in
    /// part (or TLS holds) is finished in a box of its own, so a report's future, boxed at
    /// every report, is small (docs/scale.md, "Counting instructions").
    fn finish_publish<'a>(
        &'a mut self,
        started: Option<Result<Started, TransportError>>,
        meter: &'a Meter,
        qos: QoS,
        awaited: Awaited,
        since: Instant,
    ) -> impl Future<Output = Result<(), Lost>> + 'a {
        let mut done = Ok(());
        let mut rest = None;
        match (started, &mut *self) {
            (Some(Ok(started)), Self::Stream(session)) => match session.conn.finished(started) {
                Ok(pkid) => session.keep_books(pkid, meter, qos, awaited, since),
                Err(started) => rest = Some(started),
            },
            (Some(Err(_)), Self::Stream(_)) => {
                self.drop_conn();
                done = Err(Lost);
            }
            (Some(_), Self::None | Self::Datagram(_)) | (None, _) => {}
        }
        let finishing = rest.map(|started| Box::pin(self.finish_rest(started, meter, qos, awaited, since)));
        async move {
            match finishing {
                Some(finishing) => finishing.await,
                None => done,
            }
        }
    }

    /// Writes what the socket did not take of a started publish, then keeps its books.
    async fn finish_rest(
        &mut self,
        started: Started,
        meter: &Meter,
        qos: QoS,
        awaited: Awaited,
        since: Instant,
    ) -> Result<(), Lost> {
        let Self::Stream(session) = self else { return Ok(()) };
        match session.conn.finish(started).await {
            Ok(pkid) => {
                session.keep_books(pkid, meter, qos, awaited, since);
                Ok(())
            }
            Err(_) => {
                self.drop_conn();
                Err(Lost)
            }
        }
    }

    /// Sends a datagram over a datagram endpoint; nothing happens without one.
    pub async fn send(&mut self, datagram: &[u8]) -> Result<(), Lost> {
        let Self::Datagram(endpoint) = self else { return Ok(()) };
        if endpoint.send(datagram).await.is_err() {
            self.drop_conn();
            return Err(Lost);
        }
        Ok(())
    }

    /// Sends a datagram over a datagram endpoint if the socket takes it now, without waiting
    /// (an answer sent while reading what came); `false` when it was not sent.
    pub fn try_send(&self, datagram: &[u8]) -> bool {
        match self {
            Self::Datagram(endpoint) => endpoint.try_send(datagram),
            Self::None | Self::Stream(_) => false,
        }
    }

    /// Waits up to `limit` for the PUBACKs of what is in flight (recording their latencies),
    /// before a clean goodbye. Other packets are dropped: the device is leaving.
    pub async fn flush(&mut self, meter: &Meter, limit: Duration) {
        let deadline = Instant::now() + limit;
        while let Self::Stream(session) = self
            && !session.inflight.is_empty()
        {
            match tokio::time::timeout_at(deadline, session.conn.incoming()).await {
                Ok(Ok(Some(Incoming::PubAck(pkid)))) => session.acknowledged(meter, pkid),
                Ok(Ok(Some(Incoming::PubAckRefused(pkid, _)))) => session.refused(meter, pkid),
                Ok(Ok(Some(Incoming::Disconnected(code)))) => {
                    meter.count(disconnect_counter(code));
                    return self.drop_conn();
                }
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None) | Err(_)) => return self.drop_conn(),
                Err(_) => {
                    meter.count(Counter::ErrorsTimeout);
                    return;
                }
            }
        }
    }

    /// Forgets the connection (it failed, or the device drops it as a failing link does: no
    /// goodbye, the connection reset, on the closer thread: [`MqttConn::abort`]) and what
    /// waited on it.
    pub fn drop_conn(&mut self) {
        if let Self::Stream(session) = std::mem::take(self) {
            session.conn.abort();
        }
    }

    /// Says goodbye on the connection, if its protocol has one (MQTT's DISCONNECT), and
    /// forgets it.
    pub async fn hang_up(&mut self) {
        if let Self::Stream(session) = std::mem::take(self) {
            let _ = session.conn.disconnect().await;
        }
    }

    /// Waits for what the device must act on: the wake-up at `wake_at`, a lost connection,
    /// or something the server sent it (counted as `received`, for the dialect to read, then
    /// [`Link::acknowledge`]). Answers pings and acknowledgements itself without waking the
    /// device.
    ///
    /// Nothing here listens for the end of the run: the shard drops its device tasks then,
    /// which closes their sockets.
    ///
    /// Not an `async fn`: its arguments are moved into the block once rather than held twice
    /// (rust-lang/rust#62958), and the link is polled rather than awaited, so an idle
    /// device's future holds its alarm in the shard's calendar, its wake-up time and a few
    /// references, nothing more. Reading what came is the caller's, so the reader is not held
    /// here either. A wait dropped before it ends (the run is over) leaves its alarm set
    /// until its time; the calendar goes with the shard.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would hold its arguments twice in every idle device's future"
    )]
    pub fn wait<'a>(&'a mut self, shared: &'a Shared, wake_at: Instant) -> impl Future<Output = Woken> + 'a {
        // Held as the calendar's microseconds (rounded up: never early), half an instant's
        // room in every idle device's future.
        let wake_us = shared.calendar.micros(wake_at);
        async move {
            loop {
                // One alarm for both the wake and the session's own duty (a keep-alive ping),
                // kept while the link deals with what is its own (a PUBACK). Only the alarm
                // and the poll live across the wait: whether it was the duty that came is
                // told after by the clock (an alarm never rings early). The duty falls on the
                // wake grid, a little early, so it shares a turn of the shard's thread with
                // other devices' wake-ups instead of taking one of its own. One reading of
                // the clock serves the look at the wake-up and the alarm's.
                let alarm = {
                    // (A block: an instant held across the wait would take room in the future.)
                    let wake_at = shared.calendar.instant(wake_us);
                    let now = Instant::now();
                    // A wake-up already due is taken before what the link heard: a device
                    // reports at the moment it connects, before it reads what its server sent
                    // meanwhile (an LwM2M server that observes a sensor at once gets its first
                    // reading). A timer already past would only fire at the timer wheel's
                    // next turn.
                    if wake_at <= now {
                        return Woken::Wake(wake_at);
                    }
                    let deadline = self.due().map_or(wake_at, |due| shared.grid.floor_min(due, wake_at));
                    // The shard's calendar keeps the deadline: the wait holds its alarm, not a
                    // timer of its own.
                    shared.calendar.set_from(deadline, now)
                };
                // Matched as it comes, not bound first: a bound result would take room in the
                // future for the whole wait.
                {
                    let link = &mut *self;
                    // The alarm is looked at first: a device whose time has come wakes without
                    // a look at its socket (what came meanwhile stays there for its next
                    // wait), and a due wake-up is taken before what the link heard, as above.
                    // Reads are cancel-safe (they keep partial bytes); the alarm is given up
                    // however the wait ends (here, so that the future does not hold it
                    // twice).
                    match std::future::poll_fn(move |cx| {
                        let polled = match shared.calendar.poll(alarm, cx) {
                            Poll::Ready(()) => None,
                            Poll::Pending => Some(std::task::ready!(link.poll_for_device(&shared.meter, cx))),
                        };
                        shared.calendar.cancel(alarm);
                        Poll::Ready(polled)
                    })
                    .await
                    {
                        // The alarm rang: for the wake-up if its time has come, else for the
                        // duty.
                        None => {
                            let wake_at = shared.calendar.instant(wake_us);
                            if Instant::now() >= wake_at {
                                return Woken::Wake(wake_at);
                            }
                        }
                        Some(Ok(ForDevice::Heard(heard))) => {
                            shared.meter.count(Counter::Received);
                            return Woken::Heard(heard);
                        }
                        Some(Ok(ForDevice::Ended(code))) => {
                            shared.meter.count(disconnect_counter(code));
                            self.drop_conn();
                            return Woken::Lost;
                        }
                        Some(Err(Lost)) => {
                            self.drop_conn();
                            return Woken::Lost;
                        }
                    }
                }
                // Boxed, as the acknowledgement: rare next to waiting, so an idle device's
                // task does not hold its future.
                if Box::pin(self.on_due()).await.is_err() {
                    self.drop_conn();
                    return Woken::Lost;
                }
            }
        }
    }

    /// Acknowledges what was heard if its protocol asks for it (a QoS 1 message's PUBACK),
    /// once the device has read it. `Err` means the connection just dropped.
    pub async fn acknowledge(&mut self, pkid: u16) -> Result<(), Lost> {
        let Self::Stream(session) = self else { return Ok(()) };
        if session.conn.ack(pkid).await.is_err() {
            self.drop_conn();
            return Err(Lost);
        }
        Ok(())
    }

    /// When the link must next act on its own, if ever.
    fn due(&self) -> Option<Instant> {
        match self {
            // As MQTT clients do: a ping once nothing has been sent for the keep-alive (the
            // server waits one and a half before it gives up on the client).
            Self::Stream(session) => session.conn.keep_alive().map(|every| session.last_sent + every),
            Self::None | Self::Datagram(_) => None,
        }
    }

    /// Acts on its own: an MQTT session pings.
    async fn on_due(&mut self) -> Result<(), Lost> {
        if let Self::Stream(session) = self {
            session.conn.ping().await.map_err(|_| Lost)?;
            session.last_sent = Instant::now();
        }
        Ok(())
    }

    /// What the server sent the device next, if it has sent it; otherwise the task is woken
    /// when it might have. What is the link's own is dealt with on the way, without ending
    /// the poll: a PUBACK (its latency recorded), a refusal (counted), a SUBACK or PINGRESP.
    /// Without a connection, never.
    fn poll_for_device(&mut self, meter: &Meter, cx: &mut Context<'_>) -> Poll<Result<ForDevice, Lost>> {
        match self {
            Self::None => Poll::Pending,
            Self::Stream(session) => loop {
                match std::task::ready!(session.conn.poll_incoming(cx)) {
                    Ok(Some(Incoming::PubAck(pkid))) => session.acknowledged(meter, pkid),
                    Ok(Some(Incoming::PubAckRefused(pkid, _))) => session.refused(meter, pkid),
                    Ok(Some(Incoming::SubscribeRefused)) => meter.count(Counter::ErrorsSubscribeRefused),
                    Ok(Some(Incoming::Other)) => {}
                    Ok(Some(Incoming::Publish(message))) => {
                        return Poll::Ready(Ok(ForDevice::Heard(Heard::Message(message))));
                    }
                    Ok(Some(Incoming::Request(message, reply))) => {
                        return Poll::Ready(Ok(ForDevice::Heard(Heard::Request(message, reply))));
                    }
                    Ok(Some(Incoming::Disconnected(code))) => return Poll::Ready(Ok(ForDevice::Ended(code))),
                    Ok(None) | Err(_) => return Poll::Ready(Err(Lost)),
                }
            },
            Self::Datagram(endpoint) => endpoint.poll_receive(cx).map(|received| match received {
                Ok(datagram) => Ok(ForDevice::Heard(Heard::Datagram(datagram.into_boxed_slice()))),
                Err(_) => Err(Lost),
            }),
        }
    }
}

/// What ended a device's wait.
#[derive(Debug)]
pub enum Woken {
    /// The wake-up time came (the time it was set for, to the calendar's microsecond above).
    Wake(Instant),
    /// The connection dropped (the link is [`Link::None`] now).
    Lost,
    /// The server sent the device something, for its dialect to read.
    Heard(Heard),
}

/// Something the server sent a device.
#[derive(Debug)]
pub enum Heard {
    /// An MQTT message.
    Message(Box<rumqttc::mqttbytes::v4::Publish>),
    /// An MQTT 5 request: a message with where to answer it.
    Request(Box<rumqttc::mqttbytes::v4::Publish>, Box<Reply>),
    /// A datagram.
    Datagram(Box<[u8]>),
}

impl Heard {
    /// What arrived, as the dialect reads it.
    pub fn arrival(&self) -> Arrival<'_> {
        match self {
            Self::Message(message) => Arrival::Message {
                topic: &message.topic,
                payload: &message.payload,
                reply: None,
            },
            Self::Request(message, reply) => Arrival::Message {
                topic: &message.topic,
                payload: &message.payload,
                reply: Some(reply),
            },
            Self::Datagram(datagram) => Arrival::Datagram(datagram),
        }
    }

    /// The packet id to acknowledge once it is read, if its protocol asks for one.
    pub fn owed_ack(&self) -> Option<u16> {
        match self {
            Self::Message(message) | Self::Request(message, _) if message.qos == QoS::AtLeastOnce => Some(message.pkid),
            Self::Message(_) | Self::Request(..) | Self::Datagram(_) => None,
        }
    }
}

/// What a link's poll found for the device.
enum ForDevice {
    /// Something for the device to read.
    Heard(Heard),
    /// MQTT 5: the server ended the connection with a DISCONNECT of this reason code.
    Ended(u8),
}

impl MqttSession {
    /// Keeps the books of publish `pkid`, sent: `published` (for telemetry), when the session
    /// last sent, and a QoS 1 publish's wait for its PUBACK, timed from `since`.
    fn keep_books(&mut self, pkid: u16, meter: &Meter, qos: QoS, awaited: Awaited, since: Instant) {
        if awaited == Awaited::Telemetry {
            meter.count(Counter::Published);
        }
        self.last_sent = Instant::now();
        if qos == QoS::AtLeastOnce && self.inflight.push((pkid, since, awaited)).is_some() {
            // The oldest was forgotten: its PUBACK counts as never come.
            meter.count(Counter::ErrorsTimeout);
        }
    }

    /// A message the server refused in its PUBACK (MQTT 5): counted, and not timed.
    fn refused(&mut self, meter: &Meter, pkid: u16) {
        if self.inflight.take(pkid).is_some() {
            meter.count(Counter::ErrorsPublishRefused);
        }
    }

    fn acknowledged(&mut self, meter: &Meter, pkid: u16) {
        let Some((since, awaited)) = self.inflight.take(pkid) else {
            return;
        };
        let latency = match awaited {
            Awaited::Telemetry => Latency::Publish,
            Awaited::Config => Latency::Config,
            Awaited::Command => Latency::Command,
            Awaited::Nothing => return,
        };
        meter.record(latency, since);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::precise_timer::Timer;
    use crate::dialect::wake_grid::WakeGrid;
    use crate::model::Reading;
    use crate::transport::datagram::Datagram;
    use crate::transport::mqtt::ConnectParams;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The first client of `listener`, its CONNECT read (the first bytes it sent) and
    /// accepted.
    async fn accept_connect(listener: &tokio::net::TcpListener) -> (tokio::net::TcpStream, [u8; 64]) {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut connect = [0u8; 64];
        assert!(socket.read(&mut connect).await.expect("CONNECT") > 12);
        socket.write_all(&[0x20, 2, 0, 0]).await.expect("CONNACK");
        (socket, connect)
    }

    /// An MQTT server for one client: it checks the CONNECT asks for `keep_alive_s`, answers
    /// it, and ends with the instant the next two bytes came, the bytes and the socket (kept
    /// open, so the client does not see it close before the test sees the bytes).
    async fn quiet_server(
        keep_alive_s: u16,
    ) -> (
        std::net::SocketAddr,
        tokio::task::JoinHandle<(Instant, [u8; 2], tokio::net::TcpStream)>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, connect) = accept_connect(&listener).await;
            // After the header, the protocol name and level and the flags: the keep-alive.
            assert_eq!(connect[10..12], keep_alive_s.to_be_bytes(), "the CONNECT's keep-alive");
            let mut next = [0u8; 2];
            socket.read_exact(&mut next).await.expect("two more bytes");
            (Instant::now(), next, socket)
        });
        (addr, server)
    }

    /// A dropped connection reaches the server as a reset, as a failed link's does, not as the
    /// goodbye of a close; a hung-up one says DISCONNECT and closes.
    #[tokio::test]
    async fn a_dropped_connection_resets_and_a_hung_up_one_says_goodbye() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connect = || MqttConn::connect(addr, None, ConnectParams::plain("dropped", 60));
        let ((conn, _), (mut server, _)) =
            tokio::join!(async { connect().await.expect("connect") }, accept_connect(&listener));
        let mut link = Link::stream(conn);
        link.drop_conn();
        assert!(matches!(link, Link::None));
        let mut rest = [0u8; 8];
        let read = server.read(&mut rest).await;
        assert_eq!(
            read.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionReset),
            "the server sees the connection reset"
        );

        let ((conn, _), (mut server, _)) =
            tokio::join!(async { connect().await.expect("connect") }, accept_connect(&listener));
        Link::stream(conn).hang_up().await;
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.expect("a clean close");
        assert_eq!(rest, [0xE0, 0], "DISCONNECT, then the end of the stream");
    }

    /// A quiet MQTT session pings once it has sent nothing for the keep-alive its CONNECT
    /// asked for, on the wake grid (a little before), so the ping shares a turn of the
    /// shard's thread with other wake-ups.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_session_pings_at_its_keep_alive_on_the_wake_grid() {
        const KEEP_ALIVE_S: u16 = 45;
        let start = Instant::now();
        let shared = Shared {
            grid: WakeGrid::new(start, Duration::from_millis(4)),
            ..Shared::default()
        };
        let (addr, server) = quiet_server(KEEP_ALIVE_S).await;
        let params = ConnectParams::plain("quiet", KEEP_ALIVE_S);
        let (conn, _) = MqttConn::connect(addr, None, params).await.expect("connect");
        // Its last send (the CONNECT, as the link counts it) is off the grid.
        tokio::time::advance(Duration::from_micros(1_300)).await;
        let mut link = Link::stream(conn);
        let far = start + Duration::from_secs(100);
        tokio::select! {
            () = shared.calendar.ring(&Timer::Wheel) => unreachable!("the calendar rings for ever"),
            woken = link.wait(&shared, far) => panic!("the wait ended: {woken:?}"),
            sent = server => {
                let (at, next, _socket) = sent.expect("server");
                assert_eq!(next, [0xC0, 0], "a PINGREQ");
                let at = at.duration_since(start);
                // On the grid, 1.3 ms before its keep-alive, give or take the timer wheel's
                // millisecond (off the grid it would be 45.0013 s or later).
                let (every, tick) = (Duration::from_secs(KEEP_ALIVE_S.into()), Duration::from_millis(1));
                assert!(every <= at && at < every + tick, "pinged {at:?} after the start");
            }
        }
    }

    /// A session whose CONNECT asked for no keep-alive (0) never pings: its wait lasts until
    /// its wake-up.
    #[tokio::test(start_paused = true)]
    async fn a_session_without_a_keep_alive_never_pings() {
        let shared = Shared::default();
        let (addr, server) = quiet_server(0).await;
        let params = ConnectParams::plain("quiet", 0);
        let (conn, _) = MqttConn::connect(addr, None, params).await.expect("connect");
        let mut link = Link::stream(conn);
        let far = Instant::now() + Duration::from_secs(600);
        let woken = tokio::select! {
            () = shared.calendar.ring(&Timer::Wheel) => unreachable!("the calendar rings for ever"),
            woken = link.wait(&shared, far) => woken,
        };
        assert!(
            matches!(woken, Woken::Wake(_)),
            "the wait lasts to its wake-up: {woken:?}"
        );
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !server.is_finished(),
            "the server was sent something: {:?}",
            server.await
        );
    }

    /// What is the link's own ends no wait: a PUBACK (its publish's latency recorded), a
    /// SUBACK and a PINGRESP are read on the way to the message that follows them in the
    /// same segment, which ends the wait, counted as received. A wake-up already due is
    /// taken before what the socket holds, which waits for the next wait.
    #[tokio::test]
    async fn acknowledgements_are_the_links_own_and_a_message_ends_the_wait() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = accept_connect(&listener).await;
            // The QoS 1 PUBLISH of `t` with `{}`: header, topic, packet id, payload.
            let mut publish = [0u8; 9];
            socket.read_exact(&mut publish).await.expect("PUBLISH");
            assert_eq!(publish[..5], [0x32, 7, 0, 1, b't'], "a QoS 1 PUBLISH of t");
            let mut answer = vec![0x40, 2, publish[5], publish[6]]; // PUBACK
            answer.extend_from_slice(&[0x90, 3, 0, 9, 0]); // SUBACK, granted
            answer.extend_from_slice(&[0xD0, 0]); // PINGRESP
            answer.extend_from_slice(&[0x30, 5, 0, 1, b'c', b'h', b'i']); // PUBLISH c, "hi"
            socket.write_all(&answer).await.expect("answers");
            socket
        });
        let (conn, _) = MqttConn::connect(addr, None, ConnectParams::plain("acks", 0))
            .await
            .expect("connect");
        let mut link = Link::stream(conn);
        let shared = Shared::default();
        let since = Instant::now();
        let published = link.publish(&shared.meter, "t", b"{}", QoS::AtLeastOnce, Awaited::Telemetry, since);
        published.await.expect("published");
        let _socket = server.await.expect("server");

        // Due already: the wake-up comes first, whatever the socket holds.
        assert!(matches!(link.wait(&shared, since).await, Woken::Wake(_)));
        let far = Instant::now() + Duration::from_secs(30);
        let woken = tokio::select! {
            () = shared.calendar.ring(&Timer::Wheel) => unreachable!("the calendar rings for ever"),
            woken = link.wait(&shared, far) => woken,
        };
        let Woken::Heard(heard) = woken else {
            panic!("the message ends the wait: {woken:?}");
        };
        assert!(matches!(
            heard.arrival(),
            Arrival::Message {
                topic: "c",
                payload: b"hi",
                reply: None
            }
        ));
        let seen = shared.meter.take();
        assert_eq!(seen.samples(Latency::Publish), 1, "the PUBACK's latency");
        assert_eq!((seen.count(Counter::Published), seen.count(Counter::Received)), (1, 1));
        assert!(link.is_open());
    }

    /// A report is written and its books kept when it is handed over, before its future is
    /// polled; the future holds neither payload nor topic (they are dropped before it is
    /// awaited: this would not compile if it did).
    #[tokio::test]
    async fn a_report_is_written_before_its_future_which_holds_no_payload() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = accept_connect(&listener).await;
            // The QoS 1 PUBLISH of `t/7` with `{"v":1}`: header, topic, packet id, payload.
            let mut publish = [0u8; 16];
            socket.read_exact(&mut publish).await.expect("PUBLISH");
            assert_eq!(
                publish[..7],
                [0x32, 14, 0, 3, b't', b'/', b'7'],
                "a QoS 1 PUBLISH of t/7"
            );
            assert_eq!(&publish[9..], b"{\"v\":1}");
            socket
        });
        let (conn, _) = MqttConn::connect(addr, None, ConnectParams::plain("early", 0))
            .await
            .expect("connect");
        let mut link = Link::stream(conn);
        let (shared, mut inbox) = (Shared::default(), Inbox::default());
        let (payload, firmware) = (br#"{"v":1}"#.to_vec(), String::from("1.0"));
        let reading = Reading {
            seq: 1,
            uptime: Duration::ZERO,
            battery: None,
            volts: None,
            low_battery: false,
            value: 1.0,
            rssi: None,
            firmware: &firmware,
            errors: &[],
        };
        let report = Report {
            payload: &payload,
            qos: 1,
            intended: Instant::now(),
            reading: &reading,
        };
        let topic = String::from("t/7");
        let sending = link.publish_report(&shared.meter, &|out| out.push_str(&topic), report, &[], &mut inbox);
        drop((payload, firmware, topic));
        let written = tokio::time::timeout(Duration::from_secs(10), server).await;
        let _socket = written
            .expect("the PUBLISH came before the future was polled")
            .expect("server");
        assert_eq!(
            shared.meter.take().count(Counter::Published),
            1,
            "counted, not yet polled"
        );
        sending.await;
        assert!(inbox.pop().is_none(), "the connection holds");
        let Link::Stream(session) = &link else {
            panic!("a stream link")
        };
        assert_eq!(session.inflight.len(), 1, "its PUBACK awaited");
    }

    /// A datagram from the server ends the wait as an MQTT message does, counted as received,
    /// for the dialect to read; an idle link only wakes.
    #[tokio::test]
    async fn a_datagram_ends_the_wait_for_the_reader_and_an_idle_link_only_wakes() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = Datagram::open(server.local_addr().expect("addr"), None)
            .await
            .expect("open");
        let device = endpoint.local_addr().expect("addr");
        let mut link = Link::Datagram(endpoint);
        let shared = Shared::default();
        let meter = &shared.meter;
        server.send_to(b"ping", device).await.expect("send");
        server.send_to(b"config 7", device).await.expect("send");
        let far = Instant::now() + Duration::from_secs(30);
        let mut heard = Vec::new();
        for _ in 0..2 {
            let Woken::Heard(what) = link.wait(&shared, far).await else {
                panic!("the datagrams end the wait");
            };
            assert_eq!(what.owed_ack(), None, "a datagram owes no MQTT acknowledgement");
            let Arrival::Datagram(bytes) = what.arrival() else {
                panic!("a datagram arrives as one");
            };
            heard.push(bytes.to_vec());
        }
        assert_eq!(heard, [b"ping".to_vec(), b"config 7".to_vec()]);
        assert_eq!(meter.take().count(Counter::Received), 2);

        let mut idle = Link::None;
        let soon = Instant::now() + Duration::from_millis(20);
        let woken = tokio::select! {
            () = shared.calendar.ring(&Timer::Wheel) => unreachable!("the calendar rings for ever"),
            woken = idle.wait(&shared, soon) => woken,
        };
        // The calendar's microsecond, rounded up: never before the time asked.
        assert!(matches!(woken, Woken::Wake(at) if at >= soon && at - soon < Duration::from_micros(1)));
        assert!(Instant::now() >= soon, "not before its time");
    }
}
