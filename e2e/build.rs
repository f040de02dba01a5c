//! Marks the build when `EVENTSTOREDB_URL` is set: the end-to-end tests then
//! run on EventStoreDB, and the few that reach under the store into
//! PostgreSQL's `events` table are reported as ignored, by name, with why.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(eventstoredb_url_set)");
    println!("cargo::rerun-if-env-changed=EVENTSTOREDB_URL");
    if std::env::var_os("EVENTSTOREDB_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=eventstoredb_url_set");
    }
}
