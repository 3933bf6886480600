//! Names the RPC in every `UNIMPLEMENTED` answer.
//!
//! The generated stubs answer RPCs Dura does not implement with a fixed "Not yet implemented";
//! a caller deserves to know *which* call is missing, and no RPC may fake success. This layer
//! rewrites exactly that answer, so adding an implementation needs no change here.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{Status, body::Body};
use tower::{Layer, Service};

/// What the generated default stubs put in `grpc-message` (percent-encoded on the wire).
const STUB_MESSAGE: &str = "Not%20yet%20implemented";

#[derive(Debug, Clone, Default)]
pub struct NameUnimplementedLayer;

impl<S> Layer<S> for NameUnimplementedLayer {
    type Service = NameUnimplemented<S>;
    fn layer(&self, inner: S) -> Self::Service {
        NameUnimplemented { inner }
    }
}

#[derive(Debug, Clone)]
pub struct NameUnimplemented<S> {
    inner: S,
}

fn unimplemented_message(path: &str) -> String {
    let rpc = path.trim_start_matches('/');
    let method = rpc.rsplit('/').next().unwrap_or(rpc);
    format!("{method} is not implemented by Dura ({rpc})")
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for NameUnimplemented<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let path = req.uri().path().to_string();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let response = fut.await?;
            let headers = response.headers();
            let is_stub = headers.get("grpc-status").is_some_and(|v| v == "12")
                && headers
                    .get("grpc-message")
                    .is_some_and(|v| v == STUB_MESSAGE);
            if is_stub {
                return Ok(Status::unimplemented(unimplemented_message(&path)).into_http());
            }
            Ok(response)
        })
    }
}
