//! CoAP over a device's datagram endpoint (RFC 7252), on coap-lite's message codec: a
//! confirmable request and the wait for its answer, with the specification's retransmissions
//! (ACK_TIMEOUT 2 s stretched by a random factor up to 1.5, doubled at each of at most
//! MAX_RETRANSMIT 4 sends again), an empty acknowledgement followed by a separate response,
//! and a Reset. What the server sends meanwhile that is not the answer (its own requests) is
//! handed to the caller, so a device answers its server while it waits on it.

use std::time::Duration;

use coap_lite::{MessageClass, MessageType, Packet};
use tokio::time::{Instant, timeout_at};

use super::datagram::Datagram;
use crate::metrics::recorder::{Counter, Meter};

/// How long a first acknowledgement is waited for (RFC 7252, section 4.8).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// The most the first wait is stretched by, at random, so devices do not retry in step.
pub const ACK_RANDOM_FACTOR: f64 = 1.5;
/// How often a confirmable message is sent again before the exchange is given up.
pub const MAX_RETRANSMIT: u32 = 4;
/// How long a separate response may take after an empty acknowledgement: MAX_TRANSMIT_WAIT.
pub const MAX_TRANSMIT_WAIT: Duration = Duration::from_secs(93);

/// Why an exchange ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeError {
    /// Nothing came after every retransmission (or no separate response after the empty
    /// acknowledgement).
    Timeout,
    /// The server reset the exchange: it does not know it.
    Reset,
    /// The socket failed.
    Io(std::io::ErrorKind),
    /// The request could not be encoded (too large).
    Encode,
}

/// Sends confirmable `request` (its message id and token set) and waits for its answer: a
/// piggybacked response, or an empty acknowledgement and then a separate response (itself
/// acknowledged when confirmable); for a confirmable response (a notification), its empty
/// acknowledgement. `jitter` (0 to 1) places the first timeout within the
/// random factor: drawn by the caller, so a run's retransmissions follow its seed. What else
/// arrives meanwhile goes to `other`; what does not decode is counted as `errors.protocol`.
pub async fn exchange(
    endpoint: &Datagram,
    request: &Packet,
    jitter: f64,
    meter: &Meter,
    mut other: impl FnMut(Packet),
) -> Result<Packet, ExchangeError> {
    let bytes = request.to_bytes().map_err(|_| ExchangeError::Encode)?;
    let id = request.header.message_id;
    let sent_response = matches!(request.header.code, MessageClass::Response(_));
    let mut wait = ACK_TIMEOUT.mul_f64(1.0 + (ACK_RANDOM_FACTOR - 1.0) * jitter.clamp(0.0, 1.0));
    let mut sent_again = 0;
    let mut acknowledged = false;
    endpoint.send(&bytes).await.map_err(|e| ExchangeError::Io(e.kind()))?;
    let mut deadline = Instant::now() + wait;
    loop {
        let datagram = match timeout_at(deadline, endpoint.receive()).await {
            Err(_) if acknowledged || sent_again >= MAX_RETRANSMIT => return Err(ExchangeError::Timeout),
            Err(_) => {
                sent_again += 1;
                meter.count(Counter::CoapRetransmissions);
                endpoint.send(&bytes).await.map_err(|e| ExchangeError::Io(e.kind()))?;
                wait *= 2;
                deadline = Instant::now() + wait;
                continue;
            }
            Ok(Err(e)) => return Err(ExchangeError::Io(e.kind())),
            Ok(Ok(datagram)) => datagram,
        };
        let Some(packet) = decode(&datagram) else {
            meter.count(Counter::ErrorsProtocol);
            continue;
        };
        let ours = packet.header.message_id == id;
        let answer =
            matches!(packet.header.code, MessageClass::Response(_)) && packet.get_token() == request.get_token();
        match packet.header.get_type() {
            // What was sent is itself a response (a confirmable notification): its empty
            // acknowledgement is all that comes.
            MessageType::Acknowledgement if ours && packet.header.code == MessageClass::Empty && sent_response => {
                return Ok(packet);
            }
            MessageType::Acknowledgement if ours && packet.header.code == MessageClass::Empty => {
                // The server has the request and answers later: stop sending it again.
                acknowledged = true;
                deadline = Instant::now() + MAX_TRANSMIT_WAIT;
            }
            MessageType::Acknowledgement if ours && answer => return Ok(packet),
            MessageType::Reset if ours => return Err(ExchangeError::Reset),
            MessageType::Confirmable | MessageType::NonConfirmable if answer => {
                if packet.header.get_type() == MessageType::Confirmable {
                    // A lost acknowledgement is asked for again by the server's retransmission.
                    let _ = endpoint.try_send(&empty_ack(packet.header.message_id));
                }
                return Ok(packet);
            }
            _ => other(packet),
        }
    }
}

/// The message `bytes` hold: `None` for what does not decode, and for another CoAP version
/// than 1 (RFC 7252, section 3: silently ignored; coap-lite decodes any version).
pub fn decode(bytes: &[u8]) -> Option<Packet> {
    Packet::from_bytes(bytes)
        .ok()
        .filter(|packet| packet.header.get_version() == 1)
}

/// An empty acknowledgement of message `id`.
pub fn empty_ack(id: u16) -> Vec<u8> {
    let [high, low] = id.to_be_bytes();
    // Version 1, type ACK, no token; code 0.00.
    vec![0x60, 0x00, high, low]
}

/// The answer to `request`: piggybacked on its acknowledgement when it is confirmable, a
/// non-confirmable message of id `id` when it is not; same token, no options yet.
pub fn answer_to(request: &Packet, id: u16) -> Packet {
    let mut answer = Packet::new();
    if request.header.get_type() == MessageType::Confirmable {
        answer.header.set_type(MessageType::Acknowledgement);
        answer.header.message_id = request.header.message_id;
    } else {
        answer.header.set_type(MessageType::NonConfirmable);
        answer.header.message_id = id;
    }
    answer.set_token(request.get_token().to_vec());
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::{CoapOption, RequestType, ResponseType};
    use tokio::net::UdpSocket;

    fn request(id: u16) -> Packet {
        let mut packet = Packet::new();
        packet.header.set_type(MessageType::Confirmable);
        packet.header.code = MessageClass::Request(RequestType::Post);
        packet.header.message_id = id;
        packet.set_token(vec![1, 2, 3, 4]);
        packet.add_option(CoapOption::UriPath, b"rd".to_vec());
        packet
    }

    async fn pair() -> (UdpSocket, Datagram) {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = Datagram::open(server.local_addr().expect("addr"), None)
            .await
            .expect("open");
        (server, endpoint)
    }

    /// A server that drops the first two sends: the request goes three times, the waits
    /// doubling from 2 to 3 s (paused time), and the answer ends it.
    #[tokio::test(start_paused = true)]
    async fn a_lost_request_is_sent_again_with_doubling_waits() {
        let (server, endpoint) = pair().await;
        let meter = Meter::default();
        let started = Instant::now();
        let serve = async {
            let mut buf = [0; 256];
            let mut arrivals = Vec::new();
            for _ in 0..3 {
                let (len, from) = server.recv_from(&mut buf).await.expect("recv");
                arrivals.push(Instant::now() - started);
                let got = Packet::from_bytes(&buf[..len]).expect("decodes");
                if arrivals.len() == 3 {
                    let mut answer = answer_to(&got, 0);
                    answer.header.code = MessageClass::Response(ResponseType::Created);
                    server
                        .send_to(&answer.to_bytes().expect("encodes"), from)
                        .await
                        .expect("send");
                }
            }
            arrivals
        };
        let asked = request(7);
        let (answer, arrivals) = tokio::join!(exchange(&endpoint, &asked, 0.0, &meter, |_| {}), serve);
        let answer = answer.expect("answered");
        assert_eq!(answer.header.code, MessageClass::Response(ResponseType::Created));
        assert_eq!(answer.header.get_type(), MessageType::Acknowledgement);
        let secs: Vec<u64> = arrivals.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 2, 6], "sent at once, after 2 s, after 4 s more");
        assert_eq!(meter.take().count(Counter::CoapRetransmissions), 2);
    }

    /// A confirmable notification is a response: the empty acknowledgement of it ends the
    /// exchange, with no separate response awaited.
    #[tokio::test]
    async fn a_confirmable_response_ends_at_its_empty_acknowledgement() {
        let (server, endpoint) = pair().await;
        let meter = Meter::default();
        let mut notification = Packet::new();
        notification.header.set_type(MessageType::Confirmable);
        notification.header.code = MessageClass::Response(ResponseType::Content);
        notification.header.message_id = 77;
        notification.set_token(vec![9, 9]);
        notification.payload = b"21.5".to_vec();
        let serve = async {
            let mut buf = [0; 256];
            let (len, from) = server.recv_from(&mut buf).await.expect("recv");
            let got = Packet::from_bytes(&buf[..len]).expect("decodes");
            server
                .send_to(&empty_ack(got.header.message_id), from)
                .await
                .expect("send");
        };
        let started = Instant::now();
        let (acked, ()) = tokio::join!(exchange(&endpoint, &notification, 0.0, &meter, |_| {}), serve);
        let acked = acked.expect("acknowledged");
        assert_eq!(acked.header.code, MessageClass::Empty);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not a wait for a separate response"
        );
    }

    /// A silent server: five sends in all (the first and four retransmissions), then the
    /// exchange times out after 2 + 4 + 8 + 16 + 32 s with the factor at its largest stretch:
    /// 3 + 6 + 12 + 24 + 48.
    #[tokio::test(start_paused = true)]
    async fn a_silent_server_times_out_after_max_retransmit() {
        let (_server, endpoint) = pair().await;
        let meter = Meter::default();
        let started = Instant::now();
        let asked = request(8);
        let ended = exchange(&endpoint, &asked, 1.0, &meter, |_| {}).await;
        assert_eq!(ended.map(|_| ()), Err(ExchangeError::Timeout));
        assert_eq!((Instant::now() - started).as_secs(), 93);
        assert_eq!(meter.take().count(Counter::CoapRetransmissions), 4);
    }

    /// An empty acknowledgement, a request of the server's own, garbage, then the separate
    /// response (confirmable, so acknowledged); a Reset ends another exchange.
    #[tokio::test]
    async fn a_separate_response_is_acknowledged_and_other_messages_go_to_the_caller() {
        let (server, endpoint) = pair().await;
        let meter = Meter::default();
        let serve = async {
            let mut buf = [0; 256];
            let (len, from) = server.recv_from(&mut buf).await.expect("recv");
            let got = Packet::from_bytes(&buf[..len]).expect("decodes");
            server
                .send_to(&empty_ack(got.header.message_id), from)
                .await
                .expect("send");
            let mut read = Packet::new();
            read.header.set_type(MessageType::Confirmable);
            read.header.code = MessageClass::Request(RequestType::Get);
            read.header.message_id = 900;
            server
                .send_to(&read.to_bytes().expect("encodes"), from)
                .await
                .expect("send");
            server.send_to(&[0xFF, 0x00], from).await.expect("send");
            let mut separate = Packet::new();
            separate.header.set_type(MessageType::Confirmable);
            separate.header.code = MessageClass::Response(ResponseType::Changed);
            separate.header.message_id = 901;
            separate.set_token(got.get_token().to_vec());
            server
                .send_to(&separate.to_bytes().expect("encodes"), from)
                .await
                .expect("send");
            let (len, _) = server.recv_from(&mut buf).await.expect("the ack");
            buf[..len].to_vec()
        };
        let mut others = Vec::new();
        let asked = request(9);
        let (answer, ack) = tokio::join!(
            exchange(&endpoint, &asked, 0.0, &meter, |p| others.push(p.header.message_id)),
            serve
        );
        assert_eq!(
            answer.expect("answered").header.code,
            MessageClass::Response(ResponseType::Changed)
        );
        assert_eq!(ack, empty_ack(901), "the separate response acknowledged");
        assert_eq!(others, [900], "the server's own request goes to the caller");
        assert_eq!(meter.take().count(Counter::ErrorsProtocol), 1, "the garbage counted");

        let reset = async {
            let mut buf = [0; 256];
            let (len, from) = server.recv_from(&mut buf).await.expect("recv");
            let got = Packet::from_bytes(&buf[..len]).expect("decodes");
            let mut rst = Packet::new();
            rst.header.set_type(MessageType::Reset);
            rst.header.message_id = got.header.message_id;
            server
                .send_to(&rst.to_bytes().expect("encodes"), from)
                .await
                .expect("send");
        };
        let asked = request(10);
        let (ended, ()) = tokio::join!(exchange(&endpoint, &asked, 0.0, &meter, |_| {}), reset);
        assert_eq!(ended.map(|_| ()), Err(ExchangeError::Reset));
    }
}
