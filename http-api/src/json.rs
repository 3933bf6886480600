//! Canonical protobuf JSON both ways, with Temporal's payload shorthand: a request's path
//! captures, query parameters and body become the method's request message, and its answer
//! becomes JSON as the real server's marshaler writes it.

use base64::Engine;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    SerializeOptions,
};
use serde_json::{Map, Value};

use crate::routes::{BodyRule, Route};

const PAYLOAD: &str = "temporal.api.common.v1.Payload";
const PAYLOADS: &str = "temporal.api.common.v1.Payloads";
/// Where shorthand carries a `json/protobuf` payload's message type.
const MESSAGE_TYPE_KEY: &str = "_protoMessageType";

/// How the JSON of one request and its answer is written.
#[derive(Debug, Clone, Copy)]
pub struct JsonForm {
    /// Payloads as their JSON values (the default), or as `{metadata, data}` with base64.
    pub shorthand: bool,
    /// Indented output (`?pretty`).
    pub pretty: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the request body is not JSON: {0}")]
    BodyNotJson(serde_json::Error),
    #[error("the request body must be a JSON object")]
    BodyNotObject,
    #[error("{0}")]
    Invalid(serde_json::Error),
}

/// The request message of `route` from the path's captures, the query and the body.
pub fn request_message(
    route: &Route,
    captures: &[(Vec<String>, String)],
    query: &[(String, String)],
    body: &[u8],
    form: JsonForm,
) -> Result<DynamicMessage, RequestError> {
    let desc = route.rpc.input();
    let parsed_body = || -> Result<Value, RequestError> {
        match body.iter().all(u8::is_ascii_whitespace) {
            true => Ok(Value::Object(Map::new())),
            false => serde_json::from_slice(body).map_err(RequestError::BodyNotJson),
        }
    };
    let mut json = match &route.body {
        BodyRule::Whole => parsed_body()?,
        BodyRule::None => Value::Object(Map::new()),
        BodyRule::Field(name) => {
            let mut object = Map::new();
            if let Some(field) = desc.get_field_by_name(name) {
                object.insert(field.json_name().to_string(), parsed_body()?);
            }
            Value::Object(object)
        }
    };
    if !json.is_object() {
        return Err(RequestError::BodyNotObject);
    }
    // With `body: "*"` every field is the body's; grpc-gateway reads no query then.
    if route.body != BodyRule::Whole {
        for (key, raw) in query {
            let path: Vec<String> = key.split('.').map(str::to_string).collect();
            set_field(&desc, &mut json, &path, raw, true);
        }
    }
    for (path, raw) in captures {
        set_field(&desc, &mut json, path, raw, false);
    }
    if form.shorthand {
        walk_payloads(&desc, &mut json, &expand_payload, &expand_payloads);
    }
    DynamicMessage::deserialize_with_options(desc, json, &DeserializeOptions::new())
        .map_err(RequestError::Invalid)
}

/// The JSON of an answer. Fails only for an `Any` of a type the descriptors do not know.
pub fn response_json(
    message: &DynamicMessage,
    form: JsonForm,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut json =
        message.serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())?;
    if form.shorthand {
        walk_payloads(
            &message.descriptor(),
            &mut json,
            &shorten_payload,
            &shorten_payloads,
        );
    }
    match form.pretty {
        true => serde_json::to_vec_pretty(&json),
        false => serde_json::to_vec(&json),
    }
}

/// Sets the field at `path` (proto or JSON names) of the request's JSON to `raw`, converted
/// for the field's type. A query key naming no field is ignored, as grpc-gateway does.
fn set_field(desc: &MessageDescriptor, json: &mut Value, path: &[String], raw: &str, query: bool) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut desc = desc.clone();
    let mut object = json;
    for name in parents {
        let Some(field) = field_named(&desc, name) else {
            return;
        };
        let Kind::Message(inner) = field.kind() else {
            return;
        };
        if field.is_list() || field.is_map() {
            return;
        }
        let Some(map) = object.as_object_mut() else {
            return;
        };
        remove_other_name(map, &field);
        object = map
            .entry(field.json_name().to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        desc = inner;
    }
    let Some(field) = field_named(&desc, last) else {
        return;
    };
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let Some(value) = scalar_value(&field, raw) else {
        return;
    };
    remove_other_name(map, &field);
    let key = field.json_name().to_string();
    if query && field.is_list() {
        match map.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
            Value::Array(items) => items.push(value),
            other => *other = Value::Array(vec![value]),
        }
    } else {
        map.insert(key, value);
    }
}

fn field_named(desc: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    desc.get_field_by_name(name)
        .or_else(|| desc.get_field_by_json_name(name))
}

/// The body may name a field by its proto name; the value set by its JSON name replaces it.
fn remove_other_name(map: &mut Map<String, Value>, field: &FieldDescriptor) {
    if field.name() != field.json_name() {
        map.remove(field.name());
    }
}

/// A path or query value as the JSON the field's type takes; `None` for a field a string
/// cannot set (a message other than the well-known ones).
fn scalar_value(field: &FieldDescriptor, raw: &str) -> Option<Value> {
    let text = || Value::String(raw.to_string());
    Some(match field.kind() {
        Kind::Bool => parse_bool(raw).map_or_else(text, Value::Bool),
        Kind::Enum(_) => match raw.parse::<i32>() {
            Ok(number) => Value::from(number),
            Err(_) => text(),
        },
        Kind::Message(m) if m.full_name() == "google.protobuf.BoolValue" => {
            Value::Bool(parse_bool(raw) == Some(true))
        }
        Kind::Message(m) if m.full_name().starts_with("google.protobuf.") => text(),
        Kind::Message(_) => return None,
        // Proto JSON takes every number as a string too.
        _ => text(),
    })
}

/// A boolean as grpc-gateway reads one from a path or query (Go's `strconv.ParseBool`).
fn parse_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Applies `payload`/`payloads` to every Payload and Payloads value in `json`, a message of
/// type `desc`, however deeply nested (lists and map values included).
fn walk_payloads(
    desc: &MessageDescriptor,
    json: &mut Value,
    payload: &dyn Fn(&mut Value),
    payloads: &dyn Fn(&mut Value),
) {
    let Some(object) = json.as_object_mut() else {
        return;
    };
    for field in desc.fields() {
        let Some(value) = object.get_mut(field.json_name()) else {
            continue;
        };
        let (inner, values): (MessageDescriptor, Vec<&mut Value>) = if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                continue;
            };
            let Kind::Message(inner) = entry.map_entry_value_field().kind() else {
                continue;
            };
            let Some(map) = value.as_object_mut() else {
                continue;
            };
            (inner, map.values_mut().collect())
        } else {
            let Kind::Message(inner) = field.kind() else {
                continue;
            };
            match value {
                Value::Array(items) if field.is_list() => (inner, items.iter_mut().collect()),
                other => (inner, vec![other]),
            }
        };
        for value in values {
            match inner.full_name() {
                PAYLOAD => payload(value),
                PAYLOADS => payloads(value),
                // Well-known types have JSON forms of their own; Any's content is not walked.
                name if name.starts_with("google.protobuf.") => {}
                _ => walk_payloads(&inner, value, payload, payloads),
            }
        }
    }
}

fn base64_of(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Proto JSON writes bytes in standard base64; Temporal's reader also takes URL-safe and
/// unpadded forms.
fn bytes_of(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let url = text.contains(['-', '_']);
    let padded = text.len() % 4 == 0;
    let engine = match (url, padded) {
        (false, true) => &STANDARD,
        (false, false) => &STANDARD_NO_PAD,
        (true, true) => &URL_SAFE,
        (true, false) => &URL_SAFE_NO_PAD,
    };
    engine.decode(text).ok()
}

/// A payload's shorthand, if it has one: `json/plain` is its JSON value, `json/protobuf` its
/// object with the message type beside it, `binary/null` the bare metadata.
fn shorthand_of(payload: &Map<String, Value>) -> Option<Value> {
    let metadata = payload.get("metadata")?.as_object()?;
    let meta = |key: &str| bytes_of(metadata.get(key)?.as_str()?);
    let data = || match payload.get("data") {
        Some(Value::String(text)) => bytes_of(text),
        None => Some(Vec::new()),
        Some(_) => None,
    };
    match meta("encoding")?.as_slice() {
        b"binary/null" => {
            Some(serde_json::json!({"metadata": {"encoding": base64_of(b"binary/null")}}))
        }
        b"json/plain" if metadata.len() == 1 => serde_json::from_slice(&data()?).ok(),
        b"json/protobuf" if metadata.len() == 2 => {
            let message_type = String::from_utf8(meta("messageType")?).ok()?;
            let mut object: Map<String, Value> = serde_json::from_slice(&data()?).ok()?;
            object.insert(MESSAGE_TYPE_KEY.to_string(), Value::String(message_type));
            Some(Value::Object(object))
        }
        // Other encodings (binary/protobuf, encrypted…) stay in the standard form.
        _ => None,
    }
}

fn shorten_payload(value: &mut Value) {
    if let Some(short) = value.as_object().and_then(shorthand_of) {
        *value = short;
    }
}

/// `{"payloads": [...]}` becomes the list of shorthands, when every payload has one.
fn shorten_payloads(value: &mut Value) {
    let Some(object) = value.as_object() else {
        return;
    };
    let items = match object.get("payloads") {
        Some(Value::Array(items)) => items.as_slice(),
        _ => &[],
    };
    let short: Option<Vec<Value>> = items
        .iter()
        .map(|item| item.as_object().and_then(shorthand_of))
        .collect();
    if let Some(short) = short {
        *value = Value::Array(short);
    }
}

/// Whether a JSON object is a payload in the standard form rather than a shorthand value.
fn is_standard_payload(object: &Map<String, Value>) -> bool {
    let Some(Value::Object(metadata)) = object.get("metadata") else {
        return false;
    };
    let Some(encoding) = metadata.get("encoding") else {
        return false;
    };
    let all_base64 = metadata
        .values()
        .all(|v| v.as_str().and_then(bytes_of).is_some());
    if !all_base64 {
        return false;
    }
    match object.get("data") {
        None => *encoding == base64_of(b"binary/null"),
        Some(Value::String(data)) => object.len() == 2 && bytes_of(data).is_some(),
        Some(_) => false,
    }
}

/// A request's payload in either form, as the standard form.
fn expand_payload(value: &mut Value) {
    let standard = |encoding: &[u8], extra: Option<(&str, &str)>, data: Vec<u8>| {
        let mut metadata = Map::new();
        metadata.insert("encoding".into(), base64_of(encoding));
        if let Some((key, text)) = extra {
            metadata.insert(key.into(), base64_of(text.as_bytes()));
        }
        serde_json::json!({"metadata": metadata, "data": base64_of(&data)})
    };
    let expanded = match &mut *value {
        Value::Null => serde_json::json!({"metadata": {"encoding": base64_of(b"binary/null")}}),
        Value::Object(object) if is_standard_payload(object) => return,
        Value::Object(object) if object.contains_key(MESSAGE_TYPE_KEY) => {
            let message_type = match object.remove(MESSAGE_TYPE_KEY) {
                Some(Value::String(t)) => t,
                _ => String::new(),
            };
            let data = serde_json::to_vec(object).expect("a JSON value writes");
            standard(b"json/protobuf", Some(("messageType", &message_type)), data)
        }
        other => {
            let data = serde_json::to_vec(other).expect("a JSON value writes");
            standard(b"json/plain", None, data)
        }
    };
    *value = expanded;
}

/// A request's Payloads as a list of payloads (shorthand), `null`, or the standard object.
fn expand_payloads(value: &mut Value) {
    match value {
        Value::Array(items) => {
            let mut items = std::mem::take(items);
            items.iter_mut().for_each(expand_payload);
            *value = serde_json::json!({ "payloads": items });
        }
        Value::Null => *value = Value::Object(Map::new()),
        Value::Object(object) => {
            if let Some(Value::Array(items)) = object.get_mut("payloads") {
                items.iter_mut().for_each(expand_payload);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{Found, RouteTable, SERVICES};

    const SHORT: JsonForm = JsonForm {
        shorthand: true,
        pretty: false,
    };
    const STANDARD: JsonForm = JsonForm {
        shorthand: false,
        pretty: false,
    };

    fn route(method: http::Method, path: &str) -> (Route, Vec<(Vec<String>, String)>) {
        let table = RouteTable::from_pool(crate::descriptors::pool(), SERVICES).unwrap();
        match table.find(&method, path) {
            Found::Route { route, captures } => (route.clone(), captures),
            _ => panic!("no route for {path}"),
        }
    }

    fn as_json(message: &DynamicMessage, form: JsonForm) -> Value {
        serde_json::from_slice(&response_json(message, form).unwrap()).unwrap()
    }

    #[test]
    fn a_start_in_shorthand_reaches_the_request_as_json_plain_payloads() {
        let (route, captures) = route(http::Method::POST, "/api/v1/namespaces/ns/workflows/wf%201");
        let body = br#"{"workflowType":{"name":"Hello"},"taskQueue":{"name":"tq"},
            "input":[{"hello":"world"}, null],"workflowRunTimeout":"10s"}"#;
        let message = request_message(&route, &captures, &[], body, SHORT).unwrap();
        let standard = as_json(&message, STANDARD);
        assert_eq!(standard["namespace"], "ns");
        assert_eq!(standard["workflowId"], "wf 1");
        assert_eq!(standard["workflowRunTimeout"], "10s");
        let payloads = &standard["input"]["payloads"];
        assert_eq!(
            payloads[0]["metadata"]["encoding"],
            base64_of(b"json/plain")
        );
        assert_eq!(payloads[0]["data"], base64_of(br#"{"hello":"world"}"#));
        assert_eq!(
            payloads[1]["metadata"]["encoding"],
            base64_of(b"binary/null")
        );
        // And back: the shorthand the real server answers with.
        let short = as_json(&message, SHORT);
        assert_eq!(
            short["input"],
            serde_json::json!([{"hello": "world"}, {"metadata": {"encoding": "YmluYXJ5L251bGw="}}])
        );
    }

    #[test]
    fn query_parameters_set_dotted_and_typed_fields() {
        let (route, captures) = route(
            http::Method::GET,
            "/api/v1/namespaces/ns/workflows/wf/history",
        );
        let query = [
            ("execution.runId".to_string(), "r1".to_string()),
            ("maximumPageSize".to_string(), "5".to_string()),
            ("waitNewEvent".to_string(), "true".to_string()),
            ("historyEventFilterType".to_string(), "2".to_string()),
            ("noSuchField".to_string(), "ignored".to_string()),
        ];
        let message = request_message(&route, &captures, &query, b"", SHORT).unwrap();
        let json = as_json(&message, SHORT);
        assert_eq!(
            json["execution"],
            serde_json::json!({"workflowId": "wf", "runId": "r1"})
        );
        assert_eq!(json["maximumPageSize"], 5);
        assert_eq!(json["waitNewEvent"], true);
        assert_eq!(
            json["historyEventFilterType"],
            "HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT"
        );
    }

    #[test]
    fn a_standard_payload_and_a_proto_json_one_pass_as_they_are_meant() {
        let (route, captures) = route(
            http::Method::POST,
            "/api/v1/namespaces/ns/workflows/wf/signal/go",
        );
        let body = serde_json::json!({"input": [
            {"metadata": {"encoding": base64_of(b"binary/plain")}, "data": base64_of(b"raw")},
            {"a": 1, "_protoMessageType": "foo.Bar"},
        ]});
        let body = serde_json::to_vec(&body).unwrap();
        let message = request_message(&route, &captures, &[], &body, SHORT).unwrap();
        let json = as_json(&message, STANDARD);
        assert_eq!(json["signalName"], "go");
        assert_eq!(json["workflowExecution"]["workflowId"], "wf");
        let payloads = &json["input"]["payloads"];
        assert_eq!(payloads[0]["data"], base64_of(b"raw"));
        assert_eq!(
            payloads[1]["metadata"]["messageType"],
            base64_of(b"foo.Bar")
        );
        assert_eq!(payloads[1]["data"], base64_of(br#"{"a":1}"#));
        // A payload with no shorthand keeps the Payloads in the standard form.
        assert!(as_json(&message, SHORT)["input"].is_object());
    }

    #[test]
    fn an_unknown_body_field_is_refused() {
        let (route, captures) = route(http::Method::POST, "/api/v1/namespaces/ns/workflows/wf");
        let refused = request_message(&route, &captures, &[], br#"{"nope": 1}"#, SHORT);
        assert!(matches!(refused, Err(RequestError::Invalid(_))));
        let refused = request_message(&route, &captures, &[], b"[1]", SHORT);
        assert!(matches!(refused, Err(RequestError::BodyNotObject)));
    }
}
