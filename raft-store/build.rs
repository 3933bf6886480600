//! Generates the node-to-node Raft service (`dura.peer.RaftPeer`) with tonic's manual builder:
//! its messages are Rust types of this crate (`peer.rs`), so no `.proto` file exists.

fn main() {
    let service = tonic_prost_build::manual::Service::builder()
        .name("RaftPeer")
        .package("dura.peer")
        .method(
            tonic_prost_build::manual::Method::builder()
                .name("call")
                .route_name("Call")
                .input_type("crate::peer::PeerRequest")
                .output_type("crate::peer::PeerReply")
                .codec_path("tonic_prost::ProstCodec")
                .build(),
        )
        .method(
            tonic_prost_build::manual::Method::builder()
                .name("call_batch")
                .route_name("CallBatch")
                .input_type("crate::peer::PeerBatch")
                .output_type("crate::peer::PeerBatchReply")
                .codec_path("tonic_prost::ProstCodec")
                .build(),
        )
        .build();
    tonic_prost_build::manual::Builder::new().compile(&[service]);
}
