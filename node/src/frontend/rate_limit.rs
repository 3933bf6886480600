//! `frontend.namespaceRPS`: how many requests a second one namespace may make of this node
//! (Temporal's `NamespaceRateLimitInterceptor`), a token bucket per namespace holding up to
//! `rate × frontend.namespaceBurstRatio` tokens. A request over it is refused before its
//! handler runs, so it changes nothing, with the real server's `RESOURCE_EXHAUSTED`.
//!
//! Like the real server, visibility queries and namespace registration have limiters of their
//! own (not built here) and are not counted; every other namespace-scoped WorkflowService call
//! is, polls included.

use std::{collections::HashMap, sync::Mutex, time::Instant};

const WORKFLOW_SERVICE: &str = "/temporal.api.workflowservice.v1.WorkflowService/";

/// Calls the real server counts against other limiters (`configs/quotas.go`:
/// `VisibilityAPIToPriority`, `NamespaceReplicationInducingAPIToPriority`).
const NOT_COUNTED: &[&str] = &[
    "CountWorkflowExecutions",
    "ScanWorkflowExecutions",
    "ListOpenWorkflowExecutions",
    "ListClosedWorkflowExecutions",
    "ListWorkflowExecutions",
    "ListArchivedWorkflowExecutions",
    "CountActivityExecutions",
    "ListActivityExecutions",
    "GetWorkerTaskReachability",
    "ListSchedules",
    "CountSchedules",
    "ListBatchOperations",
    "ListDeployments",
    "GetDeploymentReachability",
    "ListWorkerDeployments",
    "RegisterNamespace",
    "UpdateNamespace",
    "UpdateWorkerBuildIdCompatibility",
    "UpdateWorkerVersioningRules",
];

/// Buckets kept before idle (full) ones are forgotten: names come from callers.
const MAX_BUCKETS: usize = 4096;

pub struct NamespaceRateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl NamespaceRateLimiter {
    /// `rate` requests a second per namespace, up to `burst` at once.
    pub fn new(rate: f64, burst: f64) -> Self {
        NamespaceRateLimiter {
            rate,
            burst: burst.max(1.0),
            buckets: Mutex::default(),
        }
    }

    /// Whether calls to `path` are counted.
    pub fn counts(path: &str) -> bool {
        path.strip_prefix(WORKFLOW_SERVICE)
            .is_some_and(|method| !NOT_COUNTED.contains(&method))
    }

    /// Takes a token of `namespace`'s bucket, if it has one.
    pub fn admit(&self, namespace: &str) -> bool {
        self.admit_at(namespace, Instant::now())
    }

    fn admit_at(&self, namespace: &str, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(namespace) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(namespace.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refilled = now.duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refilled).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_namespace_gets_its_burst_then_its_rate() {
        let limiter = NamespaceRateLimiter::new(5.0, 10.0);
        let start = Instant::now();
        let admitted = (0..20).filter(|_| limiter.admit_at("ns", start)).count();
        assert_eq!(admitted, 10);
        assert!(
            limiter.admit_at("other", start),
            "buckets are per namespace"
        );
        let later = start + Duration::from_millis(400);
        assert_eq!((0..20).filter(|_| limiter.admit_at("ns", later)).count(), 2);
    }

    #[test]
    fn visibility_and_registration_are_not_counted() {
        assert!(NamespaceRateLimiter::counts(
            "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution"
        ));
        assert!(NamespaceRateLimiter::counts(
            "/temporal.api.workflowservice.v1.WorkflowService/PollWorkflowTaskQueue"
        ));
        assert!(!NamespaceRateLimiter::counts(
            "/temporal.api.workflowservice.v1.WorkflowService/ListWorkflowExecutions"
        ));
        assert!(!NamespaceRateLimiter::counts(
            "/temporal.api.operatorservice.v1.OperatorService/ListSearchAttributes"
        ));
    }
}
