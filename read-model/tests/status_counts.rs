//! The managerpage's per-status counts, kept beside the rows in the batch's
//! transaction (`mileage_read_model::write`, as the projector writes a
//! batch), against a real PostgreSQL: after any sequence of batches
//! (new targets, changed statuses, rows written again unchanged) they equal
//! a count of the rows; and a schema from before them gets them filled
//! from its rows.

use std::collections::HashMap;

use chrono::TimeDelta;
use chrono::Utc;
use mileage_read_model::managerpage::{self, ManagerpageTable, STATUSES, Target};
use mileage_read_model::{Bucket, Moves, Table};
use rand::{Rng, SeedableRng};

/// A pool on a fresh database, the read side's tables created.
async fn managerpage_database() -> deadpool_postgres::Pool {
    let url = mileage_store::testing::fresh_database().await;
    let config: tokio_postgres::Config = url.parse().expect("a database URL");
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager).build().unwrap();
    let client = pool.get().await.unwrap();
    mileage_read_model::create_read_side(&client).await.unwrap();
    pool
}

fn target(id: u32, status: &str) -> Target {
    Target {
        id: id.to_string(),
        member_id: id.to_string(),
        phone_sealed: None,
        nickname_sealed: None,
        status: status.to_owned(),
        message_status: None,
        rejoined_member_id: None,
        registered_at: Utc::now(),
        updated_at: Utc::now(),
        registered_position: (i64::from(id), 0),
        last_position: format!("{id}-0"),
    }
}

/// The counts as kept, and as counted from the rows.
async fn kept_and_counted(
    client: &deadpool_postgres::Client,
) -> (HashMap<String, i64>, HashMap<String, i64>) {
    let kept = managerpage::counts(client)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let counted = client
        .query(
            "SELECT status, count(*) FROM managerpage.targets GROUP BY status",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    (kept, counted)
}

#[tokio::test]
async fn the_counts_equal_a_count_of_the_rows_after_any_batches() {
    let pool = managerpage_database().await;
    let mut client = pool.get().await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(27);
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut recorded = Vec::new();
    for batch in 0..60 {
        // Unique ids within a batch, as the projector writes them; ids
        // come back across batches, with a new status or the same one.
        let mut rows: HashMap<u32, Target> = HashMap::new();
        for _ in 0..rng.random_range(1..40) {
            let id = rng.random_range(0..120);
            let status = STATUSES[rng.random_range(0..STATUSES.len())];
            rows.insert(id, target(id, status));
        }
        let ids: Vec<String> = rows.keys().map(ToString::to_string).collect();
        let tx = client.transaction().await.unwrap();
        let loaded = ManagerpageTable::load(&tx, managerpage::NAME, &ids)
            .await
            .unwrap();
        let before = mileage_read_model::tallies::<ManagerpageTable, _>(&loaded);
        let mut moves = Moves::default();
        for row in rows.values() {
            let was = loaded.get(&row.id).and_then(ManagerpageTable::tally);
            let at = start + TimeDelta::minutes(rng.random_range(0..3 * 24 * 60));
            moves.record(at, was, ManagerpageTable::tally(row));
            if was != ManagerpageTable::tally(row) {
                recorded.push((at, was, ManagerpageTable::tally(row)));
            }
        }
        mileage_read_model::write::<ManagerpageTable>(
            &tx,
            managerpage::NAME,
            &before,
            rows.into_values().collect(),
            &moves,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let (kept, counted) = kept_and_counted(&client).await;
        assert_eq!(kept, counted, "after batch {batch}");
    }
    // The counts over time against a model: every move replayed up to
    // each bucket's end.
    let model = |until: chrono::DateTime<Utc>, status: &str| -> i64 {
        recorded
            .iter()
            .filter(|(at, _, _)| *at < until)
            .map(|(_, from, to)| i64::from(*to == Some(status)) - i64::from(*from == Some(status)))
            .sum()
    };
    let entered =
        |from: chrono::DateTime<Utc>, until: chrono::DateTime<Utc>, status: &str| -> i64 {
            let moved = recorded
                .iter()
                .filter(|(at, _, _)| *at >= from && *at < until);
            i64::try_from(moved.filter(|(_, _, to)| *to == Some(status)).count()).unwrap()
        };
    let ranges = [
        (Bucket::Day, start, start + TimeDelta::days(4)),
        (
            Bucket::Day,
            start + TimeDelta::days(1),
            start + TimeDelta::days(2),
        ),
        (
            Bucket::Hour,
            start + TimeDelta::hours(30),
            start + TimeDelta::hours(41),
        ),
        (Bucket::Day, start - TimeDelta::days(9), start),
    ];
    for (bucket, from, to) in ranges {
        let step = match bucket {
            Bucket::Day => TimeDelta::days(1),
            Bucket::Hour => TimeDelta::hours(1),
        };
        let (history, _) = managerpage::over_time(&mut client, bucket, (from, to))
            .await
            .unwrap();
        for status in STATUSES {
            assert_eq!(
                history.before.get(status).copied().unwrap_or(0),
                model(from, status),
                "{bucket:?} {from}: {status} before the range"
            );
        }
        assert!(
            !history.buckets.is_empty() || from < start,
            "{bucket:?} {from}"
        );
        for counted in &history.buckets {
            assert!(counted.at >= from && counted.at < to, "{counted:?}");
            let end = counted.at + step;
            assert_eq!(counted.total, model(end, &counted.status), "{counted:?}");
            assert_eq!(
                counted.entered,
                entered(counted.at, end, &counted.status),
                "{counted:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_schema_from_before_the_counts_gets_them_from_its_rows() {
    let pool = managerpage_database().await;
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let rows = (0..10)
        .map(|id| target(id, STATUSES[id as usize % 3]))
        .collect();
    // Rows written without their counts, as a schema from before them has.
    ManagerpageTable::save(&tx, managerpage::NAME, rows)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    client
        .batch_execute(
            "DROP TABLE managerpage.status_counts, managerpage.status_history, \
             managerpage.status_history_daily",
        )
        .await
        .unwrap();
    client
        .batch_execute(&ManagerpageTable::ddl(managerpage::NAME))
        .await
        .unwrap();
    let (kept, counted) = kept_and_counted(&client).await;
    assert_eq!(kept, counted);
    assert_eq!(kept.values().sum::<i64>(), 10);
    client
        .batch_execute(&ManagerpageTable::ddl(managerpage::NAME))
        .await
        .unwrap();
    let (again, _) = kept_and_counted(&client).await;
    assert_eq!(again, kept, "the DDL run again counts nothing twice");
    let now = Utc::now();
    let (history, _) = managerpage::over_time(
        &mut client,
        Bucket::Day,
        (now - TimeDelta::days(1), now + TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    assert!(history.before.values().all(|n| *n == 0), "{history:?}");
    let started: HashMap<String, i64> = history
        .buckets
        .iter()
        .map(|c| (c.status.clone(), c.total))
        .collect();
    assert_eq!(started, kept, "the history starts from the rows, once");
}
