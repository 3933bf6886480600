//! `dura bench` without the `dura` binary, for developing the bench itself:
//! `cargo run -p dura-client --example bench -- run --workload echo --concurrency 20`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "bench")]
struct Cli {
    #[command(flatten)]
    bench: dura_client::bench::BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG=debug shows each failed RPC's status message.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    dura_client::bench::run(Cli::parse().bench).await
}
