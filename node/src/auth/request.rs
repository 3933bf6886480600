//! The namespace a unary gRPC request names, read from its bytes before any handler decodes
//! it: a request's `namespace` field, whose number each request type has from the descriptor
//! set (`build.rs` writes the table).

use std::io::Read;

include!(concat!(env!("OUT_DIR"), "/namespace_fields.rs"));

/// The `namespace` of the request in `body` (one gRPC frame) to `path`; `None` when its type
/// has no such field, or the frame does not parse (the handler then refuses it itself).
/// `gzip` says the frame's compressed flag means gzip (the `grpc-encoding` header).
pub fn namespace_of(path: &str, body: &[u8], gzip: bool, limit: usize) -> Option<String> {
    let field = NAMESPACE_FIELDS
        .binary_search_by(|(p, _)| p.cmp(&path))
        .ok()
        .map(|at| NAMESPACE_FIELDS[at].1)?;
    let (&compressed, rest) = body.split_first()?;
    let (len, message) = rest.split_at_checked(4)?;
    let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
    let message = message.get(..len)?;
    match compressed {
        0 => string_field(message, field),
        1 if gzip => {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(message)
                .take(limit as u64)
                .read_to_end(&mut plain)
                .ok()?;
            string_field(&plain, field)
        }
        _ => None,
    }
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The last value of string field `number` (protobuf's rule for a repeated scalar).
fn string_field(mut bytes: &[u8], number: u32) -> Option<String> {
    let mut found = None;
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let skip = match key & 7 {
            0 => {
                varint(&mut bytes)?;
                0
            }
            1 => 8,
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                if key >> 3 == u64::from(number) {
                    found = Some(String::from_utf8(bytes.get(..len)?.to_vec()).ok()?);
                }
                len
            }
            5 => 4,
            _ => return None,
        };
        bytes = bytes.get(skip..)?;
    }
    found
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use temporalio_protos::temporal::api::workflowservice::v1 as pb;

    use super::*;

    fn frame(message: &impl Message) -> Vec<u8> {
        let bytes = message.encode_to_vec();
        let mut framed = vec![0];
        framed.extend((bytes.len() as u32).to_be_bytes());
        framed.extend(bytes);
        framed
    }

    const START: &str = "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution";

    #[test]
    fn the_namespace_is_read_whatever_field_number_the_type_gives_it() {
        let start = pb::StartWorkflowExecutionRequest {
            namespace: "orders".into(),
            workflow_id: "w".into(),
            ..Default::default()
        };
        assert_eq!(
            namespace_of(START, &frame(&start), false, 1 << 20).as_deref(),
            Some("orders")
        );
        // A token RPC: the namespace is not its first field.
        let completed = pb::RespondActivityTaskCompletedRequest {
            task_token: vec![1, 2, 3],
            namespace: "billing".into(),
            identity: "worker".into(),
            ..Default::default()
        };
        let path = "/temporal.api.workflowservice.v1.WorkflowService/RespondActivityTaskCompleted";
        assert_eq!(
            namespace_of(path, &frame(&completed), false, 1 << 20).as_deref(),
            Some("billing")
        );
    }

    #[test]
    fn a_gzip_frame_is_read_and_garbage_names_no_namespace() {
        use std::io::Write;
        let start = pb::StartWorkflowExecutionRequest {
            namespace: "orders".into(),
            ..Default::default()
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&start.encode_to_vec()).unwrap();
        let bytes = gz.finish().unwrap();
        let mut framed = vec![1];
        framed.extend((bytes.len() as u32).to_be_bytes());
        framed.extend(bytes);
        assert_eq!(
            namespace_of(START, &framed, true, 1 << 20).as_deref(),
            Some("orders")
        );
        assert_eq!(
            namespace_of(START, &[0, 0, 0, 0, 9, 0xff, 0xff], false, 1 << 20),
            None
        );
        assert_eq!(namespace_of(START, &[], false, 1 << 20), None);
        let system_info = "/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo";
        assert_eq!(
            namespace_of(system_info, &frame(&start), false, 1 << 20),
            None
        );
    }
}
