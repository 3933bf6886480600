//! Validated configuration of a dev server, built from the command line.

use std::{net::SocketAddr, path::PathBuf};

use dura_raft_store::Durability;

use crate::{
    cli::{DurabilityArg, StartDevArgs},
    namespace::{DEFAULT_NAMESPACE, SearchAttributeType},
};

#[derive(Debug, Clone)]
pub struct DevServerConfig {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    /// `None`: a temporary directory removed on exit.
    pub data_dir: Option<PathBuf>,
    pub namespaces: Vec<String>,
    pub search_attributes: Vec<(String, SearchAttributeType)>,
    pub shards: u32,
    pub durability: Durability,
    /// `system.enableEagerWorkflowStart` (default true, as on the real server).
    pub eager_workflow_start: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid --dynamic-config-value {0:?}: expected KEY=VALUE with a JSON value")]
    DynamicConfig(String),
    #[error(
        "invalid --search-attribute {0:?}: expected KEY=TYPE, TYPE one of Text, Keyword, Int, Double, Bool, Datetime, KeywordList"
    )]
    SearchAttribute(String),
    #[error("--shards must be between 1 and 1024")]
    Shards,
}

impl DevServerConfig {
    pub fn from_args(args: &StartDevArgs) -> Result<Self, ConfigError> {
        let mut eager_workflow_start = true;
        for value in &args.dynamic_config_values {
            let (key, json) = value
                .split_once('=')
                .ok_or_else(|| ConfigError::DynamicConfig(value.clone()))?;
            let json = serde_json::from_str::<serde_json::Value>(json)
                .map_err(|_| ConfigError::DynamicConfig(value.clone()))?;
            match key {
                "system.enableEagerWorkflowStart" => {
                    eager_workflow_start = json
                        .as_bool()
                        .ok_or_else(|| ConfigError::DynamicConfig(value.clone()))?;
                }
                // The real server's other keys tune what Dura does not have (yet).
                _ => tracing::debug!(key, "ignoring dynamic config value Dura does not use"),
            }
        }
        let search_attributes = args
            .search_attributes
            .iter()
            .map(|sa| {
                let (key, kind) = sa
                    .split_once('=')
                    .ok_or_else(|| ConfigError::SearchAttribute(sa.clone()))?;
                let kind = SearchAttributeType::parse(kind)
                    .ok_or_else(|| ConfigError::SearchAttribute(sa.clone()))?;
                if key.is_empty() {
                    return Err(ConfigError::SearchAttribute(sa.clone()));
                }
                Ok((key.to_string(), kind))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !(1..=1024).contains(&args.shards) {
            return Err(ConfigError::Shards);
        }
        let mut namespaces = vec![DEFAULT_NAMESPACE.to_string()];
        for ns in &args.namespaces {
            if !namespaces.contains(ns) {
                namespaces.push(ns.clone());
            }
        }
        Ok(Self {
            listen: SocketAddr::new(args.ip, args.port),
            metrics_listen: SocketAddr::new(args.ip, args.metrics_port.unwrap_or(0)),
            data_dir: args.db_filename.clone(),
            namespaces,
            search_attributes,
            shards: args.shards,
            durability: match args.durability {
                DurabilityArg::Fsync => Durability::Fsync,
                DurabilityArg::Relaxed => Durability::Relaxed,
            },
            eager_workflow_start,
        })
    }
}
