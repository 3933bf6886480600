//! The HTTP side: the axum router that answers the annotated routes and the OpenAPI specs,
//! and the listener task that serves it until cancelled.

use std::{net::SocketAddr, pin::Pin, sync::Arc};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    response::{IntoResponse, Response},
    routing::get,
    serve::Listener,
};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header::CONTENT_TYPE};
use prost::Message;
use prost_reflect::DynamicMessage;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::Instrument;

use crate::{
    call::{GrpcService, unary},
    descriptors,
    json::{JsonForm, request_message, response_json},
    routes::{Found, RouteError, RouteTable, SERVICES},
    status::{http_status, status_json},
};

/// The real server reads at most gRPC's default message size from an HTTP body.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Headers passed on to the gRPC call as they are (the real server's default list), besides
/// `Grpc-Metadata-<name>`, which becomes `<name>`.
const FORWARDED_HEADERS: &[&str] = &[
    "authorization",
    "authorization-extras",
    "x-forwarded-for",
    "client-name",
    "client-version",
];
/// The query keys that choose the JSON form rather than set a field.
const PRETTY: &str = "pretty";
const NO_PAYLOAD_SHORTHAND: &str = "noPayloadShorthand";

/// Temporal's HTTP API over the gRPC service `grpc`.
pub struct HttpApi<S> {
    grpc: S,
    routes: Arc<RouteTable>,
}

impl<S: Clone> Clone for HttpApi<S> {
    fn clone(&self) -> Self {
        HttpApi {
            grpc: self.grpc.clone(),
            routes: self.routes.clone(),
        }
    }
}

impl<S: GrpcService> HttpApi<S> {
    pub fn new(grpc: S) -> Result<Self, RouteError> {
        let routes = RouteTable::from_pool(descriptors::pool(), SERVICES)?;
        Ok(HttpApi {
            grpc,
            routes: Arc::new(routes),
        })
    }

    /// Every route: the OpenAPI specs and every annotated binding (`/api/v1/...` and the
    /// shorter twins), as the real server's HTTP port serves them.
    pub fn router(self) -> Router {
        Router::new()
            .route("/swagger.json", get(swagger_json))
            .route("/openapi.yaml", get(openapi_yaml))
            .fallback(transcode::<S>)
            .with_state(self)
    }

    /// Answers one request of the API (a UI server hands its `/api/v1/*` here).
    pub async fn answer(&self, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let mut query = query_pairs(parts.uri.query().unwrap_or(""));
        let form = JsonForm {
            pretty: query.iter().any(|(k, _)| k == PRETTY),
            shorthand: !query.iter().any(|(k, _)| k == NO_PAYLOAD_SHORTHAND),
        };
        query.retain(|(k, _)| k != PRETTY && k != NO_PAYLOAD_SHORTHAND);
        let (route, captures) = match self.routes.find(&parts.method, parts.uri.path()) {
            Found::Route { route, captures } => (route, captures),
            // grpc-gateway's answers for a path no route has, and for the wrong method.
            Found::NotFound => return refusal(Status::not_found("Not Found"), form),
            Found::MethodNotAllowed => {
                return refusal(Status::unimplemented("Method Not Allowed"), form);
            }
        };
        let body = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
            Ok(body) => body,
            Err(e) => {
                return refusal(
                    Status::invalid_argument(format!("reading the body: {e}")),
                    form,
                );
            }
        };
        let request = match request_message(route, &captures, &query, &body, form) {
            Ok(request) => request,
            Err(e) => return refusal(Status::invalid_argument(e.to_string()), form),
        };
        let span = tracing::debug_span!("http_api", rpc = route.rpc.name());
        let metadata = forwarded_metadata(&parts.headers);
        let answer = unary(
            self.grpc.clone(),
            &route.grpc_path,
            metadata,
            &request.encode_to_vec(),
        )
        .instrument(span)
        .await;
        let encoded = match answer {
            Ok(encoded) => encoded,
            Err(status) => return refusal(status, form),
        };
        let rendered = DynamicMessage::decode(route.rpc.output(), encoded)
            .map_err(|e| Status::internal(format!("decoding the answer: {e}")))
            .and_then(|answer| {
                response_json(&answer, form)
                    .map_err(|e| Status::internal(format!("writing the answer as JSON: {e}")))
            });
        match rendered {
            Ok(json) => json_response(StatusCode::OK, json),
            Err(status) => refusal(status, form),
        }
    }
}

async fn transcode<S: GrpcService>(State(api): State<HttpApi<S>>, request: Request) -> Response {
    api.answer(request).await
}

async fn swagger_json() -> Response {
    let kind = "application/vnd.oai.openapi+json;version=2.0";
    ([(CONTENT_TYPE, kind)], descriptors::OPENAPI_V2_JSON).into_response()
}

async fn openapi_yaml() -> Response {
    let kind = "application/vnd.oai.openapi;version=3.0";
    ([(CONTENT_TYPE, kind)], descriptors::OPENAPI_V3_YAML).into_response()
}

fn json_response(status: StatusCode, json: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(json));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn refusal(status: Status, form: JsonForm) -> Response {
    json_response(http_status(status.code()), status_json(&status, form))
}

/// `a=1&b.c=x%20y&flag` as decoded pairs, in order (a key may repeat for a list field).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

fn forwarded_metadata(headers: &HeaderMap) -> HeaderMap {
    let mut metadata = HeaderMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        let forwarded = match name.strip_prefix("grpc-metadata-") {
            Some(inner) => HeaderName::try_from(inner).ok(),
            None if FORWARDED_HEADERS.contains(&name) => HeaderName::try_from(name).ok(),
            None => None,
        };
        if let Some(forwarded) = forwarded {
            metadata.append(forwarded, value.clone());
        }
    }
    metadata
        .entry("client-name")
        .or_insert(HeaderValue::from_static("temporal-server-http"));
    metadata
}

/// Where the HTTP API listens.
#[derive(Debug, Clone)]
pub struct HttpApiOptions {
    pub listen: SocketAddr,
}

/// The bound HTTP port, before it serves.
pub struct HttpApiServer {
    listener: TcpListener,
}

impl HttpApiServer {
    /// Binds the port now, so a start fails at once on a port in use.
    pub async fn bind(options: HttpApiOptions) -> std::io::Result<Self> {
        Ok(HttpApiServer {
            listener: TcpListener::bind(options.listen).await?,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `router` in plaintext until `cancel`; open requests (long polls) are dropped
    /// then, which drops their gRPC calls.
    pub fn run(self, router: Router, cancel: CancellationToken) -> JoinHandle<std::io::Result<()>> {
        tokio::spawn(serve_until(self.listener, router, cancel))
    }

    /// Serves `router` on the connections `accept` makes of the listener (TLS handshakes,
    /// done by the caller's acceptor) until `cancel`.
    pub fn run_with<Io, Incoming>(
        self,
        accept: impl FnOnce(TcpListener) -> Incoming,
        router: Router,
        cancel: CancellationToken,
    ) -> std::io::Result<JoinHandle<std::io::Result<()>>>
    where
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        Incoming: Stream<Item = std::io::Result<Io>> + Send + 'static,
    {
        let addr = self.listener.local_addr()?;
        let listener = Accepted {
            incoming: Box::pin(accept(self.listener)),
            addr,
        };
        Ok(tokio::spawn(serve_until(listener, router, cancel)))
    }
}

async fn serve_until<L>(
    listener: L,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::select! {
        served = axum::serve(listener, router) => served,
        () = cancel.cancelled() => Ok(()),
    }
}

/// A listener made of already accepted (and handshaken) connections.
struct Accepted<Io> {
    incoming: Pin<Box<dyn Stream<Item = std::io::Result<Io>> + Send>>,
    addr: SocketAddr,
}

impl<Io: AsyncRead + AsyncWrite + Unpin + Send + 'static> Listener for Accepted<Io> {
    type Io = Io;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Io, SocketAddr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(io)) => return (io, self.addr),
                // The acceptor logs its refusals; this one is only waited past.
                Some(Err(e)) => tracing::debug!(error = %e, "an HTTP API connection failed"),
                // The acceptor is gone: nothing more will connect.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}
