//! Dura's Rust client side: the raw WorkflowService client use that the `dura` CLI's client
//! commands build on, and the `dura bench` load generator. Nothing in the server depends on it,
//! and it depends on no other workspace crate, so it measures any Temporal-API server alike.

pub mod bench;
