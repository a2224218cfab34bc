//! An LwM2M device written here from CoAP messages (coap-lite's codec, none of the front's
//! code), for the tests that drive the LwM2M front over real UDP.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use serde_json::Value;
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

use super::PATIENCE;

/// A device of the test's own: one socket, its requests one at a time, and the front's
/// requests kept in order as they come.
pub struct Device {
    /// Its socket.
    pub socket: UdpSocket,
    /// The front it talks to.
    pub server: SocketAddr,
    /// The message id of its last request.
    pub message_id: u16,
    /// The front's requests that came while it waited for an answer, oldest first.
    asked: VecDeque<Packet>,
}

impl Device {
    pub async fn new(server: SocketAddr) -> Self {
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
            server,
            message_id: 100,
            asked: VecDeque::new(),
        }
    }

    pub async fn receive(&self) -> Packet {
        self.receive_within(PATIENCE).await.expect("the front answers in time")
    }

    /// The next CoAP message from the front, if one comes within `wait`.
    pub async fn receive_within(&self, wait: Duration) -> Option<Packet> {
        let mut buf = [0u8; 4096];
        let (len, _) = timeout(wait, self.socket.recv_from(&mut buf))
            .await
            .ok()?
            .expect("recv");
        Some(Packet::from_bytes(&buf[..len]).expect("the front sends CoAP"))
    }

    /// Sends a confirmable request; returns the piggybacked answer.
    pub async fn request(&mut self, method: RequestType, path: &[&str], query: &[&str], payload: &[u8]) -> Packet {
        self.request_with(method, (path, query), payload, &[]).await
    }

    /// [`Device::request`] with more `options` after the path and query.
    pub async fn request_with(
        &mut self,
        method: RequestType,
        (path, query): (&[&str], &[&str]),
        payload: &[u8],
        options: &[(CoapOption, Vec<u8>)],
    ) -> Packet {
        self.message_id += 1;
        let mut packet = Packet::new();
        packet.header.set_type(MessageType::Confirmable);
        packet.header.code = MessageClass::Request(method);
        packet.header.message_id = self.message_id;
        packet.set_token(vec![0xAB, self.message_id as u8]);
        for segment in path {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        for q in query {
            packet.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        for (option, value) in options {
            packet.add_option(*option, value.clone());
        }
        packet.payload = payload.to_vec();
        self.send(&packet).await;
        loop {
            let answer = self.receive().await;
            if answer.header.get_type() == MessageType::Acknowledgement && answer.header.message_id == self.message_id {
                return answer;
            }
            if matches!(answer.header.code, MessageClass::Request(_)) {
                self.asked.push_back(answer);
            }
        }
    }

    pub async fn send(&self, packet: &Packet) {
        let bytes = packet.to_bytes().expect("encodes");
        self.socket.send_to(&bytes, self.server).await.expect("send");
    }

    /// The front's next request to the device.
    pub async fn asked(&mut self) -> Packet {
        self.try_asked(PATIENCE).await.expect("the front asks in time")
    }

    /// The front's next request to the device, if one comes within `wait`.
    pub async fn try_asked(&mut self, wait: Duration) -> Option<Packet> {
        if let Some(packet) = self.asked.pop_front() {
            return Some(packet);
        }
        let deadline = Instant::now() + wait;
        loop {
            let packet = self
                .receive_within(deadline.saturating_duration_since(Instant::now()))
                .await?;
            if matches!(packet.header.code, MessageClass::Request(_)) {
                return Some(packet);
            }
        }
    }

    /// Answers the front's `request`, piggybacked, with `code` and a text `payload`; an
    /// Observe answer carries sequence number `observe`.
    pub async fn answer(&self, request: &Packet, code: ResponseType, payload: &str, observe: Option<u32>) {
        let mut answer = Packet::new();
        answer.header.set_type(MessageType::Acknowledgement);
        answer.header.message_id = request.header.message_id;
        answer.header.code = MessageClass::Response(code);
        answer.set_token(request.get_token().to_vec());
        if let Some(seq) = observe {
            answer.set_observe_value(seq);
        }
        answer.payload = payload.as_bytes().to_vec();
        self.send(&answer).await;
    }

    /// A notification of observation `token`.
    pub async fn notify(&mut self, token: &[u8], seq: u32, payload: &str) {
        self.message_id += 1;
        let mut packet = Packet::new();
        packet.header.set_type(MessageType::NonConfirmable);
        packet.header.message_id = self.message_id;
        packet.header.code = MessageClass::Response(ResponseType::Content);
        packet.set_token(token.to_vec());
        packet.set_observe_value(seq);
        packet.payload = payload.as_bytes().to_vec();
        self.send(&packet).await;
    }

    /// Provisions `serial` through the test backend's claim; the answer's JSON.
    pub async fn provision(&mut self, serial: &str) -> (ResponseType, Value) {
        let query = [format!("ep={serial}"), "claim=factory".to_owned()];
        let query: Vec<&str> = query.iter().map(String::as_str).collect();
        let body = br#"{"secret": "s3cret", "model": "meter", "firmware": "1.0.0"}"#;
        let answer = self.request(RequestType::Post, &["provision"], &query, body).await;
        (
            code(&answer),
            serde_json::from_slice(&answer.payload).unwrap_or_default(),
        )
    }

    /// Registers `serial` with a battery, a signal and a sensor; the answer.
    pub async fn register(&mut self, serial: &str, lifetime_s: u32) -> Packet {
        let query = [
            format!("ep={serial}"),
            format!("lt={lifetime_s}"),
            "lwm2m=1.1".to_owned(),
            "b=U".to_owned(),
        ];
        let query: Vec<&str> = query.iter().map(String::as_str).collect();
        let links = b"</1/0>,</3/0>,</4/0>,</3303/0>";
        self.request(RequestType::Post, &["rd"], &query, links).await
    }
}

pub fn code(packet: &Packet) -> ResponseType {
    match packet.header.code {
        MessageClass::Response(code) => code,
        other => panic!("not a response: {other:?}"),
    }
}

pub fn path(packet: &Packet) -> String {
    let segments = packet.get_option(CoapOption::UriPath).map(|s| {
        s.iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect::<Vec<_>>()
    });
    format!("/{}", segments.unwrap_or_default().join("/"))
}

pub fn location(answer: &Packet) -> Vec<String> {
    answer
        .get_option(CoapOption::LocationPath)
        .map(|s| s.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect())
        .unwrap_or_default()
}
