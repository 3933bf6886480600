//! The annotated descriptor set compiled by `build.rs`, and the OpenAPI specs shipped with it.

use std::sync::LazyLock;

use prost_reflect::DescriptorPool;

static ENCODED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/http_descriptors.bin"));

/// Temporal's OpenAPI v2 spec, as the real server serves it on `/swagger.json`.
pub static OPENAPI_V2_JSON: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/openapiv2.json"));
/// Temporal's OpenAPI v3 spec, as the real server serves it on `/openapi.yaml`.
pub static OPENAPI_V3_YAML: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/openapiv3.yaml"));

/// The services, their messages and the annotations; decoded once.
pub fn pool() -> &'static DescriptorPool {
    static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
        DescriptorPool::decode(ENCODED).expect("build.rs wrote a valid descriptor set")
    });
    &POOL
}
