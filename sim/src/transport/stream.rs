//! The byte stream a device's session runs over: TCP from the device's own source address, or
//! TLS over it ([`super::tls`]), so a session's codec (MQTT) reads and writes the same way
//! whichever carries it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio::net::{TcpSocket, TcpStream};

use super::tls::TlsStream;

/// A connected byte stream to a server.
#[derive(Debug)]
pub enum ByteStream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP; boxed, so a plain stream stays a socket's size.
    Tls(Box<TlsStream>),
}

impl ByteStream {
    /// Connects over TCP from `source` (port chosen by the system) to `target`, with Nagle's
    /// algorithm off: a device's packets are small and each is meant to leave at once.
    pub async fn tcp(target: SocketAddr, source: Option<IpAddr>) -> io::Result<Self> {
        Ok(Self::Tcp(Self::tcp_socket(target, source).await?))
    }

    /// A TCP connection as [`ByteStream::tcp`] opens it, for TLS to run over.
    pub async fn tcp_socket(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(source) = source {
            socket.bind(SocketAddr::new(source, 0))?;
        }
        let stream = socket.connect(target).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Whether bytes taken by [`ByteStream::try_write`] still wait to be sent (TLS records
    /// the socket has not taken yet): [`AsyncWrite::poll_flush`] sends them.
    pub fn wants_flush(&self) -> bool {
        match self {
            Self::Tcp(_) => false,
            Self::Tls(stream) => stream.wants_send(),
        }
    }

    /// Ready when the stream has something to read (or has closed). The waker waits in the
    /// socket's registration, not in the caller's future, so an idle device's task holds
    /// nothing for it.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(stream) => stream.poll_read_ready(cx),
            Self::Tls(stream) => stream.poll_read_ready(cx),
        }
    }

    /// Reads what is there into `buf`'s spare room (it must have some), else registers the
    /// waker; 0 when the server closed the stream.
    ///
    /// Over TCP a read that leaves room in `buf` tells the runtime the socket is drained
    /// (tokio clears its readiness then), so the next wait goes to sleep at once instead of
    /// first trying a read that finds nothing: one `recvfrom` a PUBACK, not two.
    pub fn poll_read_buf(&mut self, cx: &mut Context<'_>, buf: &mut bytes::BytesMut) -> Poll<io::Result<usize>> {
        match self {
            Self::Tcp(stream) => tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf),
            Self::Tls(stream) => loop {
                match stream.try_read_buf(buf) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        std::task::ready!(stream.poll_read_ready(cx))?;
                    }
                    read => return Poll::Ready(read),
                }
            },
        }
    }

    /// Writes what the socket takes now without waiting (`WouldBlock` when it takes
    /// nothing): the hot path's one syscall per packet. Over TLS what it took may wait in
    /// TLS's records ([`ByteStream::wants_flush`]).
    pub fn try_write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(stream) => stream.try_write(bytes),
            Self::Tls(stream) => stream.try_write(bytes),
        }
    }

    /// Whether TLS runs over the socket.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// Says what the stream's own protocol says before a close (TLS's close_notify; nothing
    /// over TCP), leaving the socket open: its close, after, sends the end of the stream.
    pub async fn say_goodbye(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(_) => Ok(()),
            Self::Tls(stream) => std::future::poll_fn(|cx| stream.poll_close_notify(cx)).await,
        }
    }

    /// Makes the stream's close abortive: its socket then resets the connection (RST) instead
    /// of saying goodbye (FIN), as a server sees a device whose link failed under it, and
    /// leaves nothing on this side in `TIME_WAIT`, where a mass outage's closes would leave
    /// one socket per device cut off for a minute.
    pub fn abort_on_close(&self) {
        // A socket that refuses the option (one already failed) just closes as it is.
        let _ = self.socket().set_zero_linger();
    }

    /// The local address the stream was opened from.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket().local_addr()
    }

    /// The TCP socket under the stream.
    fn socket(&self) -> &TcpStream {
        match self {
            Self::Tcp(stream) => stream,
            Self::Tls(stream) => stream.tcp(),
        }
    }
}

impl AsyncWrite for ByteStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => loop {
                match stream.try_write(buf) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        std::task::ready!(stream.poll_send(cx))?;
                    }
                    taken => return Poll::Ready(taken),
                }
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => stream.poll_send(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => stream.poll_shutdown(cx),
        }
    }
}
