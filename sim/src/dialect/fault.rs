//! Why a device's exchange with a backend failed, as the figures count it: small and copyable,
//! so a failure is counted by kind on the hot path, never formatted.

use crate::metrics::recorder::Counter;
use crate::transport::coap::ExchangeError;
use crate::transport::http::HttpError;
use crate::transport::mqtt::{Reason, TransportError};
use crate::transport::tls::TlsFailure;

/// A failed exchange, by what the harness counts it as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Refused, reset or closed by the server (`errors.refused`).
    Refused,
    /// No answer in time (`errors.timeout`).
    Timeout,
    /// This machine had no file, local port or memory left (`errors.local`): the harness's
    /// limit, not the backend's.
    Local,
    /// Not the protocol, or not what the exchange expects (`errors.protocol`).
    Protocol,
    /// The credentials were refused (`errors.auth`).
    Auth,
    /// An MQTT server refused the connect, for this reason (`errors.auth` for credentials,
    /// `errors.busy`, `errors.quota`, `errors.banned`; `errors.refused` for another reason).
    Declined(Reason),
    /// An HTTP error status (`errors.http_404`, ...).
    Status(u16),
    /// A TLS handshake failed, for this reason (`errors.tls_unknown_ca`, ...).
    Tls(TlsFailure),
    /// The backend retired the device: not an error but the operator's doing, counted as
    /// `decommissioned`.
    Retired,
}

impl Fault {
    /// The counter this failure goes to.
    pub fn counter(self) -> Counter {
        match self {
            Self::Refused => Counter::ErrorsRefused,
            Self::Timeout => Counter::ErrorsTimeout,
            Self::Local => Counter::ErrorsLocal,
            Self::Protocol => Counter::ErrorsProtocol,
            Self::Auth => Counter::ErrorsAuth,
            Self::Declined(reason) => declined_counter(reason),
            Self::Status(status) => Counter::for_http_status(status),
            Self::Tls(failure) => tls_counter(failure),
            Self::Retired => Counter::Decommissioned,
        }
    }
}

/// The counter of an MQTT refusal's reason.
pub fn declined_counter(reason: Reason) -> Counter {
    match reason {
        Reason::NotAuthorized | Reason::BadLogin => Counter::ErrorsAuth,
        Reason::Unavailable => Counter::ErrorsBusy,
        Reason::QuotaExceeded => Counter::ErrorsQuota,
        Reason::Banned => Counter::ErrorsBanned,
        Reason::SessionTakenOver | Reason::ShuttingDown | Reason::KeepAliveTimeout | Reason::Other(_) => {
            Counter::ErrorsRefused
        }
    }
}

/// The counter of an MQTT 5 server's DISCONNECT, by its reason code.
pub fn disconnect_counter(code: u8) -> Counter {
    match Reason::of(code) {
        Reason::SessionTakenOver => Counter::DisconnectsTakenOver,
        Reason::ShuttingDown => Counter::DisconnectsShuttingDown,
        Reason::KeepAliveTimeout => Counter::DisconnectsKeepAlive,
        _ => Counter::DisconnectsOther,
    }
}

/// The counter of a TLS failure's reason.
fn tls_counter(failure: TlsFailure) -> Counter {
    match failure {
        TlsFailure::UnknownCa => Counter::ErrorsTlsUnknownCa,
        TlsFailure::Expired => Counter::ErrorsTlsExpired,
        TlsFailure::Revoked => Counter::ErrorsTlsRevoked,
        TlsFailure::BadCertificate => Counter::ErrorsTlsBadCertificate,
        TlsFailure::ServerUntrusted => Counter::ErrorsTlsServerUntrusted,
        TlsFailure::Handshake => Counter::ErrorsTlsHandshake,
    }
}

impl From<TransportError> for Fault {
    fn from(error: TransportError) -> Self {
        match error {
            TransportError::Refused(reason) => Self::Declined(reason),
            TransportError::Io(std::io::ErrorKind::TimedOut) => Self::Timeout,
            TransportError::Io(_) | TransportError::Closed => Self::Refused,
            TransportError::Local => Self::Local,
            TransportError::Protocol => Self::Protocol,
            TransportError::Tls(failure) => Self::Tls(failure),
        }
    }
}

impl From<ExchangeError> for Fault {
    fn from(error: ExchangeError) -> Self {
        match error {
            ExchangeError::Timeout | ExchangeError::Io(std::io::ErrorKind::TimedOut) => Self::Timeout,
            // The server reset it: it does not know the exchange.
            ExchangeError::Reset | ExchangeError::Io(_) => Self::Refused,
            ExchangeError::Encode => Self::Protocol,
        }
    }
}

impl From<HttpError> for Fault {
    fn from(error: HttpError) -> Self {
        match error {
            HttpError::Timeout => Self::Timeout,
            HttpError::Io(_) => Self::Refused,
            HttpError::Local => Self::Local,
            HttpError::Status(status) => Self::Status(status),
            HttpError::Protocol(_) => Self::Protocol,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    #[test]
    fn failures_are_counted_by_kind() {
        let mqtt = [
            (TransportError::Refused(Reason::NotAuthorized), Counter::ErrorsAuth),
            (TransportError::Refused(Reason::BadLogin), Counter::ErrorsAuth),
            (TransportError::Refused(Reason::of(0x89)), Counter::ErrorsBusy),
            (TransportError::Refused(Reason::of(0x9F)), Counter::ErrorsQuota),
            (TransportError::Refused(Reason::of(0x8A)), Counter::ErrorsBanned),
            (TransportError::Refused(Reason::of(0x84)), Counter::ErrorsRefused),
            (TransportError::Io(ErrorKind::TimedOut), Counter::ErrorsTimeout),
            (TransportError::Io(ErrorKind::ConnectionRefused), Counter::ErrorsRefused),
            (TransportError::Closed, Counter::ErrorsRefused),
            (TransportError::Local, Counter::ErrorsLocal),
            (TransportError::Protocol, Counter::ErrorsProtocol),
            (TransportError::Tls(TlsFailure::UnknownCa), Counter::ErrorsTlsUnknownCa),
            (
                TransportError::Tls(TlsFailure::ServerUntrusted),
                Counter::ErrorsTlsServerUntrusted,
            ),
        ];
        for (error, counter) in mqtt {
            assert_eq!(Fault::from(error).counter(), counter, "{error:?}");
        }
        let http = [
            (HttpError::Timeout, Counter::ErrorsTimeout),
            (HttpError::Io(ErrorKind::ConnectionReset), Counter::ErrorsRefused),
            (HttpError::Local, Counter::ErrorsLocal),
            (HttpError::Status(503), Counter::ErrorsHttp503),
            (HttpError::Protocol("malformed response"), Counter::ErrorsProtocol),
        ];
        for (error, counter) in http {
            assert_eq!(Fault::from(error).counter(), counter, "{error:?}");
        }
        assert_eq!(Fault::Retired.counter(), Counter::Decommissioned);
    }
}
