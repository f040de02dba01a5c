//! Two jobs:
//! - marks the build when `EVENTSTOREDB_URL` is set, so the EventStoreDB
//!   conformance tests run then and are reported as ignored, by name,
//!   otherwise;
//! - builds the server side of the client's published `streams.proto` and
//!   `serverfeatures.proto` (vendored in `proto/`, compiled in Rust by `protox`, no `protoc`
//!   needed) for the wire-level EventStoreDB test double of the store's
//!   integration tests;
//! - builds both sides of the v2 protocol's `StreamsService` (vendored in
//!   `proto/v2`, see its README): the adapter's atomic multi-stream append
//!   on 25.1 and later, and the double's.

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
    let v2 = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("v2");
    std::fs::create_dir_all(&v2)?;
    let descriptors = protox::compile(
        [
            "kurrentdb/protocol/v2/streams/streams.proto",
            "kurrentdb/protocol/v2/streams/errors.proto",
            "kurrent/rpc/errors.proto",
            "google/rpc/status.proto",
        ],
        ["proto/v2"],
    )?;
    tonic_build::configure()
        .out_dir(v2)
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
