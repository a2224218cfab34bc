//! A device's datagram endpoint secured by DTLS 1.2 with a pre-shared key, against a DTLS
//! server nobody here wrote: libcoap's `coap-server-openssl` (Debian's `libcoap3-bin`, OpenSSL's
//! DTLS), started on a free port with one key. The right key gets CoAP answers through the
//! session; a wrong key or a server that does not answer ends the handshake by its deadline
//! with a reason, never a hang.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use fleetsim::metrics::recorder::Meter;
use fleetsim::transport::coap;
use fleetsim::transport::datagram::Datagram;
use fleetsim::transport::dtls::{DtlsError, Psk};
use tokio::time::Instant;

const KEY: &[u8] = b"fleetsim-psk-0001";

/// `coap-server-openssl` on a free loopback port, serving DTLS with `KEY` for any identity.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Self {
        // The DTLS port is the CoAP port + 1.
        let port = loop {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("a port");
            let port = probe.local_addr().expect("addr").port();
            if port < u16::MAX && std::net::UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
                break port;
            }
        };
        let child = Command::new("coap-server-openssl")
            .args(["-A", "127.0.0.1", "-p", &port.to_string(), "-h", "fleetsim", "-k"])
            .arg(String::from_utf8_lossy(KEY).as_ref())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("coap-server-openssl runs (scripts/test installs libcoap3-bin)");
        Self {
            child,
            addr: ([127, 0, 0, 1], port + 1).into(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn psk(key: &[u8]) -> Psk {
    Psk {
        identity: b"SN-DTLS-1".to_vec(),
        key: key.to_vec(),
    }
}

/// A confirmable GET of `/` (libcoap's server describes itself there).
fn get_root(id: u16) -> Packet {
    let mut packet = Packet::new();
    packet.header.set_type(MessageType::Confirmable);
    packet.header.code = MessageClass::Request(RequestType::Get);
    packet.header.message_id = id;
    packet.set_token(vec![1, 2, 3, id as u8]);
    packet.add_option(CoapOption::UriPath, Vec::new());
    packet
}

#[tokio::test]
async fn a_dtls_endpoint_speaks_coap_to_libcoaps_dtls_server() {
    let server = Server::start();
    // The server needs a moment to listen: the handshake sends its flights again until then.
    let endpoint = Datagram::open_secured(server.addr, None, &psk(KEY), Instant::now() + Duration::from_secs(15))
        .await
        .expect("the handshake completes with the server's key");
    assert!(endpoint.is_secured());
    let meter = Meter::default();
    for id in 1..=3 {
        let answer = coap::exchange(&endpoint, &get_root(id), 0.0, &meter, |_| {})
            .await
            .expect("answered through the session");
        assert_eq!(answer.header.code, MessageClass::Response(ResponseType::Content));
        assert!(
            String::from_utf8_lossy(&answer.payload).contains("libcoap"),
            "{:?}",
            String::from_utf8_lossy(&answer.payload)
        );
    }

    let wrong = Datagram::open_secured(
        server.addr,
        None,
        &psk(b"not-the-key-0000"),
        Instant::now() + Duration::from_secs(4),
    )
    .await
    .expect_err("a wrong key is refused");
    // OpenSSL drops a Finished it cannot check, as RFC 6347 lets a DTLS server: the handshake
    // ends at its deadline (dimpl would end it at once on a fatal alert).
    assert!(
        matches!(wrong, DtlsError::Handshake(_) | DtlsError::Timeout),
        "{wrong:?}"
    );
    drop(server);

    let nobody = std::net::UdpSocket::bind("127.0.0.1:0").expect("a port");
    let silent = nobody.local_addr().expect("addr");
    let started = std::time::Instant::now();
    let unanswered = Datagram::open_secured(silent, None, &psk(KEY), Instant::now() + Duration::from_secs(2))
        .await
        .expect_err("nobody answers");
    assert_eq!(unanswered, DtlsError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(4), "the deadline holds");
}
