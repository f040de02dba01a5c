//! Who is one person, as the erasure process manager learns it from the
//! log: each person key (one per stream that seals personal data:
//! `member-{id}`, `dormantMember-{id}`) belongs to one person, and the log
//! joins keys into one person when it says they are one: a target
//! registered for a member who has joined (a target for a member id nobody
//! has joined under is a person of its own: that id may later be a
//! stranger's), a member re-joined from a target, a phone claim naming a
//! member (its own key, `memberPhone-{hash}#{id}`). When a person
//! is erased (they withdrew, or their notice failed and their data was
//! destroyed) every key of theirs goes, whichever stream it sealed, and so
//! does any key joined to them later. One rule, in one place; the process
//! manager reads the log in order, so the same log always erases the same
//! keys.

use tokio_postgres::GenericClient;

/// Creates the tables (idempotent). The tables of the version before (a
/// member's targets only) are dropped and the erasure process manager's
/// checkpoint forgotten, so it reads the log again from the start and
/// learns every person (deleting a key twice is harmless).
pub async fn migrate(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    crate::create_tables(
        client,
        "CREATE SCHEMA IF NOT EXISTS projector;
         DO $$ BEGIN
             IF to_regclass('projector.erasure_targets') IS NOT NULL THEN
                 DROP TABLE projector.erasure_targets, projector.erasure_withdrawn;
                 IF to_regclass('projector.consumers') IS NOT NULL THEN
                     DELETE FROM projector.consumers WHERE name = 'erasure';
                 END IF;
             END IF;
         END $$;
         CREATE TABLE IF NOT EXISTS projector.erasure_keys (
             key_id text PRIMARY KEY,
             person text NOT NULL
         );
         ALTER TABLE projector.erasure_keys ADD COLUMN IF NOT EXISTS claim boolean NOT NULL DEFAULT false;
         CREATE INDEX IF NOT EXISTS erasure_keys_person ON projector.erasure_keys (person);
         CREATE TABLE IF NOT EXISTS projector.erased_people (
             person text PRIMARY KEY
         );",
    )
    .await
}

/// The person `key_id` belongs to, made its own person when unknown.
async fn person_of(
    client: &impl GenericClient,
    key_id: &str,
) -> Result<String, tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO projector.erasure_keys (key_id, person) VALUES ($1, $1)
             ON CONFLICT DO NOTHING",
            &[&key_id],
        )
        .await?;
    Ok(client
        .query_one(
            "SELECT person FROM projector.erasure_keys WHERE key_id = $1",
            &[&key_id],
        )
        .await?
        .get(0))
}

/// Every key of an erased `person` (none when they are not erased). Their
/// phone claims' rows go as well: a claim's key id names the number's
/// stream, and the row would join it to the person for ever.
async fn keys_if_erased(
    client: &impl GenericClient,
    person: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT k.key_id FROM projector.erasure_keys k
              WHERE k.person = $1
                AND EXISTS (SELECT 1 FROM projector.erased_people e WHERE e.person = $1)
              ORDER BY k.key_id",
            &[&person],
        )
        .await?;
    if !rows.is_empty() {
        client
            .execute(
                "DELETE FROM projector.erasure_keys WHERE person = $1 AND claim",
                &[&person],
            )
            .await?;
    }
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The log says `claim_key` seals a phone claim naming the member whose
/// key is `member_key`: the claim's key is that person's, and goes when
/// they are erased. Answers the keys to delete.
pub async fn claim(
    client: &impl GenericClient,
    member_key: &str,
    claim_key: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let person = person_of(client, member_key).await?;
    client
        .execute(
            "INSERT INTO projector.erasure_keys (key_id, person, claim) VALUES ($1, $2, true)
             ON CONFLICT (key_id) DO NOTHING",
            &[&claim_key, &person],
        )
        .await?;
    keys_if_erased(client, &person).await
}

/// The log says the claim `claim_key` seals was released: its holder no
/// longer holds the number, so its key goes, and the row that joined it to
/// them. Answers the key to delete.
pub async fn released(
    client: &impl GenericClient,
    claim_key: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM projector.erasure_keys WHERE key_id = $1 AND claim",
            &[&claim_key],
        )
        .await?;
    Ok(vec![claim_key.to_owned()])
}

/// The log names `key_id` as a new person's (a member joined): they are a
/// person of their own. Answers the keys to delete (none, unless the log
/// erased this key before).
pub async fn new_person(
    client: &impl GenericClient,
    key_id: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let person = person_of(client, key_id).await?;
    keys_if_erased(client, &person).await
}

/// Whether the log has named `key_id` (a member who joined, say).
pub async fn known(
    client: &impl GenericClient,
    key_id: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM projector.erasure_keys WHERE key_id = $1",
            &[&key_id],
        )
        .await?
        .is_some())
}

/// The log says the keys `a` and `b` hold one person's data: their people
/// become one (erased if either was). Answers the keys to delete: all of
/// theirs when that person is erased, none otherwise.
pub async fn same_person(
    client: &impl GenericClient,
    a: &str,
    b: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let (keep, merged) = (person_of(client, a).await?, person_of(client, b).await?);
    if keep != merged {
        client
            .execute(
                "UPDATE projector.erasure_keys SET person = $1 WHERE person = $2",
                &[&keep, &merged],
            )
            .await?;
        client
            .execute(
                "INSERT INTO projector.erased_people (person)
                 SELECT $1 WHERE EXISTS (SELECT 1 FROM projector.erased_people WHERE person = $2)
                 ON CONFLICT DO NOTHING",
                &[&keep, &merged],
            )
            .await?;
    }
    keys_if_erased(client, &keep).await
}

/// The log says the person whose data `key_id` seals is erased: every key
/// of theirs, to delete.
pub async fn erase(
    client: &impl GenericClient,
    key_id: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let person = person_of(client, key_id).await?;
    client
        .execute(
            "INSERT INTO projector.erased_people (person) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&person],
        )
        .await?;
    keys_if_erased(client, &person).await
}

/// Every key the log has named so far with whether its person is erased:
/// what a test searches the key table against.
pub async fn people(
    client: &impl GenericClient,
) -> Result<Vec<(String, String, bool)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT k.key_id, k.person,
                    EXISTS (SELECT 1 FROM projector.erased_people e WHERE e.person = k.person)
               FROM projector.erasure_keys k ORDER BY k.person, k.key_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
}
