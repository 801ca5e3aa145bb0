//! A client connection whose next bytes can be looked at before whoever serves the
//! request reads them: they are read ahead and handed back first. pingora's own peek
//! works on plain sockets only; this works over TLS as well.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How much is read at once while looking ahead.
const READ_AHEAD: usize = 2048;

#[derive(Debug)]
pub struct Lookahead {
    inner: Stream,
    /// Bytes read ahead; those from `taken` on are still to be handed out.
    ahead: Vec<u8>,
    taken: usize,
}

impl Lookahead {
    pub fn new(inner: Stream) -> Self {
        Lookahead {
            inner,
            ahead: Vec::new(),
            taken: 0,
        }
    }

    /// The connection as pingora takes it back: a `Lookahead` it was given before.
    pub fn recover(stream: Stream) -> Result<Self, Stream> {
        if stream.as_any().is::<Lookahead>() {
            match stream.into_any().downcast::<Lookahead>() {
                Ok(lookahead) => return Ok(*lookahead),
                Err(_) => unreachable!("checked to be a Lookahead"),
            }
        }
        Err(stream)
    }

    /// The next `n` bytes, without taking them: waits until they are all in. It reads
    /// what has come (up to [`READ_AHEAD`]), so a request that arrived whole is read
    /// from the socket once, here, and handed on from memory.
    pub async fn look(&mut self, n: usize) -> std::io::Result<&[u8]> {
        self.ahead.drain(..self.taken);
        self.taken = 0;
        while self.ahead.len() < n {
            if self.ahead.capacity() == self.ahead.len() {
                self.ahead.reserve_exact(READ_AHEAD.max(n));
            }
            if self.inner.read_buf(&mut self.ahead).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(&self.ahead[..n])
    }
}

impl AsyncRead for Lookahead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.taken < this.ahead.len() {
            let n = buf.remaining().min(this.ahead.len() - this.taken);
            buf.put_slice(&this.ahead[this.taken..this.taken + n]);
            this.taken += n;
            if this.taken == this.ahead.len() {
                // Nothing is kept for a connection that waits (an idle stream above all).
                this.ahead = Vec::new();
                this.taken = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lookahead {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// The rest is the connection's own, passed through.

#[async_trait]
impl Shutdown for Lookahead {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(self.inner.as_mut()).await;
    }
}

impl UniqueID for Lookahead {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Lookahead {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Lookahead {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Lookahead {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Lookahead {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

/// Peeking past what was looked at is not offered.
#[async_trait]
impl Peek for Lookahead {}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn what_was_looked_at_is_read_first_and_the_connection_comes_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a listener");
        let addr = listener.local_addr().expect("an address");
        let writer = tokio::spawn(async move {
            let mut client = tokio::net::TcpStream::connect(addr)
                .await
                .expect("connected");
            client
                .write_all(b"GET /v1/events HTTP/1.1\r\n\r\n")
                .await
                .expect("sent");
            client
        });
        let (accepted, _) = listener.accept().await.expect("accepted");
        let _client = writer.await.expect("the writer");
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(accepted));

        let mut lookahead = Lookahead::new(stream);
        assert_eq!(lookahead.look(3).await.expect("looked"), b"GET");
        assert_eq!(lookahead.look(5).await.expect("looked"), b"GET /");
        let stream: Stream = Box::new(lookahead);
        let mut lookahead = Lookahead::recover(stream).expect("ours, back");
        let mut read = vec![0u8; 27];
        lookahead.read_exact(&mut read).await.expect("read");
        assert_eq!(read, b"GET /v1/events HTTP/1.1\r\n\r\n");
    }
}
