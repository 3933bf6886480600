//! Temporal's HTTP API — the JSON routes of the `google.api.http` annotations on the
//! WorkflowService and OperatorService protos — transcoded to the node's own gRPC services,
//! in process.
//!
//! A request is matched against the annotated routes ([`routes`]), turned into the method's
//! protobuf request from its path captures, query parameters and JSON body ([`json`]), and
//! handed as one gRPC frame to the same tower service the client port serves ([`call`]): the
//! call passes the same authorization, rate limits, metrics and handlers as a gRPC client's,
//! with no network hop. The answer, or the gRPC status, is rendered back as canonical
//! protobuf JSON the way the real server's grpc-gateway does ([`status`]).
//!
//! Invariants:
//! - Every route comes from the descriptors' annotations; none is written by hand, so an RPC
//!   Dura does not implement answers its gRPC `UNIMPLEMENTED` (HTTP 501), like any other.
//! - Payloads use Temporal's shorthand (a `json/plain` payload is its JSON value) unless the
//!   request has the `noPayloadShorthand` query key, as on the real server.
//! - A request dropped by its client (a browser leaving a long poll) drops the gRPC call.

pub mod call;
pub mod descriptors;
pub mod json;
pub mod routes;
pub mod server;
pub mod status;

pub use server::{HttpApi, HttpApiOptions, HttpApiServer};
