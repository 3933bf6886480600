//! `--log-format` / `--log-level` as the real dev server understands them.

use tracing_subscriber::{EnvFilter, fmt};

use crate::cli::{LogFormat, LogLevel};

pub fn init(format: LogFormat, level: LogLevel) {
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
        LogLevel::Never => "off",
    };
    // RUST_LOG, when set, refines the level for debugging individual crates.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},openraft=error,h2=warn,tower=warn,hyper=warn,rustls=error"
        ))
    });
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.pretty().init(),
        LogFormat::Text => builder.init(),
    }
}
