//! The start of a connection: read CONNECT (within the connect timeout) and check its
//! credentials. A device authenticates with the id and token the registry issued (client id,
//! username = device id; password = token), or over TLS with a certificate the backend's CA
//! issued it (client id = the certificate's common name, the device id; the certificate not
//! revoked); a provisioning connection with a fleet claim (username `claim:NAME`, password =
//! claim secret). Anything else gets CONNACK "not authorized" (MQTT 5's reason 0x87).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::stream::DeviceStream;
use rumqttc::mqttbytes::Protocol;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, ConnectReturnCode, Packet};
use tokio::time::timeout;

use super::Shared;
use super::packet_io::{PacketError, PacketIo};
use super::stats::bump;
use super::topics::Principal;
use crate::certs::PeerCert;
use crate::registry::{CertAuth, ClaimAuth, DeviceAuth};

/// Username prefix that marks a fleet claim credential (`claim:NAME` with the claim secret
/// as password); any other username is a device id.
pub const CLAIM_USER_PREFIX: &str = "claim:";

/// A connection whose CONNECT was accepted.
pub(super) struct Accepted {
    pub(super) conn_id: u64,
    pub(super) io: PacketIo,
    pub(super) principal: Principal,
    pub(super) client_id: String,
    /// 3.1.1's clean session, MQTT 5's clean start: a stored session is discarded (how long
    /// the new one is kept is [`PacketIo::session_expiry`]'s).
    pub(super) clean_start: bool,
    pub(super) keep_alive: Duration,
}

/// Reads and checks CONNECT; answers a refusal itself. The CONACK of success is sent by
/// `Conn::run` once the session is attached, with the right session-present flag.
pub(super) async fn handshake(stream: DeviceStream, shared: &Shared) -> Option<Accepted> {
    let peer = stream.peer_cert();
    let mut io = PacketIo::new(stream, shared.limits.max_packet_bytes);
    let connect = match timeout(shared.limits.connect_timeout, io.read()).await {
        Ok(Ok(Some(Packet::Connect(connect)))) if connect.protocol == Protocol::V4 => connect,
        // Silence, a closed socket or any first packet but CONNECT: nothing to answer.
        Ok(Err(PacketError::TooLarge(_))) => {
            bump(&shared.stats.oversized_packets);
            return None;
        }
        // An MQTT 3.1 client (or any level but 4 and 5: an MQTT 5 CONNECT is read in 5's
        // layout and reaches here as the 3.1.1 one it means): the gateway answers with a
        // 3.1.1 CONNACK "unacceptable protocol version", and the client knows to retry with
        // 3.1.1 rather than guess at a reset.
        Ok(Ok(Some(Packet::Connect(_))))
        | Ok(Err(PacketError::Malformed(
            rumqttc::mqttbytes::Error::InvalidProtocolLevel(_) | rumqttc::mqttbytes::Error::InvalidProtocol,
        ))) => {
            bump(&shared.stats.protocol_version_refused);
            let refusal = Packet::ConnAck(ConnAck::new(ConnectReturnCode::RefusedProtocolVersion, false));
            let _ = io.write(&refusal).await;
            return None;
        }
        _ => {
            bump(&shared.stats.protocol_errors);
            return None;
        }
    };
    let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let Some((principal, client_id)) = authenticate(shared, &connect, peer.as_ref(), conn_id) else {
        bump(&shared.stats.connects_refused);
        let refusal = Packet::ConnAck(ConnAck::new(ConnectReturnCode::NotAuthorized, false));
        let _ = io.write(&refusal).await;
        return None;
    };
    if peer.is_some() && matches!(principal, Principal::Device(_)) {
        bump(&shared.stats.connects_certificate);
    }
    bump(match principal {
        Principal::Device(_) => &shared.stats.connects_device,
        Principal::Claim(_) => &shared.stats.connects_claim,
    });
    if io.is_v5() {
        bump(&shared.stats.connects_mqtt5);
    }
    Some(Accepted {
        conn_id,
        io,
        principal,
        client_id,
        clean_start: connect.clean_session,
        keep_alive: Duration::from_secs(u64::from(connect.keep_alive)),
    })
}

/// Checks the CONNECT's credentials: a claim (`claim:NAME`), a client certificate (`peer`,
/// already verified by the handshake) whose device id is the client id, or a device id whose
/// client id is that same id. Returns who connected and the client id to hold.
fn authenticate(
    shared: &Shared,
    connect: &Connect,
    peer: Option<&PeerCert>,
    conn_id: u64,
) -> Option<(Principal, String)> {
    let claim_login = connect
        .login
        .as_ref()
        .is_some_and(|login| login.username.starts_with(CLAIM_USER_PREFIX));
    if let Some(peer) = peer
        && !claim_login
    {
        // The certificate is the identity: the client id (and a username, when sent) must be
        // the device it names; a password means nothing.
        let named = connect.client_id == peer.device_id
            && connect
                .login
                .as_ref()
                .is_none_or(|login| login.username.is_empty() || login.username == peer.device_id);
        if !named {
            return None;
        }
        return match shared.registry.authenticate_certificate(&peer.device_id, &peer.serial) {
            CertAuth::Ok { .. } => Some((Principal::Device(peer.device_id.clone()), peer.device_id.clone())),
            CertAuth::Revoked => {
                bump(&shared.stats.certificates_revoked_refused);
                None
            }
            CertAuth::Unknown => None,
        };
    }
    let login = connect.login.as_ref()?;
    if let Some(claim) = login.username.strip_prefix(CLAIM_USER_PREFIX) {
        if shared.registry.authenticate_claim(claim, login.password.as_bytes()) != ClaimAuth::Ok {
            return None;
        }
        // MQTT lets a client leave its id to the server; claim connections may.
        let client_id = if connect.client_id.is_empty() {
            format!("claim-{conn_id}")
        } else {
            connect.client_id.clone()
        };
        return Some((Principal::Claim(claim.to_owned()), client_id));
    }
    // A device holds exactly one client id, its own, so takeover and persistent sessions
    // follow the device rather than whatever id a client picked.
    if connect.client_id != login.username {
        return None;
    }
    match shared
        .registry
        .authenticate_device(&login.username, login.password.as_bytes())
    {
        DeviceAuth::Ok { .. } => Some((Principal::Device(login.username.clone()), connect.client_id.clone())),
        _ => None,
    }
}
