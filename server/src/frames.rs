//! Frontend messages checked before pgwire decodes them.
//!
//! pgwire's decoders trust the counts and lengths inside a message: a Bind whose
//! parameter length runs past the end of the message, or is negative other than -1,
//! reads into the next message or panics. [`FrameGuard`] sits between the socket and
//! pgwire's codec and checks the structure of every extended-protocol message (Parse,
//! Bind, Describe, Execute, Close) against its frame length before pgwire sees it.
//!
//! A malformed message is replaced, in place, by a Bind of a prepared statement whose
//! name starts with [`MALFORMED`] and carries the reason. pgwire answers it with
//! "statement not found", which the connection loop turns into PostgreSQL's answer:
//! `08P01` with the reason as the message. The frame boundary is intact, so, as in
//! PostgreSQL, the connection then discards messages until Sync and keeps serving.
//!
//! The guard passes every other message through as it arrives (COPY data is not
//! buffered); it holds back only the body of a message it checks, whose size pgwire
//! would buffer anyway. The first frame (the startup packet) has no type byte, and
//! neither do SSL and GSS encryption requests, which may come before it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Prefix of the statement name of a Bind that stands in for a malformed message.
pub const MALFORMED: &str = "\u{1}tessera malformed message: ";

/// Codes of the untyped requests a client may send before its startup packet.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// The largest message the guard holds back to check; larger ones pass unchecked and
/// meet pgwire's own size limit.
const MAX_CHECKED: usize = 1 << 30;

/// A reader of frontend messages that checks them (see the module documentation).
pub struct FrameGuard<S> {
    inner: S,
    /// Bytes read from `inner` and not yet examined.
    input: BytesMut,
    /// Examined bytes ready for the reader.
    output: BytesMut,
    /// Bytes of the current frame that pass through without being examined.
    passing: usize,
    /// Whether frames carry a type byte (after the startup packet).
    typed: bool,
    /// `inner` reached its end.
    eof: bool,
}

impl<S> FrameGuard<S> {
    /// A guard over `inner`, which has already delivered `read_ahead` (bytes read
    /// during TLS negotiation that have not been decoded yet).
    pub fn new(inner: S, read_ahead: BytesMut) -> Self {
        FrameGuard {
            inner,
            input: read_ahead,
            output: BytesMut::new(),
            passing: 0,
            typed: false,
            eof: false,
        }
    }

    /// Move whatever can be examined from `input` to `output`; false when more input
    /// is needed first.
    fn examine(&mut self) -> bool {
        if self.passing > 0 {
            let n = self.passing.min(self.input.len());
            if n == 0 {
                return false;
            }
            self.output.extend_from_slice(&self.input.split_to(n));
            self.passing -= n;
            return true;
        }
        if !self.typed {
            if self.input.len() < 8 {
                return false;
            }
            let len = u32::from_be_bytes(self.input[0..4].try_into().expect("4 bytes"));
            let code = u32::from_be_bytes(self.input[4..8].try_into().expect("4 bytes"));
            if !(len == 8 && (code == SSL_REQUEST || code == GSSENC_REQUEST)) {
                self.typed = true;
            }
            self.passing = (len as usize).max(8);
            return true;
        }
        if self.input.len() < 5 {
            return false;
        }
        let kind = self.input[0];
        let len = i32::from_be_bytes(self.input[1..5].try_into().expect("4 bytes"));
        let checked = matches!(kind, b'B' | b'P' | b'D' | b'E' | b'C');
        if !checked || !(4..=MAX_CHECKED as i32).contains(&len) {
            // Not ours to check, or a length pgwire refuses by itself.
            self.passing = 1 + len.max(4) as usize;
            return true;
        }
        let whole = 1 + len as usize;
        if self.input.len() < whole {
            return false;
        }
        let frame = self.input.split_to(whole);
        match check(kind, &frame[5..]) {
            Ok(()) => self.output.extend_from_slice(&frame),
            Err(reason) => stand_in(&mut self.output, reason),
        }
        true
    }
}

/// Append the Bind that stands in for a malformed message.
fn stand_in(out: &mut BytesMut, reason: &str) {
    let name = format!("{MALFORMED}{reason}");
    let body_len = 1 + name.len() + 1 + 2 + 2 + 2;
    out.put_u8(b'B');
    out.put_i32(4 + body_len as i32);
    out.put_u8(0); // unnamed portal
    out.put_slice(name.as_bytes());
    out.put_u8(0);
    out.put_u16(0); // parameter formats
    out.put_u16(0); // parameters
    out.put_u16(0); // result formats
}

/// A cursor over a message body that fails instead of reading past its end.
struct Body<'a>(&'a [u8]);

const SHORT: &str = "insufficient data left in message";

impl Body<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], &'static str> {
        if n > self.0.len() {
            return Err(SHORT);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<usize, &'static str> {
        Ok(self.take(2)?.get_u16() as usize)
    }

    fn i32(&mut self) -> Result<i32, &'static str> {
        Ok(self.take(4)?.get_i32())
    }

    fn cstring(&mut self) -> Result<(), &'static str> {
        match self.0.iter().position(|b| *b == 0) {
            Some(i) => {
                self.0 = &self.0[i + 1..];
                Ok(())
            }
            None => Err("invalid string in message"),
        }
    }

    fn end(&self) -> Result<(), &'static str> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("invalid message format")
        }
    }
}

/// Check the body of an extended-protocol message of type `kind` against its length;
/// the error is PostgreSQL's message for the fault.
pub fn check(kind: u8, body: &[u8]) -> Result<(), &'static str> {
    let mut b = Body(body);
    match kind {
        b'B' => {
            b.cstring()?; // portal
            b.cstring()?; // statement
            let formats = b.u16()?;
            b.take(2 * formats)?;
            for _ in 0..b.u16()? {
                match b.i32()? {
                    -1 => {}
                    n if n < 0 => return Err(SHORT),
                    n => {
                        b.take(n as usize)?;
                    }
                }
            }
            let results = b.u16()?;
            b.take(2 * results)?;
        }
        b'P' => {
            b.cstring()?; // statement
            b.cstring()?; // query
            let types = b.u16()?;
            b.take(4 * types)?;
        }
        b'D' | b'C' => {
            b.take(1)?;
            b.cstring()?;
        }
        b'E' => {
            b.cstring()?;
            b.i32()?;
        }
        _ => {}
    }
    b.end()
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.examine() {
                continue;
            }
            if this.eof {
                // A truncated last message: let the decoder see what there is.
                let rest = this.input.split();
                if rest.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.output = rest;
                continue;
            }
            let mut chunk = [0u8; 8192];
            let mut chunk = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut chunk) {
                Poll::Ready(Ok(())) => {
                    if chunk.filled().is_empty() {
                        this.eof = true;
                    }
                    this.input.extend_from_slice(chunk.filled());
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
