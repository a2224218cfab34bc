//! A device's datagram endpoint: a UDP socket bound from the device's own source address and
//! connected to one server, as a CoAP device holds one, in the clear or secured by DTLS with a
//! pre-shared key ([`super::dtls`]). An idle endpoint holds its socket (and its DTLS session)
//! and nothing else: a datagram is read, once the socket says one waits, into a buffer made
//! for it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::dtls::{self, DtlsError, Psk, Session};

/// The longest datagram an endpoint reads; longer ones arrive cut to this and fail to decode.
/// CoAP keeps a message within one IP packet (RFC 7252, section 4.6, suggests 1,152 bytes),
/// so a 1,024-byte block and its header fit with room to spare.
pub const MAX_DATAGRAM_BYTES: usize = 2048;

/// A UDP socket connected to one server.
#[derive(Debug)]
pub struct Datagram {
    socket: UdpSocket,
    /// The DTLS session every datagram goes through, for a secured endpoint. Locked only
    /// between awaits, by the device's own task: never contended.
    secured: Option<Box<Mutex<Session>>>,
}

impl Datagram {
    /// Binds from `source` (any address of the target's family when `None`; the port chosen by
    /// the system) and connects to `target`, so only the server's datagrams are read.
    pub async fn open(target: SocketAddr, source: Option<IpAddr>) -> io::Result<Self> {
        let local = source.unwrap_or(match target {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        let socket = UdpSocket::bind(SocketAddr::new(local, 0)).await?;
        socket.connect(target).await?;
        Ok(Self { socket, secured: None })
    }

    /// As [`Datagram::open`], then a DTLS handshake with `psk`, done by `deadline`: every
    /// datagram after it is a DTLS record.
    pub async fn open_secured(
        target: SocketAddr,
        source: Option<IpAddr>,
        psk: &Psk,
        deadline: Instant,
    ) -> Result<Self, DtlsError> {
        let plain = Self::open(target, source).await.map_err(|e| DtlsError::Io(e.kind()))?;
        let session = dtls::handshake(&plain.socket, psk, deadline).await?;
        Ok(Self {
            socket: plain.socket,
            secured: Some(Box::new(Mutex::new(session))),
        })
    }

    /// Whether datagrams go through DTLS.
    pub fn is_secured(&self) -> bool {
        self.secured.is_some()
    }

    /// The session, for a secured endpoint.
    fn session(&self) -> Option<std::sync::MutexGuard<'_, Session>> {
        // A panic while it was held left the session as dimpl left it: the next record
        // fails if that is broken, and the device connects again.
        self.secured
            .as_ref()
            .map(|session| session.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// What goes on the wire for `bytes`: themselves, or the DTLS records that carry them.
    fn sealed(&self, bytes: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        match self.session() {
            Some(mut session) => session
                .seal(bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            None => Ok(vec![bytes.to_vec()]),
        }
    }

    /// The local address datagrams leave from.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends one datagram.
    pub async fn send(&self, bytes: &[u8]) -> io::Result<()> {
        if self.secured.is_none() {
            return self.socket.send(bytes).await.map(|_| ());
        }
        for record in self.sealed(bytes)? {
            self.socket.send(&record).await?;
        }
        Ok(())
    }

    /// Sends one datagram if the socket takes it now; `false` when it would have to wait or
    /// failed (a lost datagram, as UDP may lose any).
    pub fn try_send(&self, bytes: &[u8]) -> bool {
        if self.secured.is_none() {
            return self.socket.try_send(bytes).is_ok();
        }
        self.sealed(bytes)
            .is_ok_and(|records| records.iter().all(|record| self.socket.try_send(record).is_ok()))
    }

    /// Waits for the next datagram from the server.
    ///
    /// Cancel-safe: waiting for the socket to be readable takes nothing from it. The wait is
    /// a poll of the socket's readiness, not a readiness future, so an idle device waiting
    /// here holds a reference and nothing more.
    pub async fn receive(&self) -> io::Result<Vec<u8>> {
        std::future::poll_fn(|cx| self.poll_receive(cx)).await
    }

    /// The next datagram from the server, if one is there; otherwise the task is woken when
    /// the socket is readable. What [`Datagram::receive`] waits on, for a caller that polls.
    pub fn poll_receive(&self, cx: &mut Context<'_>) -> Poll<io::Result<Vec<u8>>> {
        if let Some(plaintext) = self.session().and_then(|mut s| s.take_pending()) {
            return Poll::Ready(Ok(plaintext));
        }
        loop {
            std::task::ready!(self.socket.poll_recv_ready(cx))?;
            let mut datagram = vec![0; MAX_DATAGRAM_BYTES];
            match self.socket.try_recv(&mut datagram) {
                Ok(len) => {
                    datagram.truncate(len);
                    let Some(mut session) = self.session() else {
                        return Poll::Ready(Ok(datagram));
                    };
                    let opened = session
                        .open(&datagram)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
                    drop(session);
                    let opened = opened?;
                    for record in &opened.send {
                        // What the session sends back (a flight asked for again) may be lost,
                        // as any datagram may.
                        let _ = self.socket.try_send(record);
                    }
                    if let Some(plaintext) = opened.plaintext {
                        return Poll::Ready(Ok(plaintext));
                    }
                }
                // Readiness can be spurious: wait again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn datagrams_go_to_the_server_and_only_its_come_back() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let stranger = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = Datagram::open(
            server.local_addr().expect("addr"),
            Some("127.0.0.2".parse().expect("ip")),
        )
        .await
        .expect("open");
        let local = endpoint.local_addr().expect("addr");
        assert_eq!(
            local.ip().to_string(),
            "127.0.0.2",
            "sent from the device's own address"
        );
        endpoint.send(b"hello").await.expect("send");
        let mut buf = [0; 64];
        let (len, from) = server.recv_from(&mut buf).await.expect("server hears it");
        assert_eq!((&buf[..len], from), (&b"hello"[..], local));
        stranger.send_to(b"not for you", local).await.expect("send");
        server.send_to(b"answer", local).await.expect("send");
        assert_eq!(endpoint.receive().await.expect("receive"), b"answer");
    }
}
