//! The reference backend's device side: provisioning by claim over MQTT
//! (`fleet/v1/provision/{serial}`), then the device's own connection with the id and token it
//! was issued, telemetry on `fleet/v1/d/{id}/telemetry`.

use std::net::{IpAddr, SocketAddr};

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Packet;

use crate::transport::mqtt::{ConnectParams, MqttConn, TransportError};

/// What a device holds after provisioning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The device id, also its client id and username.
    pub device_id: String,
    /// The token, its password.
    pub token: String,
    /// Where its telemetry goes.
    pub telemetry_topic: String,
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
    /// The fleet claim devices provision with.
    pub claim: String,
    /// The claim's secret.
    pub claim_secret: String,
}

impl Embedded {
    /// Provisions `serial` from `source` and returns the device's credentials.
    pub async fn provision(&self, serial: &str, source: Option<IpAddr>) -> Result<Credentials, ProvisionError> {
        let user = format!("claim:{}", self.claim);
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
        let request = b"{}";
        conn.publish(&format!("fleet/v1/provision/{serial}"), request, QoS::AtLeastOnce)
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
                    let device_id = field("device_id")?;
                    let telemetry_topic = format!("fleet/v1/d/{device_id}/telemetry");
                    return Ok(Credentials {
                        device_id,
                        token: field("token")?,
                        telemetry_topic,
                    });
                }
                Some(_) => {}
                None => return Err(ProvisionError::Transport(TransportError::Closed)),
            }
        }
    }

    /// Connects as the device.
    pub async fn connect(&self, credentials: &Credentials, source: Option<IpAddr>) -> Result<MqttConn, TransportError> {
        let params = ConnectParams {
            client_id: &credentials.device_id,
            login: Some((&credentials.device_id, &credentials.token)),
            keep_alive_s: KEEP_ALIVE_S,
            clean_session: true,
        };
        MqttConn::connect(self.mqtt, source, params).await.map(|(conn, _)| conn)
    }
}

/// Keep-alive devices ask for; the driver pings when it has sent nothing for half of it.
pub const KEEP_ALIVE_S: u16 = 60;
