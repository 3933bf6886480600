//! Compiles Temporal's service protos (the ones `temporalio-protos` ships) into a descriptor set
//! that keeps their `google.api.http` annotations — the set that crate exports has them
//! stripped — and points the crate at the OpenAPI specs shipped beside them.

use std::{env, fs, path::PathBuf, process::Command};

/// The services whose annotated methods are routed, and what their errors' details need.
const FILES: &[&str] = &[
    "temporal/api/workflowservice/v1/service.proto",
    "temporal/api/operatorservice/v1/service.proto",
    "temporal/api/errordetails/v1/message.proto",
    "google/rpc/status.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = temporalio_protos_dir()?.join("protos");
    println!("cargo:rerun-if-changed={}", protos.display());
    let mut compiler = protox::Compiler::new([protos.join("api_upstream"), protos.clone()])?;
    compiler.include_imports(true);
    compiler.open_files(FILES)?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("http_descriptors.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let openapi = protos.join("api_upstream/openapi");
    for spec in ["openapiv2.json", "openapiv3.yaml"] {
        fs::copy(openapi.join(spec), out.join(spec))?;
    }
    Ok(())
}

/// Where cargo unpacked the `temporalio-protos` package this build links (registry, vendor
/// directory or git checkout alike): asked of `cargo metadata` against the lockfile, for the
/// build's platforms only. Offline first; a build of one binary has not downloaded the other
/// members' dev-dependencies, which the workspace's metadata lists, so then online.
fn temporalio_protos_dir() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("Cargo.toml");
    let metadata = |offline: bool| -> Result<std::process::Output, Box<dyn std::error::Error>> {
        let mut command = Command::new(env::var("CARGO")?);
        command
            .args(["metadata", "--format-version", "1", "--locked"])
            .args(["--filter-platform", &env::var("HOST")?])
            .args(["--filter-platform", &env::var("TARGET")?])
            .arg("--manifest-path")
            .arg(&manifest);
        if offline {
            command.arg("--offline");
        }
        Ok(command.output()?)
    };
    let mut output = metadata(true)?;
    if !output.status.success() {
        output = metadata(false)?;
    }
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "temporalio-protos")
        .ok_or("cargo metadata lists no temporalio-protos package")?;
    let manifest_path = package["manifest_path"]
        .as_str()
        .ok_or("temporalio-protos has no manifest_path")?;
    Ok(PathBuf::from(manifest_path)
        .parent()
        .ok_or("manifest_path has no parent")?
        .to_path_buf())
}
