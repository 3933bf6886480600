//! What every RPC passes through, whatever its handler: the request metrics
//! (`metrics::request_served`, labelled with the namespace the handler resolved), and the
//! RPC's name in every `UNIMPLEMENTED` answer.
//!
//! The generated stubs answer RPCs Dura does not implement with a fixed "Not yet implemented";
//! a caller deserves to know *which* call is missing, and no RPC may fake success. This layer
//! rewrites exactly that answer, so adding an implementation needs no change here.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{Code, Status, body::Body};
use tower::{Layer, Service};

use crate::metrics;

/// What the generated default stubs put in `grpc-message` (percent-encoded on the wire).
const STUB_MESSAGE: &str = "Not%20yet%20implemented";

#[derive(Debug, Clone, Default)]
pub struct RpcEdgeLayer;

impl<S> Layer<S> for RpcEdgeLayer {
    type Service = RpcEdge<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcEdge { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RpcEdge<S> {
    inner: S,
}

/// `/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution` -> the method.
fn method_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn unimplemented_message(path: &str) -> String {
    let rpc = path.trim_start_matches('/');
    format!("{} is not implemented by Dura ({rpc})", method_name(path))
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for RpcEdge<S>
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
        let started = std::time::Instant::now();
        // Unary handlers run inside this future (tonic spawns nothing for them), so what they
        // note in the task-local scope is this request's.
        let (namespace, fut) = metrics::in_request_scope(self.inner.call(req));
        Box::pin(async move {
            let response = fut.await?;
            let operation = method_name(&path);
            let headers = response.headers();
            // Unary errors are trailers-only responses, so their status is in the headers; a
            // response without one carries data and ends OK.
            let code = headers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(Code::Ok, Code::from);
            // Until the response head: a streamed body's time is the client's to read.
            let namespace = namespace
                .get()
                .map_or(metrics::UNKNOWN_NAMESPACE, String::as_str);
            metrics::request_served(operation, namespace, code, started.elapsed());
            let is_stub = code == Code::Unimplemented
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
