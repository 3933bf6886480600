//! Dura's Rust client side: the raw WorkflowService client, the `dura` CLI's client commands
//! and the `dura bench` load generator (issue 4) will live here. Empty until then; nothing
//! in the server depends on it.
