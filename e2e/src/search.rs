//! The search for erased people: every place the system writes (every table
//! of the database, the log opened with whatever keys remain, a `replay
//! export`, the services' logs, metrics, exported traces and answers), each
//! searched for every person the system was told to erase.
//!
//! A person is found by their number (raw, formatted), their
//! nickname, an event of their number's claim stream naming one of their
//! member ids, or the last four digits of their number (alone, or in the
//! masked form, which all numbers ending alike share) in one record with
//! one of their member ids. That last search runs on the record with sealed
//! values, ids and timestamps taken out, where four digits in a row would
//! otherwise turn up by chance.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::sync::{Arc, Mutex};

use aho_corasick::AhoCorasick;
use regex::Regex;

/// An OTLP/HTTP collector stand-in on a loopback port: keeps the body of
/// every export it is sent, to be searched. Answers its URL (what
/// `OTEL_EXPORTER_OTLP_ENDPOINT` takes) and the bodies so far.
pub async fn span_collector() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&bodies);
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let kept = Arc::clone(&kept);
        async move {
            kept.lock().expect("not poisoned").push(body.to_vec());
            ""
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, bodies)
}

/// Someone the system was told to erase, as the test knows them.
#[derive(Debug, Clone)]
pub struct Person {
    /// The phone number, 11 digits.
    pub phone: String,
    /// The nickname: distinctive, so a hit is theirs.
    pub nickname: String,
    /// Member ids they held (joined, or re-joined from a target).
    pub member_ids: Vec<String>,
    /// The stream of their number's phone claims, when the test knows the
    /// services' `PHONE_INDEX_SECRET` ([`claim_stream`]): an event of it
    /// that names one of their member ids links them to the number.
    pub claim_stream: Option<String>,
}

/// The stream of `phone`'s claims under the phone index secret `secret`.
pub fn claim_stream(secret: &[u8], phone: &str) -> String {
    let phone = mileage_domain::values::PhoneNumber::parse(phone).expect("a valid number");
    mileage_domain::aggregate::stream_name::<mileage_domain::phone_registry::PhoneRegistry>(
        &mileage_domain::pii::phone_index(secret, &phone),
    )
}

impl Person {
    /// What is theirs anywhere, whatever the record around it. (The
    /// masked form is not: every number with the same last four digits
    /// masks alike; it counts next to one of their member ids.)
    fn needles(&self) -> Vec<String> {
        let p = &self.phone;
        let mut needles = vec![p.clone(), self.nickname.clone()];
        if p.len() == 11 {
            needles.push(format!("{}-{}-{}", &p[..3], &p[3..7], &p[7..]));
        }
        needles
    }

    /// Whether an event of their number's claims (a record whose stream is
    /// the claim stream: the log as stored, inspected or exported) names
    /// one of their member ids.
    fn claim_names_them(&self, record: &str) -> bool {
        self.claim_stream.as_ref().is_some_and(|stream| {
            (record.contains(&format!("\"stream\":\"{stream}\""))
                || record.contains(&format!("\"stream_id\":\"{stream}\"")))
                && (self.names_a_member_id(record)
                    || self
                        .member_ids
                        .iter()
                        .any(|id| record.contains(&format!("\"{id}\""))))
        })
    }

    /// Whether a cleaned record names one of their member ids.
    fn names_a_member_id(&self, cleaned: &str) -> bool {
        self.member_ids.iter().any(|id| {
            let id = regex::escape(id);
            Regex::new(&format!(
                r#"member-{id}\b|/members/{id}\b|[Mm]ember_?[Ii]d\\?"?\s*[:=]\s*\\?"?{id}\b"#
            ))
            .expect("a valid pattern")
            .is_match(cleaned)
        })
    }
}

/// Sealed values, ids, hashes and timestamps: long runs of digits and
/// letters in which four digits in a row mean nothing.
static NOISE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)?",
        r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        r"|[A-Za-z0-9+/_=]{16,}",
    ))
    .expect("a valid pattern")
});

/// `bytea` columns as `row_to_json` writes them.
static HEX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\\\x([0-9a-f]{2})+").expect("a valid pattern"));

/// One place searched: what it is, and its records (rows, lines, bodies).
struct Place {
    name: String,
    records: Vec<String>,
}

/// Everything collected for a search.
#[derive(Default)]
pub struct Search {
    places: Vec<Place>,
}

impl Search {
    /// Adds a place and its records.
    pub fn add(&mut self, name: impl Into<String>, records: Vec<String>) {
        self.places.push(Place {
            name: name.into(),
            records,
        });
    }

    /// Adds the span exports a [`span_collector`] kept: each protobuf
    /// body cut into its readable strings (names, values), one record
    /// each, so that one batch of many spans is not one record.
    pub fn add_spans(&mut self, name: impl Into<String>, bodies: &Mutex<Vec<Vec<u8>>>) {
        let records = bodies
            .lock()
            .expect("not poisoned")
            .iter()
            .flat_map(|body| {
                String::from_utf8_lossy(body)
                    .split(|c: char| c.is_control() || c == char::REPLACEMENT_CHARACTER)
                    .filter(|run| run.len() >= 3)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        self.add(name, records);
    }

    /// Adds a text, one record per line.
    pub fn add_text(&mut self, name: impl Into<String>, text: &str) {
        self.add(name, text.lines().map(str::to_owned).collect());
    }

    /// Adds every row of every table of every schema of the database, as
    /// JSON, with `bytea` values decoded as text beside their hex.
    pub async fn add_database(&mut self, database_url: &str) {
        let client = crate::read_client(database_url).await;
        let tables = client
            .query(
                "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables
                  WHERE table_type = 'BASE TABLE'
                    AND table_schema NOT IN ('pg_catalog', 'information_schema')
                  ORDER BY 1",
                &[],
            )
            .await
            .expect("the tables list");
        for table in tables {
            let table: String = table.get(0);
            let rows = client
                .query(&format!("SELECT row_to_json(t)::text FROM {table} t"), &[])
                .await
                .expect("the table reads");
            let records = rows
                .iter()
                .map(|row| with_bytea_decoded(row.get(0)))
                .collect();
            self.add(format!("table {table}"), records);
        }
    }

    /// Adds the log as `replay inspect --reveal` prints it (every payload
    /// opened with the keys that remain) and as `replay export` writes it,
    /// `replay` run with the services' `DATABASE_URL` and `store_env`.
    pub fn add_replay(&mut self, database_url: &str, store_env: &[(&str, String)]) {
        for (name, args) in [
            ("replay inspect --reveal", &["inspect", "--reveal"][..]),
            ("replay export", &["export"][..]),
        ] {
            let output = std::process::Command::new(crate::binary("replay"))
                .env_clear()
                .envs(store_env.iter().cloned())
                .env("DATABASE_URL", database_url)
                .env("RUST_LOG", "warn")
                .args(args)
                .output()
                .expect("replay runs");
            assert!(
                output.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            self.add_text(name, &String::from_utf8_lossy(&output.stdout));
        }
    }

    /// The records that mention `person`, with the place each is in.
    pub fn hits(&self, person: &Person) -> Vec<String> {
        self.hits_of(std::slice::from_ref(person))
            .into_iter()
            .map(|(_, hit)| hit)
            .collect()
    }

    /// The records that mention any of `people`, each with the index of
    /// the person it mentions and its place. One pass over the records.
    pub fn hits_of(&self, people: &[Person]) -> Vec<(usize, String)> {
        let (mut needles, mut owners) = (Vec::new(), Vec::new());
        let mut by_last_four: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, person) in people.iter().enumerate() {
            for needle in person.needles() {
                needles.push(needle);
                owners.push(i);
            }
            if let Some(four) = person.phone.get(person.phone.len().saturating_sub(4)..) {
                by_last_four.entry(four).or_default().push(i);
            }
        }
        let matcher = AhoCorasick::new(&needles).expect("the needles build a matcher");
        let mut hits = Vec::new();
        for place in &self.places {
            for record in &place.records {
                let mut who: BTreeSet<usize> = matcher
                    .find_overlapping_iter(record)
                    .map(|found| owners[found.pattern().as_usize()])
                    .collect();
                if record.contains("memberPhone-") {
                    who.extend((0..people.len()).filter(|&i| people[i].claim_names_them(record)));
                }
                let cleaned = without_noise(record);
                for four in four_digit_runs(&cleaned) {
                    for &i in by_last_four.get(four).into_iter().flatten() {
                        if !who.contains(&i) && people[i].names_a_member_id(&cleaned) {
                            who.insert(i);
                        }
                    }
                }
                hits.extend(
                    who.into_iter()
                        .map(|i| (i, format!("{}: {record}", place.name))),
                );
            }
        }
        hits
    }

    /// Records searched, over all places.
    pub fn records(&self) -> usize {
        self.places.iter().map(|p| p.records.len()).sum()
    }

    /// Panics, listing every hit, when any of `erased` is found anywhere;
    /// otherwise prints what was searched.
    #[track_caller]
    pub fn assert_nothing_of(&self, what: &str, erased: &[Person]) {
        let mut report = String::new();
        for (i, hit) in self.hits_of(erased) {
            let person = &erased[i];
            let _ = writeln!(report, "{} ({}): {hit}", person.phone, person.nickname);
        }
        assert!(report.is_empty(), "{what}: erased people found:\n{report}");
        println!(
            "{what}: {} erased people searched for in {} places ({} records): none found",
            erased.len(),
            self.places.len(),
            self.records()
        );
    }
}

/// The runs of exactly four digits in `text` (no digit right before or
/// after).
fn four_digit_runs(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() == 4)
}

/// `record` with its sealed values, ids, hashes and timestamps blanked.
fn without_noise(record: &str) -> std::borrow::Cow<'_, str> {
    NOISE.replace_all(record, |token: &regex::Captures<'_>| {
        let token = &token[0];
        if token.bytes().any(|b| b.is_ascii_digit()) {
            " ".to_owned()
        } else {
            token.to_owned()
        }
    })
}

/// `text` with the text of each `bytea` value in it appended.
fn with_bytea_decoded(mut text: String) -> String {
    let decoded: Vec<String> = HEX
        .find_iter(&text)
        .map(|hex| decode_hex(&hex.as_str()[3..]))
        .collect();
    for bytes in decoded {
        text.push(' ');
        text.push_str(&bytes);
    }
    text
}

fn decode_hex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person() -> Person {
        Person {
            phone: "01044447724".into(),
            nickname: "erasee".into(),
            member_ids: vec!["4".into()],
            claim_stream: Some("memberPhone-00ff".into()),
        }
    }

    fn found(record: &str) -> bool {
        let mut search = Search::default();
        search.add("place", vec![record.to_owned()]);
        !search.hits(&person()).is_empty()
    }

    #[test]
    fn finds_a_person_in_every_form() {
        assert!(found(r#"{"phoneNo":"01044447724"}"#));
        assert!(found("sent to 010-4444-7724"));
        assert!(found(r#"{"memberId":"4","phoneNo":"010****7724"}"#));
        assert!(found("nickname=erasee"));
        assert!(found(r#"{"memberId":"4","last":"7724"}"#));
        assert!(found(r#"{\"memberId\": \"4\", \"tail\": 7724}"#));
        assert!(found("GET /members/4 phone ends 7724"));
        assert!(found(
            r#"{"stream":"memberPhone-00ff","type":"PhoneClaimed","data":{"holder":"4"}}"#
        ));
        assert!(found(
            r#"{"stream":"memberPhone-00ff","data":{"memberId":"4"}}"#
        ));
    }

    #[test]
    fn four_digits_in_a_sealed_value_an_id_or_a_time_are_not_a_hit() {
        assert!(!found(
            r#"{"memberId":"4","ciphertext":"aB7724xYzQ9kLmN0pQrS","at":"2026-12-05T23:49:44.772412Z"}"#
        ));
        assert!(!found(
            r#"{"memberId":"4","eventId":"0b1c7724-0000-4000-8000-000000000000"}"#
        ));
        assert!(!found(r#"{"memberId":"14","last":"7724"}"#));
        assert!(!found(r#"{"memberId":"4","position":177245}"#));
        assert!(
            !found(r#"{"memberId":"9","phoneNo":"010****7724"}"#),
            "another number with the same last four"
        );
        assert!(!found(
            r#"{"stream":"memberPhone-00ff","data":{"holder":{"keyId":"memberPhone-00ff#1"}}}"#
        ));
        assert!(!found(
            r#"{"stream":"memberPhone-0aaa","data":{"holder":"4"}}"#
        ));
        assert!(!found(r#"{"memberId":"4","last":"1234"}"#));
    }

    #[test]
    fn bytea_values_are_searched_as_text() {
        let mut search = Search::default();
        let hex = "01044447724".bytes().fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        });
        let record = with_bytea_decoded(format!(r#"{{"body":"\\x{hex}"}}"#));
        search.add("table", vec![record]);
        assert_eq!(search.hits(&person()).len(), 1);
    }
}
