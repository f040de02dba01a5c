//! The `mileage-projector` binary refuses bad settings at start-up with one
//! line naming the setting, before its port opens.

use mileage_store::testing::{assert_refuses_to_start, fresh_database};

#[tokio::test]
async fn bad_settings_stop_start_up_with_one_line_naming_the_setting() {
    let database_url = fresh_database().await;
    let binary = env!("CARGO_BIN_EXE_mileage-projector");
    let database = ("DATABASE_URL", database_url.as_str());
    let addr = ("PROJECTOR_ADDR", "127.0.0.1:0");
    let cases = [
        (vec![addr], "database_url"),
        (
            vec![addr, ("DATABASE_URL", "host=db port=many")],
            "database_url",
        ),
        (
            vec![
                addr,
                ("DATABASE_URL", "postgres://mileage@127.0.0.1:1/mileage"),
            ],
            "database_url",
        ),
        (
            vec![
                database,
                addr,
                ("READ_DATABASE_URL", "postgres://mileage@127.0.0.1:1/read"),
            ],
            "read_database_url",
        ),
        (
            vec![
                database,
                addr,
                ("EVENTSTOREDB_URL", "esdb://admin:s3cret@db:2113?tls=maybe"),
            ],
            "eventstoredb_url",
        ),
        (
            vec![database, addr, ("NOTIFIER_URL", "sms-gateway")],
            "notifier_url",
        ),
        (
            vec![database, addr, ("PROJECTOR_BATCH", "0")],
            "projector_batch",
        ),
        (
            vec![database, ("PROJECTOR_ADDR", "anywhere")],
            "projector_addr",
        ),
    ];
    for (env, setting) in cases {
        let line = assert_refuses_to_start(binary, &env, setting);
        assert!(!line.contains("s3cret"), "a secret in the error: {line}");
    }
}
