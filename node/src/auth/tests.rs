use std::sync::Arc;

use super::*;

/// Claims from a fixed table, by the header's value.
struct Table(HashMap<&'static str, Claims>);

impl ClaimMapper for Table {
    fn claims(&self, authorization: Option<&str>) -> Result<Claims, String> {
        match authorization {
            None => Ok(Claims::default()),
            Some(h) => self.0.get(h).cloned().ok_or_else(|| "bad token".into()),
        }
    }
}

fn claims(permissions: &[&str]) -> Claims {
    let mut claims = Claims {
        subject: "someone".into(),
        ..Claims::default()
    };
    for p in permissions {
        assert!(claims.grant(p), "{p}");
    }
    claims
}

fn authority() -> Authority {
    Authority::new(Arc::new(Table(HashMap::from([
        ("reader", claims(&["orders:read"])),
        ("worker", claims(&["orders:worker"])),
        ("writer", claims(&["orders:write"])),
        ("admin", claims(&["orders:admin"])),
        ("system", claims(&["system:admin"])),
        ("system-reader", claims(&["system:read"])),
    ]))))
}

const WF: &str = "/temporal.api.workflowservice.v1.WorkflowService/";
const OP: &str = "/temporal.api.operatorservice.v1.OperatorService/";

fn allowed(token: Option<&str>, method: &str, namespace: Option<&str>) -> bool {
    authority().decide(method, token, namespace).is_ok()
}

#[test]
fn each_role_reaches_its_family_of_calls_in_its_namespace_only() {
    let start = format!("{WF}StartWorkflowExecution");
    let describe = format!("{WF}DescribeWorkflowExecution");
    let poll = format!("{WF}PollWorkflowTaskQueue");
    let register = format!("{WF}RegisterNamespace");
    let add_attributes = format!("{OP}AddSearchAttributes");
    // (token, read, worker call, write, namespace admin)
    for (token, read, worker, write, admin) in [
        ("reader", true, false, false, false),
        ("worker", true, true, false, false),
        ("writer", true, true, true, false),
        ("admin", true, true, true, true),
        ("system", true, true, true, true),
        ("system-reader", true, false, false, false),
    ] {
        let ns = Some("orders");
        assert_eq!(allowed(Some(token), &describe, ns), read, "{token} read");
        assert_eq!(allowed(Some(token), &poll, ns), worker, "{token} poll");
        assert_eq!(allowed(Some(token), &start, ns), write, "{token} write");
        assert_eq!(
            allowed(Some(token), &register, ns),
            admin,
            "{token} register"
        );
        assert_eq!(
            allowed(Some(token), &add_attributes, ns),
            admin,
            "{token} operator"
        );
    }
    // A namespace role says nothing of another namespace; a system role covers them all.
    assert!(!allowed(Some("admin"), &describe, Some("billing")));
    assert!(allowed(Some("system-reader"), &describe, Some("billing")));
}

#[test]
fn cluster_calls_need_a_system_role_and_health_needs_nothing() {
    let list = format!("{WF}ListNamespaces");
    assert!(!allowed(Some("admin"), &list, None));
    assert!(allowed(Some("system-reader"), &list, None));
    assert!(allowed(None, &format!("{WF}GetSystemInfo"), None));
    assert!(allowed(None, "/grpc.health.v1.Health/Check", None));
    assert!(!allowed(
        Some("system-reader"),
        "/dura.admin.ClusterAdmin/Status",
        None
    ));
    assert!(allowed(
        Some("system"),
        "/dura.admin.ClusterAdmin/Status",
        None
    ));
    // No credentials, bad credentials, or a service no rule covers.
    assert!(!allowed(
        None,
        &format!("{WF}DescribeNamespace"),
        Some("orders")
    ));
    assert!(matches!(
        authority().decide(
            &format!("{WF}DescribeNamespace"),
            Some("forged"),
            Some("orders")
        ),
        Err(Denied::Credentials(_))
    ));
    assert!(!allowed(
        Some("system"),
        "/temporal.api.testservice.v1.TestService/Sleep",
        None
    ));
}

#[test]
fn reads_are_the_calls_temporal_counts_as_reads() {
    for read in [
        "GetWorkflowExecutionHistory",
        "ListWorkflowExecutions",
        "CountWorkflowExecutions",
        "QueryWorkflow",
        "PollWorkflowExecutionUpdate",
        "DescribeSchedule",
        "ScanWorkflowExecutions",
    ] {
        assert_eq!(
            rule(&format!("{WF}{read}")),
            Some(Rule::Namespace(Access::Read)),
            "{read}"
        );
    }
    for write in [
        "SignalWorkflowExecution",
        "TerminateWorkflowExecution",
        "CreateSchedule",
    ] {
        assert_eq!(
            rule(&format!("{WF}{write}")),
            Some(Rule::Namespace(Access::Write)),
            "{write}"
        );
    }
    assert_eq!(
        rule(&format!("{OP}ListClusters")),
        Some(Rule::Cluster(Access::Admin))
    );
    assert_eq!(
        rule(&format!("{OP}ListSearchAttributes")),
        Some(Rule::Namespace(Access::Read))
    );
}

#[test]
fn a_permission_without_a_scope_grants_nothing() {
    let mut claims = Claims::default();
    assert!(!claims.grant("admin"));
    assert!(claims.grant("orders:superuser"));
    assert_eq!(claims.roles_in("orders"), Roles::default());
}
