//! Gateway counters: lock-free atomics bumped on the per-packet path, read by `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// One counter per thing the gateway refuses, accepts or sees. Relaxed ordering: each is an
/// independent tally, read only for reporting.
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// TLS handshakes completed on the mqtts listener.
    pub tls_handshakes: AtomicU64,
    /// TLS handshakes that failed or timed out (not TLS, a refused certificate, silence).
    pub tls_failed: AtomicU64,
    /// Connections currently open (after CONNECT was accepted).
    pub sessions_open: AtomicI64,
    /// CONNECTs accepted from devices.
    pub connects_device: AtomicU64,
    /// CONNECTs accepted from claim holders (provisioning).
    pub connects_claim: AtomicU64,
    /// Of the CONNECTs accepted, those of MQTT 5 clients.
    pub connects_mqtt5: AtomicU64,
    /// CONNECTs refused as not authorized (unknown, wrong, revoked or decommissioned).
    pub connects_refused: AtomicU64,
    /// CONNECTs of a protocol version other than 3.1.1 and 5 (MQTT 3.1 clients), refused
    /// with "unacceptable protocol version".
    pub protocol_version_refused: AtomicU64,
    /// Connections closed because a newer one took over their client id.
    pub takeovers: AtomicU64,
    /// Connections closed for silence past 1.5 x keep-alive.
    pub keepalive_timeouts: AtomicU64,
    /// Connections closed for a malformed or unexpected packet.
    pub protocol_errors: AtomicU64,
    /// Packets refused for exceeding the size limit.
    pub oversized_packets: AtomicU64,
    /// Telemetry messages ingested.
    pub telemetry: AtomicU64,
    /// Status messages ingested.
    pub status: AtomicU64,
    /// Payloads that did not parse (bad JSON or shape), counted and dropped.
    pub bad_payloads: AtomicU64,
    /// Publishes outside the publisher's own topics, dropped.
    pub publish_refused: AtomicU64,
    /// Subscription filters refused (outside the subscriber's own topics, or malformed).
    pub subscribe_refused: AtomicU64,
    /// Provisioning requests accepted (new devices and idempotent retries).
    pub provision_accepted: AtomicU64,
    /// Provisioning requests rejected.
    pub provision_rejected: AtomicU64,
    /// Config versions reported by devices.
    pub config_reported: AtomicU64,
    /// Command answers recorded.
    pub command_results: AtomicU64,
    /// Command answers for commands that had already ended (late after a timeout, or
    /// duplicates) or that the device was never sent.
    pub command_results_ignored: AtomicU64,
    /// MQTT 5 command answers that echoed their request's correlation data (its command id).
    pub command_results_correlated: AtomicU64,
    /// Messages not delivered because their message expiry had passed (a desired config
    /// set with `expiry_s`).
    pub expired: AtomicU64,
    /// OTA job reports recorded.
    pub ota_reports: AtomicU64,
    /// OTA reports for jobs that had ended or that the device was never given.
    pub ota_reports_ignored: AtomicU64,
    /// Messages to a device that had no matching subscription, or whose queue was full.
    pub undeliverable: AtomicU64,
    /// Messages queued for an offline device with a persistent session.
    pub queued_offline: AtomicU64,
    /// CONNECTs accepted on a client certificate.
    pub connects_certificate: AtomicU64,
    /// CONNECTs refused for a revoked client certificate (included in `connects_refused`).
    pub certificates_revoked_refused: AtomicU64,
    /// Certificates the CA issued to devices (provisioning, rotation, renewal).
    pub certs_issued: AtomicU64,
    /// Device certificates revoked: by a newer one (at once, or after a rotation's grace) or
    /// at decommissioning.
    pub certs_revoked: AtomicU64,
    /// Certificate signing requests refused (malformed, forged, wrong key, wrong subject).
    pub csr_rejected: AtomicU64,
    /// LwM2M devices registered now.
    pub lwm2m_registered: AtomicI64,
    /// LwM2M Registers accepted.
    pub lwm2m_registrations: AtomicU64,
    /// LwM2M registration Updates accepted.
    pub lwm2m_updates: AtomicU64,
    /// LwM2M De-registers.
    pub lwm2m_deregistrations: AtomicU64,
    /// LwM2M registrations whose lifetime ran out without an update.
    pub lwm2m_expired: AtomicU64,
    /// LwM2M Registers of no active device, and Updates of no registration, refused.
    pub lwm2m_refused: AtomicU64,
    /// LwM2M requests that did not read (bad query, payload or path), refused with a reason.
    pub lwm2m_bad_requests: AtomicU64,
    /// Datagrams on the LwM2M port that are not CoAP, or too large, dropped.
    pub lwm2m_bad_datagrams: AtomicU64,
    /// LwM2M devices bootstrapped: every request of the front's taken, Bootstrap-Finish too.
    pub lwm2m_bootstraps: AtomicU64,
    /// LwM2M bootstraps that stopped: a request of the front's unanswered or refused.
    pub lwm2m_bootstraps_failed: AtomicU64,
    /// DTLS handshakes completed on the LwM2M DTLS listener.
    pub lwm2m_dtls_handshakes: AtomicU64,
    /// DTLS sessions that failed (a record that does not check out mid-handshake, a closed
    /// session) or could not be made (too many held).
    pub lwm2m_dtls_failed: AtomicU64,
    /// Requests for queue-mode LwM2M devices held until their next registration update.
    pub lwm2m_held: AtomicU64,
    /// Blocks of campaign images the LwM2M front served over CoAP (`GET /fw/VERSION`).
    pub lwm2m_package_blocks: AtomicU64,
    /// Requests the LwM2M front sent devices (Writes, Executes, Observes).
    pub lwm2m_requests: AtomicU64,
    /// Of those, ones that failed: unanswered, reset, or answered with an error.
    pub lwm2m_requests_failed: AtomicU64,
    /// Requests sent again for want of an acknowledgement.
    pub lwm2m_retransmissions: AtomicU64,
    /// Notifications of what the front observes.
    pub lwm2m_notifications: AtomicU64,
    /// Responses matching nothing the front asked for (answered with a Reset).
    pub lwm2m_unexpected: AtomicU64,
    /// LwM2M requests answered 5.03 for want of room ([`super::Limits::lwm2m_in_flight`]).
    pub lwm2m_busy: AtomicU64,
    /// What the operator routed to an LwM2M device that has no LwM2M form yet (a certificate
    /// request, a job without its image's details).
    pub lwm2m_unmapped: AtomicU64,
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl GatewayStats {
    /// The counters in Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let counters: &[(&str, &str, &AtomicU64)] = &[
            ("connections_total", "TCP connections accepted", &self.connections),
            (
                "tls_handshakes_total",
                "TLS handshakes completed on the mqtts listener",
                &self.tls_handshakes,
            ),
            (
                "tls_failed_total",
                "TLS handshakes that failed or timed out",
                &self.tls_failed,
            ),
            (
                "connects_device_total",
                "device CONNECTs accepted",
                &self.connects_device,
            ),
            (
                "connects_claim_total",
                "claim (provisioning) CONNECTs accepted",
                &self.connects_claim,
            ),
            (
                "connects_mqtt5_total",
                "CONNECTs accepted from MQTT 5 clients",
                &self.connects_mqtt5,
            ),
            (
                "connects_refused_total",
                "CONNECTs refused as not authorized",
                &self.connects_refused,
            ),
            (
                "takeovers_total",
                "sessions closed by a newer connection with the same client id",
                &self.takeovers,
            ),
            (
                "keepalive_timeouts_total",
                "sessions closed for keep-alive silence",
                &self.keepalive_timeouts,
            ),
            (
                "protocol_errors_total",
                "sessions closed for malformed or unexpected packets",
                &self.protocol_errors,
            ),
            (
                "oversized_packets_total",
                "packets over the size limit",
                &self.oversized_packets,
            ),
            ("telemetry_total", "telemetry messages ingested", &self.telemetry),
            ("status_total", "status messages ingested", &self.status),
            ("bad_payloads_total", "payloads that did not parse", &self.bad_payloads),
            (
                "publish_refused_total",
                "publishes outside the publisher's topics",
                &self.publish_refused,
            ),
            (
                "subscribe_refused_total",
                "subscription filters refused",
                &self.subscribe_refused,
            ),
            (
                "provision_accepted_total",
                "provisioning requests accepted",
                &self.provision_accepted,
            ),
            (
                "provision_rejected_total",
                "provisioning requests rejected",
                &self.provision_rejected,
            ),
            (
                "config_reported_total",
                "config versions reported by devices",
                &self.config_reported,
            ),
            (
                "command_results_total",
                "command answers recorded",
                &self.command_results,
            ),
            (
                "command_results_ignored_total",
                "late, duplicate or unknown command answers",
                &self.command_results_ignored,
            ),
            (
                "command_results_correlated_total",
                "MQTT 5 command answers that echoed their request's correlation data",
                &self.command_results_correlated,
            ),
            (
                "messages_expired_total",
                "messages not delivered because their message expiry had passed",
                &self.expired,
            ),
            ("ota_reports_total", "OTA job reports recorded", &self.ota_reports),
            (
                "ota_reports_ignored_total",
                "OTA reports for ended or unknown jobs",
                &self.ota_reports_ignored,
            ),
            (
                "protocol_version_refused_total",
                "CONNECTs of an unsupported protocol version (MQTT 5)",
                &self.protocol_version_refused,
            ),
            (
                "undeliverable_total",
                "messages that found no subscription or queue room",
                &self.undeliverable,
            ),
            (
                "queued_offline_total",
                "messages queued for offline persistent sessions",
                &self.queued_offline,
            ),
            (
                "connects_certificate_total",
                "CONNECTs accepted on a client certificate",
                &self.connects_certificate,
            ),
            (
                "certificates_revoked_refused_total",
                "CONNECTs refused for a revoked client certificate",
                &self.certificates_revoked_refused,
            ),
            (
                "certs_issued_total",
                "device certificates issued (provisioning, rotation, renewal)",
                &self.certs_issued,
            ),
            (
                "certs_revoked_total",
                "device certificates revoked (replaced, rotated or decommissioned)",
                &self.certs_revoked,
            ),
            (
                "csr_rejected_total",
                "certificate signing requests refused",
                &self.csr_rejected,
            ),
            (
                "lwm2m_registrations_total",
                "LwM2M Registers accepted",
                &self.lwm2m_registrations,
            ),
            (
                "lwm2m_updates_total",
                "LwM2M registration Updates accepted",
                &self.lwm2m_updates,
            ),
            (
                "lwm2m_deregistrations_total",
                "LwM2M De-registers",
                &self.lwm2m_deregistrations,
            ),
            (
                "lwm2m_expired_total",
                "LwM2M registrations whose lifetime ran out",
                &self.lwm2m_expired,
            ),
            (
                "lwm2m_refused_total",
                "LwM2M Registers of no active device and Updates of no registration",
                &self.lwm2m_refused,
            ),
            (
                "lwm2m_bad_requests_total",
                "LwM2M requests refused as malformed",
                &self.lwm2m_bad_requests,
            ),
            (
                "lwm2m_bad_datagrams_total",
                "datagrams on the LwM2M port that are not CoAP or too large",
                &self.lwm2m_bad_datagrams,
            ),
            (
                "lwm2m_bootstraps_total",
                "LwM2M devices bootstrapped (Security and Server objects written, Bootstrap-Finish taken)",
                &self.lwm2m_bootstraps,
            ),
            (
                "lwm2m_bootstraps_failed_total",
                "LwM2M bootstraps stopped by an unanswered or refused request",
                &self.lwm2m_bootstraps_failed,
            ),
            (
                "lwm2m_dtls_handshakes_total",
                "DTLS handshakes completed on the LwM2M DTLS listener",
                &self.lwm2m_dtls_handshakes,
            ),
            (
                "lwm2m_dtls_failed_total",
                "DTLS sessions on the LwM2M listener that failed or could not be made",
                &self.lwm2m_dtls_failed,
            ),
            (
                "lwm2m_package_blocks_total",
                "blocks of campaign images the LwM2M front served over CoAP",
                &self.lwm2m_package_blocks,
            ),
            (
                "lwm2m_held_total",
                "requests for queue-mode LwM2M devices held until their next update",
                &self.lwm2m_held,
            ),
            (
                "lwm2m_requests_total",
                "requests sent to LwM2M devices",
                &self.lwm2m_requests,
            ),
            (
                "lwm2m_requests_failed_total",
                "requests to LwM2M devices unanswered, reset or refused",
                &self.lwm2m_requests_failed,
            ),
            (
                "lwm2m_retransmissions_total",
                "requests to LwM2M devices sent again",
                &self.lwm2m_retransmissions,
            ),
            (
                "lwm2m_notifications_total",
                "notifications of what the LwM2M front observes",
                &self.lwm2m_notifications,
            ),
            (
                "lwm2m_unexpected_total",
                "responses from LwM2M devices matching no request or observation",
                &self.lwm2m_unexpected,
            ),
            (
                "lwm2m_busy_total",
                "LwM2M requests answered 5.03 for want of room",
                &self.lwm2m_busy,
            ),
            (
                "lwm2m_unmapped_total",
                "operator messages with no LwM2M form yet (certificate requests)",
                &self.lwm2m_unmapped,
            ),
        ];
        let mut out = String::new();
        for &(name, help, counter) in counters {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP fleetsim_gateway_{name} {help}\n# TYPE fleetsim_gateway_{name} counter\nfleetsim_gateway_{name} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP fleetsim_gateway_sessions_open MQTT sessions open now\n# TYPE fleetsim_gateway_sessions_open gauge\nfleetsim_gateway_sessions_open {}",
            self.sessions_open.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP fleetsim_gateway_lwm2m_registered LwM2M devices registered now\n# TYPE fleetsim_gateway_lwm2m_registered gauge\nfleetsim_gateway_lwm2m_registered {}",
            self.lwm2m_registered.load(Ordering::Relaxed)
        );
        out
    }
}
