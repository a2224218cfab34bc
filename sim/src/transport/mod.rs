//! How virtual devices reach a backend: the byte stream a session runs over ([`stream`]: TCP,
//! or TLS over it: [`tls`]), a datagram endpoint ([`datagram`]: UDP) and CoAP's exchanges over it ([`coap`]), a lean MQTT
//! connection on rumqttc's packet codec ([`mqtt`]), a lean HTTP/1.1 client for firmware
//! downloads, polling devices and the operator's API calls ([`http`]), and the spreading of
//! source addresses ([`source`]) that lets one harness open more connections to one server
//! port than a single source address has ports, and the low-priority thread where devices'
//! connections end ([`closer`]: reset when cut off, closed with a goodbye when they leave).

pub mod blockwise;
pub mod closer;
pub mod coap;
pub mod datagram;
pub mod dtls;
pub mod http;
pub mod mqtt;
pub mod source;
pub mod stream;
pub mod tls;

use std::io;

use rustix::io::Errno;

/// Whether a socket failed for want of this machine's resources rather than because of the
/// server: no open file left (the per-process limit is the usual harness limit), no local port
/// or address to connect from, no memory. A load tester that counted these as refusals would
/// blame the backend for its own limits.
pub fn exhausted_here(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse | io::ErrorKind::OutOfMemory
    ) || error
        .raw_os_error()
        // EMFILE: this process may open no more files; ENFILE: the whole machine.
        .is_some_and(|code| code == Errno::MFILE.raw_os_error() || code == Errno::NFILE.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machines_shortages_count_as_local() {
        let local = [
            io::Error::from_raw_os_error(Errno::MFILE.raw_os_error()),
            io::Error::from_raw_os_error(Errno::NFILE.raw_os_error()),
            io::Error::from(io::ErrorKind::AddrNotAvailable),
            io::Error::from(io::ErrorKind::AddrInUse),
        ];
        for error in &local {
            assert!(exhausted_here(error), "{error}");
        }
        let remote = [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::TimedOut,
            io::ErrorKind::UnexpectedEof,
        ];
        for kind in remote {
            assert!(!exhausted_here(&io::Error::from(kind)), "{kind}");
        }
    }
}
