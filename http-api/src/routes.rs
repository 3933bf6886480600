//! The route table: every `google.api.http` binding (and additional binding) of the served
//! services' methods, and the match of a request's method and raw path against it.

use http::Method;
use percent_encoding::percent_decode_str;
use prost_reflect::{DescriptorPool, MethodDescriptor, Value};

/// The services whose annotated methods the HTTP API serves.
pub const SERVICES: &[&str] = &[
    "temporal.api.workflowservice.v1.WorkflowService",
    "temporal.api.operatorservice.v1.OperatorService",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{execution.workflow_id}`: the request field the segment sets, by its proto names.
    Capture(Vec<String>),
}

/// Where the JSON body of a request goes (`body:` of the binding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRule {
    /// No body: every field not captured by the path may come from the query.
    None,
    /// `body: "*"`: the body is the whole request; the query sets nothing.
    Whole,
    /// `body: "field"`: the body is that field; the query may set the others.
    Field(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    /// The binding as annotated, e.g. `/api/v1/namespaces/{namespace}/workflows`.
    pub template: String,
    segments: Vec<Segment>,
    pub body: BodyRule,
    pub rpc: MethodDescriptor,
    /// `/temporal.api.workflowservice.v1.WorkflowService/ListWorkflowExecutions`.
    pub grpc_path: String,
}

impl Route {
    fn literals(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }

    /// The path's captures (field path, value) if the decoded `segments` fit this route.
    fn captures(&self, segments: &[String]) -> Option<Vec<(Vec<String>, String)>> {
        if segments.len() != self.segments.len() {
            return None;
        }
        let mut captures = Vec::new();
        for (template, segment) in self.segments.iter().zip(segments) {
            match template {
                Segment::Literal(literal) if literal == segment => {}
                Segment::Literal(_) => return None,
                Segment::Capture(_) if segment.is_empty() => return None,
                Segment::Capture(field) => captures.push((field.clone(), segment.clone())),
            }
        }
        Some(captures)
    }
}

/// What a request's method and path found.
pub enum Found<'a> {
    Route {
        route: &'a Route,
        captures: Vec<(Vec<String>, String)>,
    },
    /// The path is a route's, but not for this HTTP method.
    MethodNotAllowed,
    NotFound,
}

#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("the descriptor set has no google.api.http extension")]
    NoHttpExtension,
    #[error("the descriptor set has no service {0}")]
    NoService(String),
    #[error("{rpc}: binding {template:?} is not a path template Dura can match")]
    BadTemplate { rpc: String, template: String },
}

impl RouteTable {
    /// Every binding of every method of `services` in `pool`.
    pub fn from_pool(pool: &DescriptorPool, services: &[&str]) -> Result<Self, RouteError> {
        let http = pool
            .get_extension_by_name("google.api.http")
            .ok_or(RouteError::NoHttpExtension)?;
        let mut routes = Vec::new();
        for name in services {
            let service = pool
                .get_service_by_name(name)
                .ok_or_else(|| RouteError::NoService(name.to_string()))?;
            for rpc in service.methods() {
                let options = rpc.options();
                if !options.has_extension(&http) {
                    continue;
                }
                let Value::Message(rule) = options.get_extension(&http).into_owned() else {
                    continue;
                };
                let mut rules = vec![rule.clone()];
                if let Some(Value::List(more)) = rule
                    .get_field_by_name("additional_bindings")
                    .map(|v| v.into_owned())
                {
                    rules.extend(more.into_iter().filter_map(|v| match v {
                        Value::Message(m) => Some(m),
                        _ => None,
                    }));
                }
                for rule in rules {
                    if let Some(route) = route_of(&rpc, &rule)? {
                        routes.push(route);
                    }
                }
            }
        }
        // The most literal template wins: `/workflows/execute-multi-operation` before
        // `/workflows/{workflow_id}`. The sort is stable, so ties keep the protos' order.
        routes.sort_by_key(|r| std::cmp::Reverse(r.literals()));
        Ok(RouteTable { routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for `method` and the raw (still percent-encoded) `path`.
    pub fn find(&self, method: &Method, path: &str) -> Found<'_> {
        // Each segment is decoded on its own: a workflow id may hold an encoded '/'.
        let decoded: Option<Vec<String>> = path
            .trim_start_matches('/')
            .split('/')
            .map(|raw| {
                percent_decode_str(raw)
                    .decode_utf8()
                    .ok()
                    .map(|s| s.into_owned())
            })
            .collect();
        let Some(segments) = decoded else {
            return Found::NotFound;
        };
        let mut path_known = false;
        for route in &self.routes {
            if let Some(captures) = route.captures(&segments) {
                if route.method == *method {
                    return Found::Route { route, captures };
                }
                path_known = true;
            }
        }
        match path_known {
            true => Found::MethodNotAllowed,
            false => Found::NotFound,
        }
    }
}

fn string_field(rule: &prost_reflect::DynamicMessage, name: &str) -> Option<String> {
    if !rule.has_field_by_name(name) {
        return None;
    }
    match rule.get_field_by_name(name)?.into_owned() {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn route_of(
    rpc: &MethodDescriptor,
    rule: &prost_reflect::DynamicMessage,
) -> Result<Option<Route>, RouteError> {
    let verbs = [
        ("get", Method::GET),
        ("put", Method::PUT),
        ("post", Method::POST),
        ("delete", Method::DELETE),
        ("patch", Method::PATCH),
    ];
    let Some((method, template)) = verbs
        .into_iter()
        .find_map(|(name, method)| string_field(rule, name).map(|t| (method, t)))
    else {
        return Ok(None);
    };
    let bad = || RouteError::BadTemplate {
        rpc: rpc.full_name().to_string(),
        template: template.clone(),
    };
    let mut segments = Vec::new();
    for part in template.strip_prefix('/').ok_or_else(bad)?.split('/') {
        let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            // `{name=pattern}` captures more than one segment; Temporal's protos have none.
            Some(field) if field.contains('=') => return Err(bad()),
            Some(field) => Segment::Capture(field.split('.').map(str::to_string).collect()),
            None if part.contains(['{', '}', ':']) => return Err(bad()),
            None => Segment::Literal(part.to_string()),
        };
        segments.push(segment);
    }
    let body = match string_field(rule, "body").as_deref() {
        None | Some("") => BodyRule::None,
        Some("*") => BodyRule::Whole,
        Some(field) => BodyRule::Field(field.to_string()),
    };
    Ok(Some(Route {
        method,
        template,
        segments,
        body,
        grpc_path: format!("/{}/{}", rpc.parent_service().full_name(), rpc.name()),
        rpc: rpc.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::from_pool(crate::descriptors::pool(), SERVICES).unwrap()
    }

    #[test]
    fn the_annotations_survive_compilation() {
        let table = table();
        // 100-odd annotated methods, most with an `/api/v1` twin.
        assert!(table.routes().len() > 150, "{}", table.routes().len());
    }

    #[test]
    fn a_path_finds_its_method_with_decoded_captures() {
        let table = table();
        let Found::Route { route, captures } = table.find(
            &Method::GET,
            "/api/v1/namespaces/default/workflows/a%2Fb%20c/history",
        ) else {
            panic!("no route");
        };
        assert_eq!(route.rpc.name(), "GetWorkflowExecutionHistory");
        assert_eq!(
            captures,
            vec![
                (vec!["namespace".to_string()], "default".to_string()),
                (
                    vec!["execution".to_string(), "workflow_id".to_string()],
                    "a/b c".to_string()
                ),
            ]
        );
    }

    #[test]
    fn every_binding_finds_its_own_method() {
        let table = table();
        for route in table.routes() {
            let path = route
                .template
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let Found::Route { route: found, .. } = table.find(&route.method, &path) else {
                panic!("{} {path} found nothing", route.method);
            };
            assert_eq!(found.rpc.full_name(), route.rpc.full_name(), "{path}");
        }
    }

    #[test]
    fn the_wrong_method_and_an_unknown_path_are_told_apart() {
        let table = table();
        assert!(matches!(
            table.find(&Method::DELETE, "/api/v1/namespaces/default/workflows"),
            Found::MethodNotAllowed
        ));
        assert!(matches!(
            table.find(&Method::GET, "/api/v1/nothing/here"),
            Found::NotFound
        ));
    }
}
