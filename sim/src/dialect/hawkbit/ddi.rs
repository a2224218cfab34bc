//! hawkBit's Direct Device Integration (DDI) API as devices speak it: the requests a device
//! makes (polling its controller base resource, describing itself, reading a deployment
//! action, posting feedback) and the parsing of the answers into small values. The device
//! side ([`super::device`]) decides when to make them and records what they measure.
//!
//! A device's credentials are its target token, derived from a secret (HMAC-SHA256 of its
//! serial) so that no token is stored or written anywhere, or a gateway token shared by the
//! fleet.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::Hawkbit;
use crate::transport::http::{HttpError, Method, Sender, request_json_as};

/// The longest token goosebit stores; hawkBit's are 32 characters too.
const TOKEN_CHARS: usize = 32;

/// How long a device waits for the server's answer. Longer than the harness's default: a busy
/// update server answers late rather than never, and a device that gives up early only sends
/// the same request again, adding to the server's queue.
pub const DDI_PATIENCE: Duration = Duration::from_secs(30);

/// How devices authenticate, with the secret resolved from the environment.
#[derive(Clone)]
pub enum DdiAuth {
    /// Each device its own `TargetToken`, derived from this secret and its serial.
    TargetToken(Arc<[u8]>),
    /// One `GatewayToken` for the fleet.
    GatewayToken(Arc<str>),
    /// No `Authorization` header.
    None,
}

impl DdiAuth {
    /// The scenario's `device_auth` for it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::TargetToken(_) => "target-token",
            Self::GatewayToken(_) => "gateway-token",
            Self::None => "none",
        }
    }
}

impl std::fmt::Debug for DdiAuth {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TargetToken(_) => "TargetToken(..)",
            Self::GatewayToken(_) => "GatewayToken(..)",
            Self::None => "None",
        })
    }
}

/// The management API's address and the operator's bearer token, for registering targets.
#[derive(Clone)]
pub struct Management {
    /// The API's address.
    pub addr: SocketAddr,
    /// `Bearer ...`, as the login returned it.
    pub authorization: Arc<str>,
}

impl Management {
    /// One management API call with the operator's login, as patient as a device.
    pub async fn request(
        &self,
        source: Option<IpAddr>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), HttpError> {
        let sender = Sender {
            source,
            authorization: Some(&self.authorization),
            patience: Some(DDI_PATIENCE),
        };
        request_json_as(self.addr, sender, method, path, body).await
    }
}

impl std::fmt::Debug for Management {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Management({}, Bearer ..)", self.addr)
    }
}

/// The shortest and longest polling interval a server asked for, in milliseconds (shared by
/// the shards of a process; written only when a poll's answer widens the range).
#[derive(Debug)]
pub struct ImposedSleep {
    shortest_ms: AtomicU64,
    longest_ms: AtomicU64,
}

impl Default for ImposedSleep {
    fn default() -> Self {
        Self {
            shortest_ms: AtomicU64::new(u64::MAX),
            longest_ms: AtomicU64::new(0),
        }
    }
}

impl ImposedSleep {
    /// Notes an interval a poll's answer asked for.
    pub fn saw(&self, sleep: Duration) {
        let ms = u64::try_from(sleep.as_millis()).unwrap_or(u64::MAX);
        if ms < self.shortest_ms.load(Ordering::Relaxed) {
            self.shortest_ms.fetch_min(ms, Ordering::Relaxed);
        }
        if ms > self.longest_ms.load(Ordering::Relaxed) {
            self.longest_ms.fetch_max(ms, Ordering::Relaxed);
        }
    }

    /// The shortest and longest interval asked for, if any poll was answered.
    pub fn range(&self) -> Option<(Duration, Duration)> {
        let shortest = self.shortest_ms.load(Ordering::Relaxed);
        (shortest != u64::MAX).then(|| {
            (
                Duration::from_millis(shortest),
                Duration::from_millis(self.longest_ms.load(Ordering::Relaxed)),
            )
        })
    }
}

/// What a poll's answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    /// How long the server asks the device to sleep before the next poll.
    pub sleep: Duration,
    /// The server wants the device to describe itself (`configData`).
    pub config_data: bool,
    /// An update is offered: the deployment action's path and id.
    pub deployment: Option<(String, u64)>,
}

/// An update as a deployment action describes it: its first chunk's first artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The software version.
    pub version: String,
    /// Where the artifact downloads from.
    pub url: String,
    /// Its SHA-1, lowercase hex.
    pub sha1: String,
    /// Its size in bytes.
    pub size: u64,
}

/// How an update ended or where it is, as DDI feedback says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// Still working: `proceeding`, with what the device does now.
    Proceeding(&'static str),
    /// Done, the new version runs: `closed` + `success`.
    Success,
    /// Done, the old version runs: `closed` + `failure`, with why.
    Failure(&'static str),
}

impl Feedback {
    /// Whether the action is closed by it (the server will not hear of it again).
    pub fn closes(self) -> bool {
        !matches!(self, Self::Proceeding(_))
    }

    /// The feedback's JSON body for action `action`.
    pub fn body(self, action: u64) -> Value {
        let (execution, finished, details) = match self {
            Self::Proceeding(what) => ("proceeding", "none", what),
            Self::Success => ("closed", "success", "update installed and booted"),
            Self::Failure(why) => ("closed", "failure", why),
        };
        json!({
            "id": action.to_string(),
            "status": { "execution": execution, "result": { "finished": finished }, "details": [details] },
        })
    }
}

/// Why a DDI request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdiError {
    /// The exchange failed (refused, reset, timed out, not HTTP).
    Http(HttpError),
    /// The server answered with an error status.
    Status(u16),
    /// The answer is not what the DDI API describes.
    Malformed,
}

/// Who makes a DDI request: the device's controller id (its serial) and the local address
/// it connects from.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    /// The controller id.
    pub id: &'a str,
    /// The local address.
    pub source: Option<IpAddr>,
}

impl Hawkbit {
    /// The `Authorization` header of device `id`.
    pub fn authorization(&self, id: &str) -> Option<String> {
        match &self.auth {
            DdiAuth::TargetToken(secret) => Some(format!("TargetToken {}", Self::target_token(secret, id))),
            DdiAuth::GatewayToken(token) => Some(format!("GatewayToken {token}")),
            DdiAuth::None => None,
        }
    }

    /// A device's target token: the first 32 hex digits of HMAC-SHA256(secret, serial).
    pub fn target_token(secret: &[u8], serial: &str) -> String {
        // HMAC takes a key of any length, so this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
            unreachable!("HMAC accepts keys of every length")
        };
        mac.update(serial.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut token: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        token.truncate(TOKEN_CHARS);
        token
    }

    /// The controller base resource of device `id`.
    pub fn base_path(&self, id: &str) -> String {
        format!("/{}/controller/v1/{id}", self.tenant)
    }

    /// Polls the controller base resource.
    pub async fn poll_base(&self, who: Requester<'_>) -> Result<Polled, DdiError> {
        let answer = self.call(who, Method::GET, &self.base_path(who.id), None).await?;
        parse_poll(&answer).ok_or(DdiError::Malformed)
    }

    /// Describes the device (`configData`): its hardware as goosebit matches software to it
    /// (`hw_boardname`, `hw_revision`) and the version it runs.
    pub async fn config_data(&self, who: Requester<'_>, board: &str, version: &str) -> Result<(), DdiError> {
        let body = json!({
            "mode": "merge",
            "data": { "hw_boardname": board, "hw_revision": HW_REVISION, "sw_version": version },
        });
        let path = format!("{}/configData", self.base_path(who.id));
        self.call(who, Method::PUT, &path, Some(&body)).await?;
        Ok(())
    }

    /// Reads a deployment action.
    pub async fn deployment(&self, who: Requester<'_>, path: &str) -> Result<Deployment, DdiError> {
        let answer = self.call(who, Method::GET, path, None).await?;
        parse_deployment(&answer).ok_or(DdiError::Malformed)
    }

    /// Posts feedback on action `action`.
    pub async fn feedback(&self, who: Requester<'_>, action: u64, feedback: Feedback) -> Result<(), DdiError> {
        let path = format!("{}/deploymentBase/{action}/feedback", self.base_path(who.id));
        self.call(who, Method::POST, &path, Some(&feedback.body(action)))
            .await?;
        Ok(())
    }

    async fn call(
        &self,
        who: Requester<'_>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, DdiError> {
        let authorization = self.authorization(who.id);
        let sender = Sender {
            source: who.source,
            authorization: authorization.as_deref(),
            patience: Some(DDI_PATIENCE),
        };
        match request_json_as(self.addr, sender, method, path, body).await {
            Ok((200..=299, answer)) => Ok(answer),
            Ok((status, _)) => Err(DdiError::Status(status)),
            Err(HttpError::Status(status)) => Err(DdiError::Status(status)),
            Err(error) => Err(DdiError::Http(error)),
        }
    }
}

/// The hardware revision devices report and software is declared compatible with.
pub const HW_REVISION: &str = "1.0";

/// A poll's answer: `config.polling.sleep` ("HH:MM:SS") and the `_links` it offers.
pub fn parse_poll(answer: &Value) -> Option<Polled> {
    let sleep = parse_sleep(answer["config"]["polling"]["sleep"].as_str()?)?;
    let links = &answer["_links"];
    let deployment = match links["deploymentBase"]["href"].as_str() {
        Some(href) => {
            let path = url_path(href)?;
            let action = path.rsplit('/').next()?.split('?').next()?.parse().ok()?;
            Some((path.to_owned(), action))
        }
        None => None,
    };
    Some(Polled {
        sleep,
        config_data: links["configData"]["href"].is_string(),
        deployment,
    })
}

/// `HH:MM:SS` as a duration.
pub fn parse_sleep(text: &str) -> Option<Duration> {
    let mut parts = text.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let field = |t: &str, max: u64| t.parse::<u64>().ok().filter(|v| *v <= max);
    let secs = field(h, 999)? * 3600 + field(m, 59)? * 60 + field(s, 59)?;
    Some(Duration::from_secs(secs))
}

/// A deployment action's first chunk's first artifact.
pub fn parse_deployment(answer: &Value) -> Option<Deployment> {
    let chunk = answer["deployment"]["chunks"].get(0)?;
    let artifact = chunk["artifacts"].get(0)?;
    let links = &artifact["_links"];
    let url = links["download-http"]["href"]
        .as_str()
        .or_else(|| links["download"]["href"].as_str())?;
    Some(Deployment {
        version: chunk["version"].as_str()?.to_owned(),
        url: url.to_owned(),
        sha1: artifact["hashes"]["sha1"].as_str()?.to_ascii_lowercase(),
        size: artifact["size"].as_u64()?,
    })
}

/// The path of an absolute `http://host:port/path` URL, or the text if it is a path already.
fn url_path(href: &str) -> Option<&str> {
    if href.starts_with('/') {
        return Some(href);
    }
    let rest = href.strip_prefix("http://").or_else(|| href.strip_prefix("https://"))?;
    Some(&rest[rest.find('/')?..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_gives_the_sleep_and_the_links() {
        let answer: Value = serde_json::from_str(
            r#"{"config":{"polling":{"sleep":"00:01:05"}},"_links":{"deploymentBase":{"href":"http://127.0.0.1:9/DEFAULT/controller/v1/d1/deploymentBase/17"}}}"#,
        )
        .expect("json");
        let polled = parse_poll(&answer).expect("valid");
        assert_eq!(polled.sleep, Duration::from_secs(65));
        assert!(!polled.config_data);
        assert_eq!(
            polled.deployment,
            Some(("/DEFAULT/controller/v1/d1/deploymentBase/17".to_owned(), 17))
        );
        let register: Value = serde_json::from_str(
            r#"{"config":{"polling":{"sleep":"00:00:10"}},"_links":{"configData":{"href":"http://h:1/DEFAULT/controller/v1/d1/configData"}}}"#,
        )
        .expect("json");
        let polled = parse_poll(&register).expect("valid");
        assert!(polled.config_data && polled.deployment.is_none());
    }

    #[test]
    fn sleeps_are_hours_minutes_seconds() {
        assert_eq!(parse_sleep("12:00:00"), Some(Duration::from_secs(43_200)));
        assert_eq!(parse_sleep("00:00:05"), Some(Duration::from_secs(5)));
        for bad in ["5", "00:60:00", "00:00", "a:b:c", "00:00:00:00", ""] {
            assert_eq!(parse_sleep(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_deployment_gives_its_artifact() {
        let answer: Value = serde_json::from_str(
            r#"{"id":"1","deployment":{"download":"forced","update":"forced","chunks":[{"part":"os","version":"2.0.0","name":"fw.swu","artifacts":[{"filename":"fw.swu","hashes":{"sha1":"FC59"},"size":100460,"_links":{"download":{"href":"http://127.0.0.1:9/DEFAULT/controller/v1/d1/download"}}}]}]}}"#,
        )
        .expect("json");
        let deployment = parse_deployment(&answer).expect("valid");
        assert_eq!(deployment.version, "2.0.0");
        assert_eq!(deployment.sha1, "fc59");
        assert_eq!(deployment.size, 100_460);
        assert!(deployment.url.ends_with("/d1/download"));
        assert_eq!(
            parse_deployment(&serde_json::json!({"deployment": {"chunks": []}})),
            None
        );
    }

    #[test]
    fn target_tokens_are_per_device_and_fit_the_server() {
        let a = Hawkbit::target_token(b"secret", "SN-1");
        assert_eq!(a.len(), TOKEN_CHARS);
        assert_eq!(a, Hawkbit::target_token(b"secret", "SN-1"));
        assert_ne!(a, Hawkbit::target_token(b"secret", "SN-2"));
        assert_ne!(a, Hawkbit::target_token(b"other", "SN-1"));
    }

    #[test]
    fn devices_authenticate_as_the_server_expects() {
        let server = |auth| Hawkbit {
            addr: "127.0.0.1:1".parse().expect("addr"),
            tenant: "DEFAULT".into(),
            auth,
            management: None,
            imposed: Arc::default(),
        };
        let target = server(DdiAuth::TargetToken(Arc::from(&b"k"[..])));
        assert_eq!(
            target.authorization("SN-1"),
            Some(format!("TargetToken {}", Hawkbit::target_token(b"k", "SN-1")))
        );
        let gateway = server(DdiAuth::GatewayToken("g-123".into()));
        assert_eq!(gateway.authorization("SN-1").as_deref(), Some("GatewayToken g-123"));
        assert_eq!(server(DdiAuth::None).authorization("SN-1"), None);
        assert!(!format!("{:?}", gateway.auth).contains("g-123"), "secrets never print");
    }

    #[test]
    fn feedback_bodies_follow_the_ddi_api() {
        let closed = Feedback::Failure("boot failed").body(4);
        assert_eq!(closed["status"]["execution"], "closed");
        assert_eq!(closed["status"]["result"]["finished"], "failure");
        assert_eq!(closed["id"], "4");
        assert!(Feedback::Success.closes() && !Feedback::Proceeding("downloading").closes());
        assert_eq!(
            Feedback::Proceeding("downloading").body(4)["status"]["execution"],
            "proceeding"
        );
    }
}
