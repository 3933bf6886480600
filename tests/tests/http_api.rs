//! Temporal's HTTP API on `--http-port`: every annotated route reaches a handler of Dura's
//! (or its RPC's UNIMPLEMENTED, as 501), through a real `dura server start-dev` over TCP.

use std::time::Duration;

use dura_http_api::routes::{RouteTable, SERVICES};
use dura_tests::{DevServer, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What one HTTP/1.1 exchange answered: the status code and the JSON body.
async fn exchange(port: u16, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let json = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}

/// The route's template with its captures filled: the namespace is a real one, the rest
/// names nothing that exists.
fn filled(template: &str) -> String {
    template
        .split('/')
        .map(|s| match s {
            "{namespace}" => "default",
            s if s.starts_with('{') => "no-such-thing",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_annotated_route_reaches_a_handler() -> anyhow::Result<()> {
    dura_tests::bounded(
        "every_annotated_route_reaches_a_handler",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir()?;
            let http_port = free_port();
            let _server = DevServer::start_with_args(
                &dir.path().join("db"),
                &["--http-port", &http_port.to_string()],
            )
            .await?;
            let table = RouteTable::from_pool(dura_http_api::descriptors::pool(), SERVICES)?;
            let mut unimplemented = Vec::new();
            for route in table.routes() {
                let path = filled(&route.template);
                let body = if route.method == http::Method::GET {
                    ""
                } else {
                    "{}"
                };
                let exchanged = exchange(http_port, route.method.as_str(), &path, body);
                // A handler that waits (a long poll) has been reached as well.
                let Ok((status, json)) =
                    tokio::time::timeout(Duration::from_secs(5), exchanged).await
                else {
                    continue;
                };
                let message = json["message"].as_str().unwrap_or_default();
                let what = format!(
                    "{} {path} ({}) answered {status} {json}",
                    route.method,
                    route.rpc.name()
                );
                assert!(json.is_object(), "{what}");
                assert!(
                    !(status == 404 && message == "Not Found") && message != "Method Not Allowed",
                    "the gateway found no route: {what}"
                );
                if status == 501 {
                    assert!(
                        message
                            .contains(&format!("{} is not implemented by Dura", route.rpc.name())),
                        "{what}"
                    );
                    unimplemented.push(route.rpc.name().to_string());
                }
            }
            // The ones a user of the HTTP API hits every day are served.
            for served in [
                "StartWorkflowExecution",
                "ListWorkflowExecutions",
                "GetWorkflowExecutionHistory",
                "SignalWorkflowExecution",
                "TerminateWorkflowExecution",
                "DescribeNamespace",
            ] {
                assert!(
                    !unimplemented.iter().any(|u| u == served),
                    "{served} answered 501"
                );
            }
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn a_workflow_started_over_http_is_listed_signalled_and_terminated() -> anyhow::Result<()> {
    dura_tests::bounded("a_workflow_started_over_http_is_listed_signalled_and_terminated", dura_tests::TEST_BUDGET, async {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let _server =
            DevServer::start_with_args(&dir.path().join("db"), &["--http-port", &port.to_string()]).await?;
        let base = "/api/v1/namespaces/default/workflows";
        let start = r#"{"workflowType":{"name":"Greet"},"taskQueue":{"name":"tq"},"input":[{"hello":"world"}]}"#;
        let (status, started) = exchange(port, "POST", &format!("{base}/a%2Fb"), start).await;
        assert_eq!(status, 200, "{started}");
        let run_id = started["runId"].as_str().unwrap().to_string();
        assert_eq!(started["started"], true);

        let (status, listed) = exchange(port, "GET", &format!("{base}?query=WorkflowId%3D%22a%2Fb%22"), "").await;
        assert_eq!(status, 200, "{listed}");
        let execution = &listed["executions"][0];
        assert_eq!(execution["execution"]["workflowId"], "a/b");
        assert_eq!(execution["status"], "WORKFLOW_EXECUTION_STATUS_RUNNING");

        let signal = r#"{"input":[{"n":1}]}"#;
        let (status, _) = exchange(port, "POST", &format!("{base}/a%2Fb/signal/go"), signal).await;
        assert_eq!(status, 200);
        let (status, history) = exchange(port, "GET", &format!("{base}/a%2Fb/history?execution.runId={run_id}"), "").await;
        assert_eq!(status, 200, "{history}");
        let events = history["history"]["events"].as_array().unwrap();
        let started_event = &events[0]["workflowExecutionStartedEventAttributes"];
        assert_eq!(started_event["input"], serde_json::json!([{"hello": "world"}]));
        let signalled = events
            .iter()
            .find(|e| e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED")
            .expect("a signalled event");
        assert_eq!(signalled["workflowExecutionSignaledEventAttributes"]["input"], serde_json::json!([{"n": 1}]));

        // Without shorthand, the payloads as proto JSON writes them.
        let (_, plain) = exchange(port, "GET", &format!("{base}/a%2Fb/history?noPayloadShorthand"), "").await;
        let input = &plain["history"]["events"][0]["workflowExecutionStartedEventAttributes"]["input"];
        assert_eq!(input["payloads"][0]["metadata"]["encoding"], "anNvbi9wbGFpbg==");

        let (status, _) = exchange(port, "POST", &format!("{base}/a%2Fb/terminate"), r#"{"reason":"done"}"#).await;
        assert_eq!(status, 200);
        let (_, described) = exchange(port, "GET", &format!("{base}/a%2Fb"), "").await;
        assert_eq!(described["workflowExecutionInfo"]["status"], "WORKFLOW_EXECUTION_STATUS_TERMINATED");

        let (status, missing) = exchange(port, "GET", &format!("{base}/nope"), "").await;
        assert_eq!(status, 404);
        assert_eq!(missing["code"], 5);
        assert_eq!(missing["details"][0]["@type"], "type.googleapis.com/temporal.api.errordetails.v1.NotFoundFailure");
        let (status, refused) = exchange(port, "POST", &format!("{base}/x"), r#"{"noSuchField":1}"#).await;
        assert_eq!((status, refused["code"].clone()), (400, serde_json::json!(3)));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn any_node_of_a_cluster_answers_the_http_api_for_the_whole_cluster() -> anyhow::Result<()> {
    dura_tests::bounded(
        "any_node_of_a_cluster_answers_the_http_api_for_the_whole_cluster",
        dura_tests::TEST_BUDGET,
        async {
            let dir = tempfile::tempdir()?;
            let mut nodes = dura_tests::cluster::cluster(dir.path(), &[]);
            let http_ports: Vec<u16> = nodes.iter().map(|_| free_port()).collect();
            for (node, port) in nodes.iter_mut().zip(&http_ports) {
                node.args
                    .extend(["--http-port".to_string(), port.to_string()]);
                node.spawn();
            }
            for node in nodes.iter_mut() {
                node.wait_ready().await;
            }
            // Workflows on every shard, started through node 1's gRPC port.
            let mut client = nodes[0].client().await?;
            let ids: Vec<String> = (0..8).map(|i| format!("across-{i}")).collect();
            for id in &ids {
                dura_tests::cluster::start(&mut client, id).await;
            }
            let base = "/api/v1/namespaces/default/workflows";
            for port in &http_ports {
                let (status, listed) = exchange(*port, "GET", base, "").await;
                assert_eq!(status, 200, "{listed}");
                let listed = listed["executions"].as_array().map_or(0, Vec::len);
                assert_eq!(listed, ids.len(), "node on HTTP port {port} lists them all");
            }
            // A write through another node's HTTP port lands, and a third node reads it.
            for id in &ids {
                let (status, answer) = exchange(
                    http_ports[1],
                    "POST",
                    &format!("{base}/{id}/signal/go"),
                    r#"{"input":["x"]}"#,
                )
                .await;
                assert_eq!(status, 200, "{answer}");
                let (_, history) =
                    exchange(http_ports[2], "GET", &format!("{base}/{id}/history"), "").await;
                let signalled = history["history"]["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED");
                assert!(signalled, "{history}");
            }
            Ok(())
        },
    )
    .await
}
