//! Generates the tonic *server* stubs for Temporal's services from the descriptor set that
//! `temporalio-protos` exports, mapping every message onto that crate's types. No `.proto`
//! file is vendored: the services Dura serves are exactly the ones its message types describe.

use std::{env, fs};

use prost::Message;
use prost_types_descriptor::FileDescriptorSet;

/// Service definitions to generate servers for. Messages come from `temporalio-protos`.
const SERVICE_FILES: &[&str] = &[
    "temporal/api/workflowservice/v1/service.proto",
    "temporal/api/operatorservice/v1/service.proto",
    // `dura server start-test`: the Java test server's time-skipping service.
    "temporal/api/testservice/v1/service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = env::var("DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH")
        .map_err(|_| "temporalio-protos did not export DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH")?;
    println!("cargo:rerun-if-changed={path}");
    println!("cargo:rerun-if-env-changed=DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH");
    let mut fds = FileDescriptorSet::decode(fs::read(&path)?.as_slice())?;
    write_namespace_fields(&fds)?;
    fds.file.retain(|f| SERVICE_FILES.contains(&f.name()));
    if fds.file.len() != SERVICE_FILES.len() {
        return Err(format!("descriptor set at {path} lacks one of {SERVICE_FILES:?}").into());
    }
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        // Unimplemented RPCs answer UNIMPLEMENTED; `frontend::unimplemented` names the RPC.
        .generate_default_stubs(true)
        .extern_path(".temporal", "::temporalio_protos::temporal")
        .compile_fds(fds)?;
    // Dura's own admin service (`dura cluster status|transfer-leader`): Rust messages of `admin.rs`, no .proto.
    let admin = tonic_prost_build::manual::Service::builder()
        .name("ClusterAdmin")
        .package("dura.admin")
        .method(
            tonic_prost_build::manual::Method::builder()
                .name("status")
                .route_name("Status")
                .input_type("crate::admin::StatusRequest")
                .output_type("crate::admin::StatusReply")
                .codec_path("tonic_prost::ProstCodec")
                .build(),
        )
        .method(
            tonic_prost_build::manual::Method::builder()
                .name("transfer_leader")
                .route_name("TransferLeader")
                .input_type("crate::admin::TransferLeaderRequest")
                .output_type("crate::admin::TransferLeaderReply")
                .codec_path("tonic_prost::ProstCodec")
                .build(),
        )
        .build();
    tonic_prost_build::manual::Builder::new().compile(&[admin]);
    Ok(())
}

/// `namespace_fields.rs`: for every method of the services whose request has a string
/// `namespace` field, that field's number (`auth::request` reads it off the wire), sorted by
/// path for a binary search.
fn write_namespace_fields(fds: &FileDescriptorSet) -> Result<(), Box<dyn std::error::Error>> {
    use prost_types_descriptor::field_descriptor_proto::Type;
    let mut fields = std::collections::HashMap::new();
    for file in &fds.file {
        for message in &file.message_type {
            let name = format!(".{}.{}", file.package(), message.name());
            if let Some(f) = message
                .field
                .iter()
                .find(|f| f.name() == "namespace" && f.r#type() == Type::String)
            {
                fields.insert(name, f.number());
            }
        }
    }
    let mut rows = Vec::new();
    for file in fds
        .file
        .iter()
        .filter(|f| SERVICE_FILES.contains(&f.name()))
    {
        for service in &file.service {
            for method in &service.method {
                if let Some(number) = fields.get(method.input_type()) {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    rows.push((path, *number));
                }
            }
        }
    }
    rows.sort();
    let mut out = String::from("pub const NAMESPACE_FIELDS: &[(&str, u32)] = &[\n");
    for (path, number) in rows {
        out.push_str(&format!("    ({path:?}, {number}),\n"));
    }
    out.push_str("];\n");
    fs::write(format!("{}/namespace_fields.rs", env::var("OUT_DIR")?), out)?;
    Ok(())
}
