//! Bootstrap on the device's side (LwM2M 1.0, section 5.2.7, client-initiated): after its
//! Bootstrap-Request (`POST /bs?ep=SERIAL`) is answered, a device takes its bootstrap
//! server's requests until Bootstrap-Finish:
//!
//! - Delete of `/`, `/0`, `/1` or an instance of them: forgets what was written there (2.02).
//! - Write (PUT) of `/0`, `/0/N`, `/1` or `/1/N` in TLV: keeps the Security object's server
//!   URI, bootstrap flag, security mode, identity and secret key, and the Server object's
//!   lifetime (2.04). Another format is 4.15; TLV that does not parse, 4.00; another object,
//!   4.04 (a simulated device keeps only what it registers with).
//! - Bootstrap-Finish (`POST /bs`): 2.04 when a written account names a server the device
//!   can reach: `coap://IP:PORT` with security mode NoSec (3), or `coaps://IP:PORT` with a
//!   pre-shared key (0); 4.06 Not Acceptable otherwise, which ends the bootstrap as failed.
//! - Anything else: 4.05.
//!
//! Sans-IO: [`serve`] answers one request; the device's dialect sends and receives.

use std::net::SocketAddr;

use coap_lite::{CoapOption, MessageClass, Packet, RequestType, ResponseType};
use fleetsim_backend::lwm2m::tlv::{self, Entry, Kind};

use crate::transport::coap;
use crate::transport::dtls::Psk;

/// The Security object.
const SECURITY: u16 = 0;
/// The Server object.
const SERVER: u16 = 1;
/// The most accounts a device keeps (what a bootstrap server writes beyond is refused).
const MAX_ACCOUNTS: usize = 4;
/// The longest URI, identity or key a device keeps.
const MAX_FIELD: usize = 255;

/// The server a bootstrap named, and how to reach it: what the device registers with.
#[derive(Clone, PartialEq, Eq)]
pub struct Server {
    /// Its address.
    pub addr: SocketAddr,
    /// The identity and key to open a DTLS session with; `None` in the clear.
    pub psk: Option<Psk>,
    /// The registration lifetime the Server object set, seconds; `None` for the device's own.
    pub lifetime_s: Option<u32>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key.
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("secured", &self.psk.is_some())
            .field("lifetime_s", &self.lifetime_s)
            .finish()
    }
}

/// What a bootstrap server wrote so far.
#[derive(Debug, Default)]
pub struct Written {
    accounts: Vec<Account>,
    /// The Server object's lifetime, seconds.
    lifetime_s: Option<u32>,
}

/// A Security object instance.
#[derive(Default)]
struct Account {
    instance: u16,
    uri: String,
    bootstrap_server: bool,
    mode: Option<i64>,
    identity: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key.
        f.debug_struct("Account")
            .field("instance", &self.instance)
            .field("uri", &self.uri)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Where a bootstrap stands after a request of the server's.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Waiting for more.
    Going,
    /// Bootstrap-Finish, with the server to register with.
    Finished(Server),
    /// Bootstrap-Finish with nothing the device can use: bootstrap failed.
    Unusable,
}

/// Answers one of the bootstrap server's requests (`id` the message id for a
/// non-confirmable answer); `None` for what is no request (an acknowledgement, a Reset).
pub fn serve(written: &mut Written, request: &Packet, id: u16) -> Option<(Packet, Step)> {
    let MessageClass::Request(method) = request.header.code else {
        return None;
    };
    let mut answer = coap::answer_to(request, id);
    let path: Option<Vec<u16>> = request
        .get_option(CoapOption::UriPath)
        .into_iter()
        .flatten()
        .map(|segment| std::str::from_utf8(segment).ok()?.parse().ok())
        .collect();
    let (code, step) = match (method, path.as_deref()) {
        (RequestType::Post, None) if is_finish(request) => match written.server() {
            Some(server) => (ResponseType::Changed, Step::Finished(server)),
            None => (ResponseType::NotAcceptable, Step::Unusable),
        },
        (RequestType::Delete, Some(path)) => (written.delete(path), Step::Going),
        (RequestType::Put, Some(path)) => (written.write(request, path), Step::Going),
        (_, None) => (ResponseType::NotFound, Step::Going),
        _ => (ResponseType::MethodNotAllowed, Step::Going),
    };
    answer.header.code = MessageClass::Response(code);
    Some((answer, step))
}

/// Whether `request` is Bootstrap-Finish: a POST of `/bs`.
fn is_finish(request: &Packet) -> bool {
    let mut segments = request.get_option(CoapOption::UriPath).into_iter().flatten();
    segments.next().is_some_and(|s| s == b"bs") && segments.next().is_none()
}

impl Written {
    /// A Delete of `path`.
    fn delete(&mut self, path: &[u16]) -> ResponseType {
        match path {
            [] => {
                self.accounts.retain(|a| a.bootstrap_server);
                self.lifetime_s = None;
            }
            [SECURITY] => self.accounts.retain(|a| a.bootstrap_server),
            [SECURITY, instance] => self.accounts.retain(|a| a.instance != *instance),
            [SERVER] | [SERVER, _] => self.lifetime_s = None,
            _ => return ResponseType::BadRequest,
        }
        ResponseType::Deleted
    }

    /// A Write of `request`'s TLV payload to `path`.
    fn write(&mut self, request: &Packet, path: &[u16]) -> ResponseType {
        let format = request
            .get_option(CoapOption::ContentFormat)
            .and_then(|values| values.front())
            .map(|value| value.iter().fold(0u16, |acc, b| acc << 8 | u16::from(*b)));
        if !matches!(format, Some(11542 | 1542)) {
            return ResponseType::UnsupportedContentFormat;
        }
        let Some(entries) = tlv::entries(&request.payload) else {
            return ResponseType::BadRequest;
        };
        // (instance, its resource entries)
        let instances: Vec<(u16, Vec<Entry<'_>>)> = match path {
            [_] => {
                let mut instances = Vec::new();
                for entry in entries {
                    if entry.kind != Kind::ObjectInstance {
                        return ResponseType::BadRequest;
                    }
                    let Some(resources) = tlv::entries(entry.value) else {
                        return ResponseType::BadRequest;
                    };
                    instances.push((entry.id, resources));
                }
                instances
            }
            [_, instance] => vec![(*instance, entries)],
            _ => return ResponseType::MethodNotAllowed,
        };
        match path[0] {
            SECURITY => {
                for (instance, resources) in instances {
                    let Some(account) = Account::read(instance, &resources) else {
                        return ResponseType::BadRequest;
                    };
                    self.accounts.retain(|a| a.instance != instance);
                    if self.accounts.len() >= MAX_ACCOUNTS {
                        return ResponseType::RequestEntityTooLarge;
                    }
                    self.accounts.push(account);
                }
            }
            SERVER => {
                for (_, resources) in instances {
                    for resource in resources.iter().filter(|r| r.kind == Kind::Resource && r.id == 1) {
                        let Some(lifetime) = tlv::integer(resource.value).and_then(|s| u32::try_from(s).ok()) else {
                            return ResponseType::BadRequest;
                        };
                        self.lifetime_s = Some(lifetime).filter(|s| *s > 0);
                    }
                }
            }
            _ => return ResponseType::NotFound,
        }
        ResponseType::Changed
    }

    /// The server the written accounts name, if the device can reach it.
    fn server(&self) -> Option<Server> {
        self.accounts
            .iter()
            .filter(|a| !a.bootstrap_server)
            .find_map(|account| {
                let (secured, rest) = match account.uri.split_once("://")? {
                    ("coap", rest) => (false, rest),
                    ("coaps", rest) => (true, rest),
                    _ => return None,
                };
                let addr: SocketAddr = rest.trim_end_matches('/').parse().ok()?;
                let psk = match (secured, account.mode) {
                    (false, Some(3)) => None,
                    (true, Some(0)) if !account.identity.is_empty() && !account.key.is_empty() => Some(Psk {
                        identity: account.identity.clone(),
                        key: account.key.clone(),
                    }),
                    _ => return None,
                };
                Some(Server {
                    addr,
                    psk,
                    lifetime_s: self.lifetime_s,
                })
            })
    }
}

impl Account {
    /// A Security object instance from its resource entries; `None` when one does not read.
    fn read(instance: u16, resources: &[Entry<'_>]) -> Option<Self> {
        let mut account = Account {
            instance,
            ..Account::default()
        };
        for resource in resources {
            if resource.kind != Kind::Resource {
                return None;
            }
            let value = resource.value;
            match resource.id {
                0 => {
                    account.uri = std::str::from_utf8(value)
                        .ok()
                        .filter(|s| s.len() <= MAX_FIELD)?
                        .to_owned()
                }
                1 => account.bootstrap_server = tlv::boolean(value)?,
                2 => account.mode = Some(tlv::integer(value)?),
                3 if value.len() <= MAX_FIELD => account.identity = value.to_vec(),
                5 if value.len() <= MAX_FIELD => account.key = value.to_vec(),
                3 | 5 => return None,
                // Server public key, SMS settings, short server id, hold-off: not needed.
                _ => {}
            }
        }
        Some(account)
    }
}

#[cfg(test)]
mod tests {
    use coap_lite::MessageType;

    use super::*;

    fn request(method: RequestType, path: &[&str], payload: Vec<u8>) -> Packet {
        let mut packet = Packet::new();
        packet.header.set_type(MessageType::Confirmable);
        packet.header.code = MessageClass::Request(method);
        packet.header.message_id = 7;
        packet.set_token(vec![1, 2]);
        for segment in path {
            packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        if !payload.is_empty() {
            packet.add_option(CoapOption::ContentFormat, 11542u16.to_be_bytes().to_vec());
        }
        packet.payload = payload;
        packet
    }

    fn security(uri: &str, mode: i64, identity: &[u8], key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        tlv::write(&mut out, Kind::Resource, 0, uri.as_bytes());
        tlv::write(&mut out, Kind::Resource, 1, &[0]);
        tlv::write(&mut out, Kind::Resource, 2, &tlv::int_bytes(mode));
        tlv::write(&mut out, Kind::Resource, 3, identity);
        tlv::write(&mut out, Kind::Resource, 5, key);
        tlv::write(&mut out, Kind::Resource, 10, &tlv::int_bytes(1));
        out
    }

    fn code(answered: Option<(Packet, Step)>) -> (ResponseType, Step) {
        let (packet, step) = answered.expect("a request is answered");
        let MessageClass::Response(code) = packet.header.code else {
            panic!("a response: {packet:?}");
        };
        (code, step)
    }

    #[test]
    fn a_bootstrap_server_configures_a_secured_server_and_finishes() {
        let mut written = Written::default();
        let served = |written: &mut Written, packet: Packet| code(serve(written, &packet, 9));
        assert_eq!(
            served(&mut written, request(RequestType::Delete, &[], Vec::new())),
            (ResponseType::Deleted, Step::Going)
        );
        let account = security("coaps://127.0.0.1:5684", 0, b"SN-1", b"00ff");
        assert_eq!(
            served(&mut written, request(RequestType::Put, &["0", "1"], account)),
            (ResponseType::Changed, Step::Going)
        );
        let mut server = Vec::new();
        tlv::write(&mut server, Kind::Resource, 0, &tlv::int_bytes(1));
        tlv::write(&mut server, Kind::Resource, 1, &tlv::int_bytes(300));
        let mut object = Vec::new();
        tlv::write(&mut object, Kind::ObjectInstance, 0, &server);
        assert_eq!(
            served(&mut written, request(RequestType::Put, &["1"], object)),
            (ResponseType::Changed, Step::Going)
        );
        let (code, step) = served(&mut written, request(RequestType::Post, &["bs"], Vec::new()));
        assert_eq!(code, ResponseType::Changed);
        assert_eq!(
            step,
            Step::Finished(Server {
                addr: "127.0.0.1:5684".parse().expect("address"),
                psk: Some(Psk {
                    identity: b"SN-1".to_vec(),
                    key: b"00ff".to_vec(),
                }),
                lifetime_s: Some(300),
            })
        );
    }

    #[test]
    fn a_finish_with_nothing_usable_is_not_acceptable() {
        let mut written = Written::default();
        let finish = || request(RequestType::Post, &["bs"], Vec::new());
        assert_eq!(
            code(serve(&mut written, &finish(), 9)),
            (ResponseType::NotAcceptable, Step::Unusable)
        );
        // A secured URI without a key, a plain one under PSK, a host name: none reachable.
        for (uri, mode, key) in [
            ("coaps://127.0.0.1:5684", 0, &b""[..]),
            ("coap://127.0.0.1:5683", 0, b"k"),
            ("coap://server.example:5683", 3, b""),
            ("coaps://127.0.0.1:5684", 2, b"k"),
        ] {
            let mut written = Written::default();
            let write = request(RequestType::Put, &["0", "1"], security(uri, mode, b"id", key));
            assert_eq!(code(serve(&mut written, &write, 9)).0, ResponseType::Changed);
            assert_eq!(
                code(serve(&mut written, &finish(), 9)).1,
                Step::Unusable,
                "{uri} mode {mode}"
            );
        }
        // A delete forgets what was written.
        let write = request(
            RequestType::Put,
            &["0", "1"],
            security("coap://127.0.0.1:5683", 3, b"", b""),
        );
        serve(&mut written, &write, 9);
        serve(&mut written, &request(RequestType::Delete, &["0", "1"], Vec::new()), 9);
        assert_eq!(code(serve(&mut written, &finish(), 9)).1, Step::Unusable);
    }

    #[test]
    fn bad_writes_are_refused_and_never_panic() {
        let mut written = Written::default();
        let mut text = request(RequestType::Put, &["0", "1"], b"coap://x".to_vec());
        text.clear_option(CoapOption::ContentFormat);
        text.add_option(CoapOption::ContentFormat, Vec::new());
        assert_eq!(
            code(serve(&mut written, &text, 9)).0,
            ResponseType::UnsupportedContentFormat
        );
        let truncated = request(RequestType::Put, &["0", "1"], vec![0xC8, 0x00, 0x20, b'c']);
        assert_eq!(code(serve(&mut written, &truncated, 9)).0, ResponseType::BadRequest);
        let other = request(
            RequestType::Put,
            &["3", "0"],
            security("coap://127.0.0.1:1", 3, b"", b""),
        );
        assert_eq!(code(serve(&mut written, &other, 9)).0, ResponseType::NotFound);
        let get = request(RequestType::Get, &["0"], Vec::new());
        assert_eq!(code(serve(&mut written, &get, 9)).0, ResponseType::MethodNotAllowed);
        // Every cut and every flipped byte of a good write: an answer, no panic.
        let good = security("coaps://127.0.0.1:5684", 0, b"SN-1", b"00ff");
        for cut in 0..good.len() {
            serve(
                &mut written,
                &request(RequestType::Put, &["0", "1"], good[..cut].to_vec()),
                9,
            );
        }
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0xA5;
            serve(&mut written, &request(RequestType::Put, &["0"], bad), 9);
        }
        assert!(written.accounts.len() <= MAX_ACCOUNTS);
    }
}
