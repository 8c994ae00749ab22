//! The Watch service on the wire: a hand-written gRPC route with a codec that writes
//! `WatchResponse`s itself, so an event reaching thousands of watchers is encoded once and
//! copied into each response instead of being cloned and re-encoded per watcher.
//!
//! The bytes are exactly what prost would write for the same `WatchResponse` (fields in tag
//! order, proto3 defaults omitted); requests are decoded by prost as usual.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BufMut;
use futures::Stream;
use prost::encoding::{self, encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, Context, Poll, StdError};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};

use super::watch::WatchService;
use crate::mvcc::watch::EventRef;
use crate::proto::etcdserverpb::{ResponseHeader, WatchRequest, WatchResponse};

/// Tag of `WatchResponse.events`.
const EVENTS_TAG: u32 = 11;

/// Events for one watcher, encoded from the shared per-event encodings.
#[derive(Debug, Clone)]
pub struct EventsResponse {
    /// The response header.
    pub header: ResponseHeader,
    /// The watch id.
    pub watch_id: i64,
    /// More fragments of this response follow.
    pub fragment: bool,
    /// The events.
    pub events: Vec<EventRef>,
    /// Whether the watcher asked for `prev_kv`.
    pub prev_kv: bool,
}

impl EventsResponse {
    fn head_len(&self) -> usize {
        encoding::message::encoded_len(1, &self.header)
            + if self.watch_id != 0 {
                encoding::int64::encoded_len(2, &self.watch_id)
            } else {
                0
            }
            + if self.fragment { 2 } else { 0 }
    }

    fn event_len(&self, e: &EventRef) -> usize {
        let n = e.encoded(self.prev_kv).len();
        1 + encoded_len_varint(n as u64) + n
    }

    /// Bytes of the encoded response.
    pub fn encoded_len(&self) -> usize {
        self.head_len() + self.events.iter().map(|e| self.event_len(e)).sum::<usize>()
    }

    /// Writes the response as prost would write the equivalent `WatchResponse`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        encoding::message::encode(1, &self.header, buf);
        if self.watch_id != 0 {
            encoding::int64::encode(2, &self.watch_id, buf);
        }
        if self.fragment {
            encoding::bool::encode(7, &true, buf);
        }
        for e in &self.events {
            let bytes = e.encoded(self.prev_kv);
            encode_key(EVENTS_TAG, WireType::LengthDelimited, buf);
            encode_varint(bytes.len() as u64, buf);
            buf.put_slice(bytes);
        }
    }
}

/// One response of the stream.
#[derive(Debug, Clone)]
pub enum WireResponse {
    /// A control response (created, canceled, progress), encoded by prost.
    Full(WatchResponse),
    /// Events, encoded from the shared encodings.
    Events(EventsResponse),
}

/// etcd's `sendFragments`: a response of at least `max_bytes` with two or more events is cut
/// into responses that each stay below `max_bytes` (a single event may exceed it), all but
/// the last marked `fragment`.
pub fn fragments(r: EventsResponse, max_bytes: usize, out: &mut VecDeque<WireResponse>) {
    if r.encoded_len() < max_bytes || r.events.len() < 2 {
        out.push_back(WireResponse::Events(r));
        return;
    }
    let EventsResponse {
        header,
        watch_id,
        events,
        prev_kv,
        ..
    } = r;
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let mut cur = EventsResponse {
            header,
            watch_id,
            fragment: true,
            events: Vec::new(),
            prev_kv,
        };
        let mut len = cur.encoded_len();
        while let Some(ev) =
            events.next_if(|ev| cur.events.is_empty() || len + cur.event_len(ev) < max_bytes)
        {
            len += cur.event_len(&ev);
            cur.events.push(ev);
        }
        cur.fragment = events.peek().is_some();
        out.push_back(WireResponse::Events(cur));
    }
}

/// Encodes [`WireResponse`]s, decodes `WatchRequest`s.
#[derive(Debug, Default, Clone, Copy)]
pub struct WatchCodec;

/// The encoder half of [`WatchCodec`].
#[derive(Debug, Default, Clone, Copy)]
pub struct WireEncoder;

impl Encoder for WireEncoder {
    type Item = WireResponse;
    type Error = Status;

    fn encode(&mut self, item: WireResponse, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            WireResponse::Full(r) => r
                .encode(buf)
                .map_err(|e| Status::internal(format!("encoding a watch response: {e}"))),
            WireResponse::Events(r) => {
                r.encode(buf);
                Ok(())
            }
        }
    }
}

/// The decoder half of [`WatchCodec`].
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestDecoder;

impl Decoder for RequestDecoder {
    type Item = WatchRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<WatchRequest>, Status> {
        WatchRequest::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding a watch request: {e}")))
    }
}

impl Codec for WatchCodec {
    type Encode = WireResponse;
    type Decode = WatchRequest;
    type Encoder = WireEncoder;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> WireEncoder {
        WireEncoder
    }

    fn decoder(&mut self) -> RequestDecoder {
        RequestDecoder
    }
}

/// The stream of responses a watch call returns.
pub type WireStream = Pin<Box<dyn Stream<Item = Result<WireResponse, Status>> + Send>>;

/// `etcdserverpb.Watch` as a tower service (what tonic would generate, with [`WatchCodec`]).
#[derive(Clone)]
pub struct WatchServer {
    inner: Arc<WatchService>,
    max_decoding_message_size: usize,
}

impl WatchServer {
    /// Serves `inner`, refusing requests larger than `max_decoding_message_size`.
    pub fn new(inner: WatchService, max_decoding_message_size: usize) -> Self {
        WatchServer {
            inner: Arc::new(inner),
            max_decoding_message_size,
        }
    }
}

impl NamedService for WatchServer {
    const NAME: &'static str = "etcdserverpb.Watch";
}

struct WatchCall(Arc<WatchService>);

impl StreamingService<WatchRequest> for WatchCall {
    type Response = WireResponse;
    type ResponseStream = WireStream;
    type Future = BoxFuture<Response<WireStream>, Status>;

    fn call(&mut self, request: Request<Streaming<WatchRequest>>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.watch(request).await })
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for WatchServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != "/etcdserverpb.Watch/Watch" {
            return Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(
                    Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            });
        }
        let call = WatchCall(self.inner.clone());
        let max = self.max_decoding_message_size;
        Box::pin(async move {
            let mut grpc =
                Grpc::new(WatchCodec).apply_max_message_size_config(Some(max), Some(usize::MAX));
            Ok(grpc.streaming(call, req).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::watch::RevEntry;
    use crate::proto::mvccpb;

    fn event(key: &str, value_len: usize, prev: bool) -> mvccpb::Event {
        let kv = |v: u8| mvccpb::KeyValue {
            key: key.as_bytes().to_vec(),
            value: vec![v; value_len],
            create_revision: 2,
            mod_revision: 5,
            version: 3,
            lease: 0,
        };
        mvccpb::Event {
            r#type: 0,
            kv: Some(kv(b'x')),
            prev_kv: prev.then(|| kv(b'p')),
        }
    }

    fn refs(events: Vec<mvccpb::Event>) -> Vec<EventRef> {
        let n = events.len() as u32;
        let entry = Arc::new(RevEntry::new(5, events));
        (0..n).map(|i| EventRef::new(entry.clone(), i)).collect()
    }

    fn header() -> ResponseHeader {
        ResponseHeader {
            cluster_id: 0xdead_beef,
            member_id: 42,
            revision: 5,
            raft_term: 3,
        }
    }

    /// Byte for byte what prost writes for the same response, with and without prev_kv,
    /// watch id 0 (omitted) or not, fragment or not.
    #[test]
    fn encodes_like_prost() {
        for (prev_kv, watch_id, fragment) in [
            (false, 0, false),
            (true, 7, false),
            (true, 0, true),
            (false, -1, true),
        ] {
            let evs = vec![
                event("a", 10, true),
                event("bb", 0, false),
                event("c", 300, true),
            ];
            let r = EventsResponse {
                header: header(),
                watch_id,
                fragment,
                events: refs(evs.clone()),
                prev_kv,
            };
            let want = WatchResponse {
                header: Some(header()),
                watch_id,
                fragment,
                events: evs
                    .into_iter()
                    .map(|mut e| {
                        if !prev_kv {
                            e.prev_kv = None;
                        }
                        e
                    })
                    .collect(),
                ..WatchResponse::default()
            };
            let mut buf = Vec::new();
            r.encode(&mut buf);
            assert_eq!(buf, want.encode_to_vec(), "{prev_kv} {watch_id} {fragment}");
            assert_eq!(r.encoded_len(), buf.len());
            assert_eq!(WatchResponse::decode(&buf[..]).unwrap(), want);
        }
    }

    fn keys(r: &WireResponse) -> (bool, Vec<String>, usize) {
        match r {
            WireResponse::Events(e) => (
                e.fragment,
                e.events
                    .iter()
                    .map(|x| String::from_utf8(x.event().kv.as_ref().unwrap().key.clone()).unwrap())
                    .collect(),
                e.encoded_len(),
            ),
            WireResponse::Full(_) => panic!("not events"),
        }
    }

    #[test]
    fn fragments_split_like_etcd() {
        let resp = |events: Vec<mvccpb::Event>| EventsResponse {
            header: header(),
            watch_id: 3,
            fragment: false,
            events: refs(events),
            prev_kv: false,
        };
        let ten: Vec<mvccpb::Event> = (0..10)
            .map(|i| event(&format!("k{i}"), 100, false))
            .collect();
        // small enough: one response, not marked
        let mut out = VecDeque::new();
        fragments(resp(ten.clone()), 10_000, &mut out);
        assert_eq!(out.len(), 1);
        assert!(!keys(&out[0]).0);
        // each fragment stays below the limit; all but the last are marked; order kept
        let mut out = VecDeque::new();
        fragments(resp(ten), 400, &mut out);
        assert!(out.len() > 1);
        let mut all = Vec::new();
        for (i, f) in out.iter().enumerate() {
            let (fragment, k, len) = keys(f);
            assert!(len < 400, "fragment {i} is {len}");
            assert_eq!(fragment, i + 1 < out.len());
            all.extend(k);
        }
        let want: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
        assert_eq!(all, want);
        // a single event larger than the limit still goes out whole
        let mut out = VecDeque::new();
        fragments(resp(vec![event("a", 1000, false)]), 100, &mut out);
        assert_eq!(out.len(), 1);
        assert!(!keys(&out[0]).0);
        // two large events: one per fragment
        let mut out = VecDeque::new();
        fragments(
            resp(vec![event("a", 1000, false), event("b", 1000, false)]),
            100,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert!(keys(&out[0]).0 && !keys(&out[1]).0);
    }
}
