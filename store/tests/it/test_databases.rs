//! The test support's own promise: a run's databases do not pile up.

use mileage_store::testing::{drop_databases_of_ended_processes, fresh_database, server_url};

async fn connect() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .expect("the test server");
    tokio::spawn(connection);
    client
}

async fn exists(client: &tokio_postgres::Client, name: &str) -> bool {
    client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("pg_database")
        .is_some()
}

#[tokio::test]
async fn databases_of_ended_test_processes_are_dropped_and_others_kept() {
    // A process that has ended: its id names a database of a finished run.
    let mut ended = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    ended.wait().expect("wait for true");
    let ended = ended.id();
    assert!(!std::path::Path::new(&format!("/proc/{ended}")).exists());
    let gone = format!("test_{ended}_finished");
    let mine = format!("test_{}_running", std::process::id());
    let other = format!("keep_{ended}_other");
    let client = connect().await;
    for name in [&gone, &mine, &other] {
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create a database");
    }
    // Someone still connected to the finished run's database.
    let (holder, connection) = tokio_postgres::connect(
        &mileage_store::testing::with_database(&server_url(), &gone),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect to the finished run's database");
    tokio::spawn(connection);

    drop_databases_of_ended_processes(&client).await;

    assert!(
        !exists(&client, &gone).await,
        "a finished run's database is dropped"
    );
    assert!(
        exists(&client, &mine).await,
        "a running process's database is kept"
    );
    assert!(
        exists(&client, &other).await,
        "a database not named by the tests is kept"
    );
    assert!(holder.simple_query("SELECT 1").await.is_err());
    let fresh = fresh_database().await;
    assert!(fresh.contains(&format!("test_{}_", std::process::id())));
    for name in [&mine, &other] {
        client
            .batch_execute(&format!("DROP DATABASE \"{name}\""))
            .await
            .expect("clean up");
    }
}
