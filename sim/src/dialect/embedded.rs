//! The reference backend's device side: provisioning by claim over MQTT
//! (`fleet/v1/provision/{serial}`), then the device's own connection with the id and token it
//! was issued, telemetry on `fleet/v1/d/{id}/telemetry`, and the subscriptions that bring it
//! desired config, commands and update jobs.
//!
//! Groups: the backend puts a device in its claim's default group, so each scenario group has
//! its own claim, `fleetsim-{group}` ([`claim_name`]), all with the run's one secret.
//! An always-connected device's session is persistent (clean session off), so commands and
//! jobs sent while it is offline reach it when it is back, as the backend promises. A
//! duty-cycled device opens a clean session at each wake, reports and leaves.

use std::net::{IpAddr, SocketAddr};

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Packet;

use super::Session;
use crate::transport::mqtt::{ConnectParams, MqttConn, TransportError};

/// What a device holds after provisioning (boxed strings: kept for the whole run by every
/// device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The device id, also its client id and username.
    pub device_id: Box<str>,
    /// The token, its password.
    pub token: Token,
}

/// A device's password. The reference backend's tokens are 64 lowercase hex digits, kept as
/// their 32 bytes (every device holds one for the whole run); anything else as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// 64 lowercase hex digits, decoded.
    Hex([u8; 32]),
    /// Any other password.
    Text(Box<str>),
}

impl Token {
    /// The token as the backend issued it.
    pub fn new(text: &str) -> Self {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let bytes = text.as_bytes();
        if bytes.len() == 64 {
            let mut out = [0u8; 32];
            let decoded =
                out.iter_mut()
                    .zip(bytes.chunks_exact(2))
                    .all(|(slot, pair)| match (digit(pair[0]), digit(pair[1])) {
                        (Some(hi), Some(lo)) => {
                            *slot = hi << 4 | lo;
                            true
                        }
                        _ => false,
                    });
            if decoded {
                return Self::Hex(out);
            }
        }
        Self::Text(text.into())
    }

    /// The token as the password to send.
    pub fn text(&self) -> String {
        match self {
            Self::Hex(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            Self::Text(text) => text.to_string(),
        }
    }
}

/// Why provisioning failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    /// The connection failed.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The backend answered `rejected`, or an answer that is not the documented JSON.
    #[error("rejected")]
    Rejected,
}

/// The reference backend, as its devices reach it.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// The gateway's address.
    pub mqtt: SocketAddr,
    /// The operator API's address.
    pub api: SocketAddr,
    /// The secret of the run's claims.
    pub claim_secret: String,
}

/// What a device says about itself when it provisions.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Its serial.
    pub serial: &'a str,
    /// Its group (which claim it uses).
    pub group: &'a str,
    /// Its model's name.
    pub model: &'a str,
    /// The firmware it runs.
    pub firmware: &'a str,
}

/// The claim devices of `group` provision with.
pub fn claim_name(group: &str) -> String {
    format!("fleetsim-{group}")
}

impl Embedded {
    /// Provisions a device from `source` and returns its credentials.
    pub async fn provision(&self, device: Request<'_>, source: Option<IpAddr>) -> Result<Credentials, ProvisionError> {
        let serial = device.serial;
        let user = format!("claim:{}", claim_name(device.group));
        let client_id = format!("prov-{serial}");
        let params = ConnectParams {
            client_id: &client_id,
            login: Some((&user, &self.claim_secret)),
            keep_alive_s: 30,
            clean_session: true,
        };
        let (mut conn, _) = MqttConn::connect(self.mqtt, source, params).await?;
        conn.subscribe(&[(&format!("fleet/v1/provision/{serial}/+"), QoS::AtLeastOnce)])
            .await?;
        let request = serde_json::json!({ "model": device.model, "firmware": device.firmware }).to_string();
        conn.publish(
            &format!("fleet/v1/provision/{serial}"),
            request.as_bytes(),
            QoS::AtLeastOnce,
        )
        .await?;
        loop {
            match conn.read().await? {
                Some(Packet::Publish(reply)) => {
                    if reply.pkid != 0 {
                        conn.ack(reply.pkid).await?;
                    }
                    let _ = conn.disconnect().await;
                    if !reply.topic.ends_with("/accepted") {
                        return Err(ProvisionError::Rejected);
                    }
                    let body: serde_json::Value =
                        serde_json::from_slice(&reply.payload).map_err(|_| ProvisionError::Rejected)?;
                    let field = |key: &str| body[key].as_str().map(str::to_owned).ok_or(ProvisionError::Rejected);
                    return Ok(Credentials {
                        device_id: field("device_id")?.into_boxed_str(),
                        token: Token::new(&field("token")?),
                    });
                }
                Some(_) => {}
                None => return Err(ProvisionError::Transport(TransportError::Closed)),
            }
        }
    }

    /// Connects as the device. A persistent session subscribes to the device's config,
    /// commands and jobs unless the backend kept the session (and so its subscriptions); a
    /// duty-cycled wake opens a clean session that subscribes to nothing.
    pub async fn connect(
        &self,
        credentials: &Credentials,
        source: Option<IpAddr>,
        session: Session,
    ) -> Result<MqttConn, TransportError> {
        let id = &credentials.device_id;
        let token = credentials.token.text();
        let params = ConnectParams {
            client_id: id,
            login: Some((id, &token)),
            keep_alive_s: KEEP_ALIVE_S,
            clean_session: session == Session::DutyCycle,
        };
        let (mut conn, session_present) = MqttConn::connect(self.mqtt, source, params).await?;
        if !session_present && session == Session::Persistent {
            let (config, commands, jobs) = (
                format!("fleet/v1/d/{id}/config/desired"),
                format!("fleet/v1/d/{id}/cmd/+"),
                format!("fleet/v1/d/{id}/ota/job"),
            );
            // The SUBACK comes back through the device's reads, which ignore it.
            conn.subscribe(&[
                (&config, QoS::AtLeastOnce),
                (&commands, QoS::AtLeastOnce),
                (&jobs, QoS::AtLeastOnce),
            ])
            .await?;
        }
        Ok(conn)
    }
}

/// Keep-alive devices ask for; the driver pings when it has sent nothing for half of it.
pub const KEEP_ALIVE_S: u16 = 60;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_tokens_are_kept_as_bytes_and_given_back_the_same() {
        let hex = "4770c9744b5ffc107d3547804cbcde09250891c1bfa999d3b4007a593fb71bfd";
        let token = Token::new(hex);
        assert!(matches!(token, Token::Hex(_)));
        assert_eq!(token.text(), hex);
        for other in ["s3cret", "", &hex.to_uppercase(), &hex[..62]] {
            assert_eq!(Token::new(other), Token::Text(other.into()));
            assert_eq!(Token::new(other).text(), other);
        }
    }
}
