//! The real server's dynamic-config keys Dura acts on, given as `--dynamic-config-value
//! KEY=VALUE` (VALUE is JSON) like `temporal server start-dev` takes them. Values apply to
//! every namespace: Dura has no per-namespace constraints yet. A key Dura has no use for is
//! logged and ignored, as the real server ignores keys it does not know.

use dura_history::limits::{Limit, Limits};

use crate::config::ConfigError;

/// Temporal's `frontend.namespaceRPS` default.
const NAMESPACE_RPS: f64 = 2400.0;
/// Temporal's `frontend.namespaceBurstRatio` default.
const NAMESPACE_BURST_RATIO: f64 = 2.0;

#[derive(Debug, Clone, PartialEq)]
pub struct DynamicConfig {
    /// `system.enableEagerWorkflowStart` (default true, as on the real server).
    pub eager_workflow_start: bool,
    /// `limit.*` and `frontend.searchAttributes*Limit`.
    pub limits: Limits,
    pub namespace_rate: NamespaceRate,
}

/// How many requests a second a namespace may make of one node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NamespaceRate {
    /// `frontend.namespaceRPS`: per node.
    pub per_node: f64,
    /// `frontend.globalNamespaceRPS`: for the whole cluster, shared evenly by its nodes; wins
    /// over `per_node` when set (> 0).
    pub global: f64,
    /// `frontend.namespaceBurstRatio`: the burst allowed, as a multiple of the rate.
    pub burst_ratio: f64,
}

impl NamespaceRate {
    /// (requests per second, burst) for one node of a cluster of `members` nodes.
    pub fn for_node(&self, members: usize) -> (f64, f64) {
        let rate = if self.global > 0.0 {
            self.global / members.max(1) as f64
        } else {
            self.per_node
        };
        (rate, rate * self.burst_ratio.max(1.0))
    }
}

impl Default for DynamicConfig {
    fn default() -> Self {
        DynamicConfig {
            eager_workflow_start: true,
            limits: Limits::temporal(),
            namespace_rate: NamespaceRate {
                per_node: NAMESPACE_RPS,
                global: 0.0,
                burst_ratio: NAMESPACE_BURST_RATIO,
            },
        }
    }
}

impl DynamicConfig {
    /// The real server's defaults, changed by `values` (`KEY=JSON`, later ones win).
    pub fn parse(values: &[String]) -> Result<Self, ConfigError> {
        let mut config = DynamicConfig::default();
        for value in values {
            let invalid = || ConfigError::DynamicConfig(value.clone());
            let (key, json) = value.split_once('=').ok_or_else(invalid)?;
            let json = serde_json::from_str::<serde_json::Value>(json).map_err(|_| invalid())?;
            let number = || json.as_f64().filter(|n| *n >= 0.0).ok_or_else(invalid);
            match key {
                "system.enableEagerWorkflowStart" => {
                    config.eager_workflow_start = json.as_bool().ok_or_else(invalid)?;
                }
                "frontend.namespaceRPS" => config.namespace_rate.per_node = number()?,
                "frontend.globalNamespaceRPS" => config.namespace_rate.global = number()?,
                "frontend.namespaceBurstRatio" => config.namespace_rate.burst_ratio = number()?,
                key => match Limit::from_key(key) {
                    Some(limit) => config.limits.set(limit, json.as_u64().ok_or_else(invalid)?),
                    None => tracing::debug!(key, "ignoring dynamic config value Dura does not use"),
                },
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<DynamicConfig, ConfigError> {
        DynamicConfig::parse(&values.iter().map(|v| v.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn keys_are_the_real_servers_and_unset_ones_keep_its_defaults() {
        let config = parse(&[
            "limit.blobSize.error=1000",
            "limit.numPendingActivities.error=3",
            "frontend.namespaceRPS=5",
            "system.enableEagerWorkflowStart=false",
            "history.someKeyDuraDoesNotUse=1",
        ])
        .unwrap();
        assert_eq!(config.limits.get(Limit::BlobSize), Some(1000));
        assert_eq!(config.limits.get(Limit::PendingActivities), Some(3));
        assert_eq!(config.limits.get(Limit::MemoSize), Some(2 * 1024 * 1024));
        assert_eq!(config.namespace_rate.for_node(3), (5.0, 10.0));
        assert!(!config.eager_workflow_start);
    }

    #[test]
    fn a_global_rate_is_shared_by_the_nodes() {
        let config = parse(&["frontend.globalNamespaceRPS=300"]).unwrap();
        assert_eq!(config.namespace_rate.for_node(3), (100.0, 200.0));
    }

    #[test]
    fn values_of_the_wrong_type_are_refused() {
        for bad in [
            "limit.blobSize.error=\"big\"",
            "limit.blobSize.error=-1",
            "limit.blobSize.error=1.5",
            "frontend.namespaceRPS=-3",
            "system.enableEagerWorkflowStart=1",
            "limit.blobSize.error",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad} accepted");
        }
    }
}
