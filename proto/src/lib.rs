//! Generated protobuf types for Agora's wire and storage formats (package `agora.v1`).
//!
//! This crate holds generated code only. Conversions to domain types live at the edge, in the
//! crate that owns each domain type: decoding is fallible (`TryFrom`), encoding infallible.
//! Every `.proto` file under `proto/agora/` is compiled by `build.rs` with protox, so no
//! system `protoc` is needed.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/agora.v1.rs"));
}

pub use prost::Message;
