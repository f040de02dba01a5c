//! Each member's last activity, kept by the members read model: a schema
//! from before it gets it from its rows, once, and the dormancy policy's
//! index is there.

use mileage_read_model::Table;
use mileage_read_model::members::{self, MembersTable};

#[tokio::test]
async fn a_schema_from_before_last_activity_gets_it_from_its_rows_once() {
    let url = mileage_store::testing::fresh_database().await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("the database");
    tokio::spawn(connection);
    // The layout before last activity, with a member quiet since 2025.
    client
        .batch_execute(
            "CREATE SCHEMA members;
             CREATE TABLE members.members (
                 id text PRIMARY KEY, status text NOT NULL, balance bigint NOT NULL,
                 phone_sealed text, nickname_sealed text, joined_at timestamptz NOT NULL,
                 updated_at timestamptz NOT NULL, last_position text NOT NULL);
             INSERT INTO members.members VALUES
                 ('1', 'READY', 5, NULL, NULL, '2024-01-01Z', '2025-03-04Z', '1-1');",
        )
        .await
        .unwrap();
    for _ in 0..2 {
        client
            .batch_execute(&MembersTable::ddl(members::NAME))
            .await
            .unwrap();
    }
    let row = client
        .query_one(
            "SELECT last_active_at = '2025-03-04Z'::timestamptz FROM members.members WHERE id = '1'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the last change of a READY member");
    let index = client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'members' AND indexname = 'members_quiet_since'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(index.get::<_, i64>(0), 1);
}
