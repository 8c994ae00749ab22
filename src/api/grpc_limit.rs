//! The gRPC receive limit, enforced the way grpc-go (and so etcd) enforces it.
//!
//! etcd's server refuses a message longer than `--max-request-bytes` + 512 KiB with
//! `RESOURCE_EXHAUSTED grpc: received message larger than max (N vs. M)` as soon as the
//! message's 5-byte frame header arrives, without buffering the message. tonic's own check
//! answers `OUT_OF_RANGE` with other words, so tonic's limit is lifted and this layer reads the
//! frame headers of every gRPC request body as they stream past: a body whose next message
//! announces more than the limit ends in that error, which tonic hands to the caller as the
//! call's status (it finds a `Status` inside a body error). Bodies of plain HTTP requests
//! (`/health`, `/metrics`) pass untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame};

use crate::error::EtcdError;

/// Wraps a service so every gRPC request body is checked against `max` bytes per message.
#[derive(Clone, Copy, Debug)]
pub struct GrpcLimitLayer {
    max: usize,
}

impl GrpcLimitLayer {
    /// Messages longer than `max` bytes are refused.
    pub fn new(max: usize) -> Self {
        GrpcLimitLayer { max }
    }
}

impl<S> tower::Layer<S> for GrpcLimitLayer {
    type Service = GrpcLimit<S>;

    fn layer(&self, inner: S) -> GrpcLimit<S> {
        GrpcLimit {
            inner,
            max: self.max,
        }
    }
}

/// See [`GrpcLimitLayer`].
#[derive(Clone, Debug)]
pub struct GrpcLimit<S> {
    inner: S,
    max: usize,
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for GrpcLimit<S>
where
    S: tower::Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let is_grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if !is_grpc {
            return self.inner.call(req);
        }
        let max = self.max;
        self.inner
            .call(req.map(|b| tonic::body::Body::new(LimitedBody::new(b, max))))
    }
}

/// A gRPC request body that fails once a message header announces more than `max` bytes.
pub struct LimitedBody<B> {
    inner: B,
    max: usize,
    frames: FrameScanner,
}

impl<B> LimitedBody<B> {
    fn new(inner: B, max: usize) -> Self {
        LimitedBody {
            inner,
            max,
            frames: FrameScanner::default(),
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes, Error = tonic::Status> + Unpin,
{
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            if let Some(got) = this.frames.scan(data, this.max) {
                let e = EtcdError::MessageTooLarge { got, max: this.max };
                return Poll::Ready(Some(Err(e.into())));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Follows gRPC's length-prefixed framing (`flag: u8, length: u32 BE, message`) across
/// arbitrary chunk boundaries.
#[derive(Default, Debug)]
struct FrameScanner {
    /// Header bytes of the next message seen so far (up to 5).
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
}

impl FrameScanner {
    /// Consumes `data`; returns the announced length of the first message over `max`.
    fn scan(&mut self, data: &Bytes, max: usize) -> Option<usize> {
        let mut buf = data.clone();
        while buf.has_remaining() {
            if self.remaining > 0 {
                let n = self.remaining.min(buf.remaining());
                buf.advance(n);
                self.remaining -= n;
                continue;
            }
            let n = (5 - self.header_len).min(buf.remaining());
            buf.copy_to_slice(&mut self.header[self.header_len..self.header_len + n]);
            self.header_len += n;
            if self.header_len == 5 {
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as usize;
                if len > max {
                    return Some(len);
                }
                self.header_len = 0;
                self.remaining = len;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&(len as u32).to_be_bytes());
        v.extend(std::iter::repeat_n(7u8, len));
        v
    }

    #[test]
    fn messages_within_the_limit_pass_in_any_chunking() {
        let mut stream = message(10);
        stream.extend(message(0));
        stream.extend(message(100));
        for chunk in [1, 2, 3, 5, 7, 64, 1000] {
            let mut s = FrameScanner::default();
            for c in stream.chunks(chunk) {
                assert_eq!(s.scan(&Bytes::copy_from_slice(c), 100), None, "{chunk}");
            }
            assert_eq!((s.header_len, s.remaining), (0, 0), "{chunk}");
        }
    }

    #[test]
    fn a_header_over_the_limit_is_caught_even_split_across_chunks() {
        let mut stream = message(10);
        stream.extend(message(101));
        for chunk in [1, 2, 3, 5, 7, 14, 1000] {
            let mut s = FrameScanner::default();
            let found = stream
                .chunks(chunk)
                .find_map(|c| s.scan(&Bytes::copy_from_slice(c), 100));
            assert_eq!(found, Some(101), "{chunk}");
        }
    }
}
