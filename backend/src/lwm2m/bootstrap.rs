//! The front as a bootstrap server (LwM2M 1.0, section 5.2.7: client-initiated bootstrap).
//! A provisioned device asks for its server (`POST /bs?ep=SERIAL`); the front answers 2.04
//! and then, from a task of its own, configures the device in four confirmable requests:
//!
//! | request | what it says |
//! |---|---|
//! | Delete `/` | forget the servers the device knew (its bootstrap account aside) |
//! | Write `/0/1` (TLV) | the Security object: the front's URI (`coaps://` with the DTLS listener, else `coap://`), not a bootstrap server, security mode PSK (0) with the device's identity (its serial) and key, or NoSec (3), short server id 1 |
//! | Write `/1/0` (TLV) | the Server object: short server id 1, notifications stored while offline, binding `U` |
//! | Bootstrap-Finish (`POST /bs`) | done: the device registers with what it was given |
//!
//! A device's key is the one its provisioning answer carries (the registry's
//! [`PskRoot`](crate::registry::PskRoot)): bootstrap is the standard way to hand it over. Only
//! an active device of the registry is bootstrapped (4.03 otherwise), and over DTLS only
//! under its own identity.

use std::net::SocketAddr;
use std::sync::Arc;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};

use super::downlink::{exchange, request};
use super::tlv::{self, Kind};
use super::{Front, reachable};
use crate::gateway::stats::bump;

/// The short server id the front gives itself in the objects it writes.
const SHORT_SERVER_ID: i64 = 1;
/// The Security object instance it writes (0 is where devices usually keep their bootstrap
/// server's account).
const SECURITY_INSTANCE: &str = "1";
/// LwM2M's security modes (the Security object's resource 2).
const MODE_PSK: i64 = 0;
const MODE_NO_SEC: i64 = 3;

/// Configures device `endpoint` at `peer` (after its Bootstrap-Request was answered):
/// counted as `lwm2m_bootstraps` when it took every request, `lwm2m_bootstraps_failed`
/// when one went unanswered or was refused.
pub(super) async fn configure(front: Arc<Front>, endpoint: String, peer: SocketAddr) {
    let stats = &front.gateway.stats;
    let mut message_id = front.exchanges.token() as u16;
    let steps = [
        (request(RequestType::Delete, &[]), ResponseType::Deleted),
        (
            write(&["0", SECURITY_INSTANCE], &security(&front, &endpoint)),
            ResponseType::Changed,
        ),
        (write(&["1", "0"], &server()), ResponseType::Changed),
        (request(RequestType::Post, &["bs"]), ResponseType::Changed),
    ];
    for (step, wanted) in steps {
        let token = front.exchanges.token();
        let answered = exchange(&front, peer, step, token, &mut message_id).await;
        let took = answered.is_ok_and(|answer| answer.header.code == MessageClass::Response(wanted));
        if !took {
            bump(&stats.lwm2m_bootstraps_failed);
            return;
        }
    }
    bump(&stats.lwm2m_bootstraps);
}

/// A confirmable Write (PUT) of `payload` as TLV to `path`.
fn write(path: &[&str], payload: &[u8]) -> Packet {
    let mut packet = request(RequestType::Put, path);
    packet.add_option(CoapOption::ContentFormat, tlv::CONTENT_FORMAT.to_be_bytes().to_vec());
    packet.payload = payload.to_vec();
    packet
}

/// The Security object instance for `endpoint`: where the front is and how to reach it.
fn security(front: &Front, endpoint: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let secured = front
        .secured
        .as_ref()
        .and_then(|s| Some((s, s.socket.local_addr().ok()?)));
    let uri = match secured {
        Some((_, addr)) => format!("coaps://{}", reachable(addr)),
        None => match front.socket.local_addr() {
            Ok(addr) => format!("coap://{}", reachable(addr)),
            Err(_) => String::new(),
        },
    };
    tlv::write(&mut out, Kind::Resource, 0, uri.as_bytes());
    tlv::write(&mut out, Kind::Resource, 1, &[0]);
    match secured {
        Some((secured, _)) => {
            tlv::write(&mut out, Kind::Resource, 2, &tlv::int_bytes(MODE_PSK));
            tlv::write(&mut out, Kind::Resource, 3, endpoint.as_bytes());
            tlv::write(&mut out, Kind::Resource, 5, secured.key(endpoint).as_bytes());
        }
        None => tlv::write(&mut out, Kind::Resource, 2, &tlv::int_bytes(MODE_NO_SEC)),
    }
    tlv::write(&mut out, Kind::Resource, 10, &tlv::int_bytes(SHORT_SERVER_ID));
    out
}

/// The Server object instance: the short server id, notifications stored while the device
/// is offline, binding `U` (a duty-cycled device registers with its own `UQ`).
fn server() -> Vec<u8> {
    let mut out = Vec::new();
    tlv::write(&mut out, Kind::Resource, 0, &tlv::int_bytes(SHORT_SERVER_ID));
    tlv::write(&mut out, Kind::Resource, 6, &[1]);
    tlv::write(&mut out, Kind::Resource, 7, b"U");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_object_names_the_front_and_reads_back() {
        let bytes = server();
        let entries = tlv::entries(&bytes).expect("parses");
        let ids: Vec<u16> = entries.iter().map(|e| e.id).collect();
        assert_eq!(ids, [0, 6, 7]);
        assert_eq!(tlv::integer(entries[0].value), Some(SHORT_SERVER_ID));
        assert_eq!(entries[2].value, b"U");
    }

    #[test]
    fn a_wildcard_listener_is_written_as_loopback() {
        let any: SocketAddr = "0.0.0.0:5683".parse().expect("address");
        assert_eq!(reachable(any), "127.0.0.1:5683".parse::<SocketAddr>().expect("address"));
        let bound: SocketAddr = "127.0.0.9:5684".parse().expect("address");
        assert_eq!(reachable(bound), bound);
    }
}
