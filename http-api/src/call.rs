//! One unary gRPC call made in process: the request framed as the wire would carry it, handed
//! to the node's tower service (edge layer, router, handler), the answer unframed.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use tonic::{Code, Status, body::Body};
use tower::{Service, ServiceExt};

/// The service a node serves its client port with.
pub trait GrpcService:
    Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> GrpcService for S where
    S: Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error: Into<Box<dyn std::error::Error + Send + Sync>>,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Calls `path` (`/package.Service/Method`) with the encoded `request` and `metadata`; the
/// encoded response, or the call's status.
pub async fn unary<S: GrpcService>(
    service: S,
    path: &str,
    metadata: http::HeaderMap,
    request: &[u8],
) -> Result<Bytes, Status> {
    let mut frame = BytesMut::with_capacity(5 + request.len());
    frame.put_u8(0); // not compressed
    frame.put_u32(
        u32::try_from(request.len())
            .map_err(|_| Status::resource_exhausted("request too large"))?,
    );
    frame.put_slice(request);
    let mut call = http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(Body::new(http_body_util::Full::new(frame.freeze())))
        .map_err(|e| Status::internal(format!("building the call: {e}")))?;
    call.headers_mut().extend(metadata);
    let response = service
        .oneshot(call)
        .await
        .map_err(|e| Status::internal(format!("calling {path}: {}", e.into())))?;
    let (parts, body) = response.into_parts();
    // A unary error is a trailers-only response: its status is in the headers.
    if let Some(status) = Status::from_header_map(&parts.headers).filter(|s| s.code() != Code::Ok) {
        return Err(status);
    }
    let collected = body.collect().await?;
    if let Some(status) = collected
        .trailers()
        .and_then(Status::from_header_map)
        .filter(|s| s.code() != Code::Ok)
    {
        return Err(status);
    }
    let mut data = collected.to_bytes();
    if data.len() < 5 {
        return Err(Status::internal(format!("{path} answered no message")));
    }
    let compressed = data.get_u8();
    let length = data.get_u32() as usize;
    if compressed != 0 || data.len() < length {
        return Err(Status::internal(format!(
            "{path} answered a malformed frame"
        )));
    }
    Ok(data.split_to(length))
}
