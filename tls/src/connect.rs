//! Channels to gRPC servers, over TLS when a [`ClientTls`] is given.
//!
//! TLS is done by our own connector rather than tonic's, so a renewed CA or client
//! certificate takes effect at the channel's next (re)connect, not at the process's next start.

use std::{future::Future, pin::Pin, time::Duration};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream, rustls::pki_types::ServerName};
use tonic::transport::{Channel, Endpoint, Error};

use crate::ClientTls;

/// Endpoints say `http`: an `https` URI makes tonic look for TLS of its own.
fn endpoint(addr: &str) -> Result<Endpoint, Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true))
}

/// A channel to `addr` (`host:port`) that connects on first use and again after a failure.
pub fn lazy_channel(addr: &str, tls: Option<&ClientTls>) -> Result<Channel, Error> {
    let endpoint = endpoint(addr)?;
    Ok(match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(TlsConnect(tls.clone())),
        None => endpoint.connect_lazy(),
    })
}

/// A channel to `addr`, connected (within `timeout`) before it is returned.
pub async fn connect(
    addr: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<Channel, Error> {
    let endpoint = endpoint(addr)?.connect_timeout(timeout);
    match tls {
        Some(tls) => {
            endpoint
                .connect_with_connector(TlsConnect(tls.clone()))
                .await
        }
        None => endpoint.connect().await,
    }
}

#[derive(Clone)]
struct TlsConnect(ClientTls);

type Connecting =
    Pin<Box<dyn Future<Output = std::io::Result<TokioIo<TlsStream<TcpStream>>>> + Send>>;

impl tower::Service<http::Uri> for TlsConnect {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.0.config();
        let server_name = self.0.server_name.clone();
        Box::pin(async move {
            let invalid =
                |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("{uri} names no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid(format!("{uri} names no port")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(server_name.unwrap_or(host))
                .map_err(|e| invalid(e.to_string()))?;
            let stream = TlsConnector::from(config).connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}
