//! What every RPC of the client port passes through, whatever its handler: authorization
//! when the node has an [`Authority`] and the namespace's request rate (both before the
//! handler runs, from the request's bytes), the request metrics (`metrics::request_served`, labelled with the namespace the handler
//! resolved), and the RPC's name in every `UNIMPLEMENTED` answer.
//!
//! The generated stubs answer RPCs Dura does not implement with a fixed "Not yet implemented";
//! a caller deserves to know *which* call is missing, and no RPC may fake success. This layer
//! rewrites exactly that answer, so adding an implementation needs no change here.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http_body_util::BodyExt;
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service};

use super::rate_limit::NamespaceRateLimiter;
use crate::{auth::Authority, error::ApiError, metrics};

/// The largest request body read for its namespace (the message size limit).
const MAX_INSPECTED_BODY: usize = 128 * 1024 * 1024;

/// What the generated default stubs put in `grpc-message` (percent-encoded on the wire).
const STUB_MESSAGE: &str = "Not%20yet%20implemented";

#[derive(Clone)]
pub struct RpcEdgeLayer {
    authority: Option<Authority>,
    rates: Arc<NamespaceRateLimiter>,
}

impl RpcEdgeLayer {
    pub fn new(authority: Option<Authority>, rates: NamespaceRateLimiter) -> Self {
        RpcEdgeLayer {
            authority,
            rates: Arc::new(rates),
        }
    }
}

impl<S> Layer<S> for RpcEdgeLayer {
    type Service = RpcEdge<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcEdge {
            inner,
            authority: self.authority.clone(),
            rates: self.rates.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcEdge<S> {
    inner: S,
    authority: Option<Authority>,
    rates: Arc<NamespaceRateLimiter>,
}

/// The request, its body read whole, if `authority` allows it and its namespace's rate admits
/// it; else the refusal to send, with the code it is counted under.
async fn admitted(
    authority: Option<&Authority>,
    rates: &NamespaceRateLimiter,
    request: http::Request<Body>,
) -> Result<http::Request<Body>, (Code, http::Response<Body>)> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = header("authorization").map(str::to_string);
    let gzip = header("grpc-encoding") == Some("gzip");
    let bytes = match http_body_util::Limited::new(body, MAX_INSPECTED_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let status = Status::resource_exhausted(format!("reading the request: {e}"));
            return Err((Code::ResourceExhausted, status.into_http()));
        }
    };
    let namespace = crate::auth::namespace_of(&path, &bytes, gzip, MAX_INSPECTED_BODY);
    if let Some(authority) = authority
        && let Err(denied) = authority.decide(&path, authorization.as_deref(), namespace.as_deref())
    {
        tracing::info!(rpc = %path, reason = %denied, "request unauthorized");
        let refusal = Status::from(ApiError::PermissionDenied).into_http();
        return Err((Code::PermissionDenied, refusal));
    }
    if let Some(namespace) = namespace.as_deref().filter(|n| !n.is_empty())
        && NamespaceRateLimiter::counts(&path)
        && !rates.admit(namespace)
    {
        let refusal = Status::from(ApiError::NamespaceRateLimited).into_http();
        return Err((Code::ResourceExhausted, refusal));
    }
    Ok(http::Request::from_parts(
        parts,
        Body::new(http_body_util::Full::new(bytes)),
    ))
}

/// `/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution` -> the method.
fn method_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn unimplemented_message(path: &str) -> String {
    let rpc = path.trim_start_matches('/');
    format!("{} is not implemented by Dura ({rpc})", method_name(path))
}

impl<S> Service<http::Request<Body>> for RpcEdge<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let path = req.uri().path().to_string();
        let started = std::time::Instant::now();
        if self.authority.is_none() && !NamespaceRateLimiter::counts(&path) {
            // Unary handlers run inside this future (tonic spawns nothing for them), so what
            // they note in the task-local scope is this request's.
            let served = metrics::in_request_scope(self.inner.call(req));
            return Box::pin(answered(path, started, served));
        }
        // The request is called after its body is read: the service polled ready is the one to
        // call, and its clone waits for the next request.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let (authority, rates) = (self.authority.clone(), self.rates.clone());
        Box::pin(async move {
            match admitted(authority.as_ref(), &rates, req).await {
                Ok(req) => {
                    answered(path, started, metrics::in_request_scope(inner.call(req))).await
                }
                Err((code, refusal)) => {
                    let operation = method_name(&path);
                    let namespace = metrics::UNKNOWN_NAMESPACE;
                    metrics::request_served(operation, namespace, code, started.elapsed());
                    Ok(refusal)
                }
            }
        })
    }
}

/// The handler's answer, counted, with the RPC named in a stub's `UNIMPLEMENTED`.
async fn answered<F, E>(
    path: String,
    started: std::time::Instant,
    (namespace, handler): (metrics::RequestNamespace, F),
) -> Result<http::Response<Body>, E>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    let response = handler.await?;
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
    metrics::request_served(method_name(&path), namespace, code, started.elapsed());
    let is_stub = code == Code::Unimplemented
        && headers
            .get("grpc-message")
            .is_some_and(|v| v == STUB_MESSAGE);
    if is_stub {
        return Ok(Status::unimplemented(unimplemented_message(&path)).into_http());
    }
    Ok(response)
}
