//! A gRPC service that exists before it can serve: the peer port must answer Raft traffic
//! before the node can build its frontend (the frontend needs elected groups), yet forwarded
//! client calls arrive on that same port. Until the frontend is set, its calls are
//! `UNAVAILABLE`, as a node that is not up yet would answer them.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
};

use tonic::{body::Body, server::NamedService};
use tower::{Service, ServiceExt};

pub struct OnceReady<S> {
    inner: Arc<OnceLock<S>>,
}

// Not derived: a derive would ask `S: Clone` of the handle, which only shares the cell.
impl<S> Clone for OnceReady<S> {
    fn clone(&self) -> Self {
        OnceReady {
            inner: self.inner.clone(),
        }
    }
}

impl<S> OnceReady<S> {
    pub fn new() -> Self {
        OnceReady {
            inner: Arc::default(),
        }
    }

    /// From now on every call is `service`'s. Only the first call of this has an effect.
    pub fn set(&self, service: S) {
        let _ = self.inner.set(service);
    }
}

impl<S: NamedService> NamedService for OnceReady<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for OnceReady<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.inner.get() {
            Some(service) => Box::pin(service.clone().oneshot(request)),
            None => {
                let starting = tonic::Status::unavailable("this node is still starting");
                Box::pin(std::future::ready(Ok(starting.into_http())))
            }
        }
    }
}
