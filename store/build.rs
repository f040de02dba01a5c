//! Two jobs:
//! - marks the build when `EVENTSTOREDB_URL` is set, so the EventStoreDB
//!   conformance tests run then and are reported as ignored, by name,
//!   otherwise;
//! - builds the server side of the client's published `streams.proto` and
//!   `serverfeatures.proto` (vendored in `proto/`, compiled in Rust by `protox`, no `protoc`
//!   needed) for the wire-level EventStoreDB test double of the store's
//!   integration tests.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo::rustc-check-cfg=cfg(eventstoredb_url_set)");
    println!("cargo::rerun-if-env-changed=EVENTSTOREDB_URL");
    println!("cargo::rerun-if-changed=proto");
    if std::env::var_os("EVENTSTOREDB_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=eventstoredb_url_set");
    }
    let descriptors = protox::compile(["streams.proto", "serverfeatures.proto"], ["proto"])?;
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
