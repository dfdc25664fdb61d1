//! A socket that reads ahead into a per-thread scratch buffer, so that a
//! connection can have a small read buffer without paying one syscall per
//! buffer's worth of a large frame.
//!
//! tungstenite reads at most its read buffer's size per call (256 bytes here,
//! to keep idle connections small); a 4 KiB frame would take 16 `read`s. This
//! wrapper serves such small reads from what one large `read` brought in: the
//! bytes beyond what the caller asked for are kept in a spill allocation that
//! exists only until they are handed out, so an idle connection holds none.
//!
//! **Bound:** a spill holds at most [`SCRATCH`] bytes, and nothing more is read
//! from the socket until it is drained.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at once for a small read.
pub const SCRATCH: usize = 16 * 1024;
/// Reads asking for at least this much go straight to the socket.
const DIRECT: usize = 4 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// `S` with read-ahead for small reads (see the module docs).
pub struct ReadAhead<S> {
    inner: S,
    /// Bytes read and not yet handed out, from `spill_at` on.
    spill: Vec<u8>,
    spill_at: usize,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> ReadAhead<S> {
        ReadAhead {
            inner,
            spill: Vec::new(),
            spill_at: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.spill_at < this.spill.len() {
            let rest = &this.spill[this.spill_at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.spill_at += n;
            if this.spill_at == this.spill.len() {
                // Drained: give the memory back.
                this.spill = Vec::new();
                this.spill_at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= DIRECT {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut ahead = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut ahead))?;
            let got = ahead.filled();
            let n = got.len().min(buf.remaining());
            buf.put_slice(&got[..n]);
            if got.len() > n {
                this.spill = got[n..].to_vec();
                this.spill_at = 0;
            }
            Poll::Ready(Ok(()))
        })
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Small reads see every byte, in order, whatever the sizes; the spill is
    /// freed once drained.
    #[tokio::test]
    async fn small_reads_see_every_byte_in_order() {
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        tx.write_all(&data).await.expect("write");
        drop(tx);
        let mut r = ReadAhead::new(rx);
        let mut got = Vec::new();
        let mut sizes = [1usize, 7, 256, 300, 5000, 13].into_iter().cycle();
        loop {
            let mut chunk = vec![0; sizes.next().expect("cycle")];
            let n = r.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, data);
        assert_eq!(r.spill.capacity(), 0, "a drained spill holds no memory");
    }

    /// One small read takes what is available (up to the scratch size) from
    /// the socket; the next small reads are served without it.
    #[tokio::test]
    async fn a_small_read_reads_ahead() {
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        tx.write_all(&[9u8; 3000]).await.expect("write");
        let mut r = ReadAhead::new(rx);
        let mut chunk = [0u8; 256];
        assert_eq!(r.read(&mut chunk).await.expect("read"), 256);
        assert_eq!(r.spill.len() - r.spill_at, 3000 - 256);
        for _ in 0..10 {
            assert_eq!(r.read(&mut chunk).await.expect("read"), 256);
        }
        assert_eq!(r.read(&mut chunk).await.expect("read"), 3000 - 11 * 256);
        assert_eq!(r.spill.capacity(), 0);
    }
}
