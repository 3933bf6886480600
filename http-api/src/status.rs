//! Errors as the real server's HTTP API writes them: a `google.rpc.Status` in JSON, with its
//! details (`NotFoundFailure`, …) under `@type`, and grpc-gateway's HTTP status for the code.

use prost_reflect::DynamicMessage;
use serde_json::json;
use tonic::{Code, Status};

use crate::json::{JsonForm, response_json};

/// grpc-gateway's `HTTPStatusFromCode`.
pub fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as S;
    match code {
        Code::Ok => S::OK,
        Code::Cancelled => S::from_u16(499).expect("499 is a status code"),
        Code::Unknown | Code::Internal | Code::DataLoss => S::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => S::BAD_REQUEST,
        Code::DeadlineExceeded => S::GATEWAY_TIMEOUT,
        Code::NotFound => S::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => S::CONFLICT,
        Code::PermissionDenied => S::FORBIDDEN,
        Code::Unauthenticated => S::UNAUTHORIZED,
        Code::ResourceExhausted => S::TOO_MANY_REQUESTS,
        Code::Unimplemented => S::NOT_IMPLEMENTED,
        Code::Unavailable => S::SERVICE_UNAVAILABLE,
    }
}

/// The JSON body of `status`: its encoded `google.rpc.Status` (grpc-status-details-bin) when
/// it has one the descriptors can render, else its code and message.
pub fn status_json(status: &Status, form: JsonForm) -> Vec<u8> {
    let pool = crate::descriptors::pool();
    let rendered = pool
        .get_message_by_name("google.rpc.Status")
        .filter(|_| !status.details().is_empty())
        .and_then(|desc| DynamicMessage::decode(desc, status.details()).ok())
        .map(|mut detailed| {
            // The details' own code and message may be empty; the status's are authoritative.
            detailed.set_field_by_name("code", prost_reflect::Value::I32(status.code() as i32));
            detailed.set_field_by_name(
                "message",
                prost_reflect::Value::String(status.message().to_string()),
            );
            detailed
        })
        .and_then(|detailed| response_json(&detailed, form).ok());
    rendered.unwrap_or_else(|| {
        let body = json!({"code": status.code() as i32, "message": status.message()});
        serde_json::to_vec(&body).expect("a JSON value writes")
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// A `google.rpc.Status` with `details` encoded as tonic carries it, for tests of the above.
    fn encoded_details(code: Code, message: &str, details: Vec<prost_types_any::Any>) -> Vec<u8> {
        prost_types_any::Status {
            code: code as i32,
            message: message.to_string(),
            details,
        }
        .encode_to_vec()
    }

    /// The two messages of `google/rpc/status.proto` and `google/protobuf/any.proto`, declared
    /// here so encoding a status needs no other crate.
    mod prost_types_any {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Any {
            #[prost(string, tag = "1")]
            pub type_url: String,
            #[prost(bytes = "vec", tag = "2")]
            pub value: Vec<u8>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Status {
            #[prost(int32, tag = "1")]
            pub code: i32,
            #[prost(string, tag = "2")]
            pub message: String,
            #[prost(message, repeated, tag = "3")]
            pub details: Vec<Any>,
        }
    }

    #[test]
    fn a_not_found_renders_as_the_real_server_writes_it() {
        let details = encoded_details(
            Code::NotFound,
            "workflow not found for ID: nope",
            vec![prost_types_any::Any {
                type_url: "type.googleapis.com/temporal.api.errordetails.v1.NotFoundFailure".into(),
                value: Vec::new(),
            }],
        );
        let status = Status::with_details(
            Code::NotFound,
            "workflow not found for ID: nope",
            details.into(),
        );
        let form = JsonForm {
            shorthand: true,
            pretty: false,
        };
        let json: serde_json::Value = serde_json::from_slice(&status_json(&status, form)).unwrap();
        assert_eq!(
            json,
            json!({"code": 5, "message": "workflow not found for ID: nope", "details": [
                {"@type": "type.googleapis.com/temporal.api.errordetails.v1.NotFoundFailure"}
            ]})
        );
        assert_eq!(http_status(status.code()), http::StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_status_without_details_has_code_and_message() {
        let status = Status::invalid_argument("bad");
        let form = JsonForm {
            shorthand: true,
            pretty: false,
        };
        let json: serde_json::Value = serde_json::from_slice(&status_json(&status, form)).unwrap();
        assert_eq!(json, json!({"code": 3, "message": "bad"}));
    }
}
