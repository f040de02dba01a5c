//! Schema evolution guard: every event schema of the previous commit
//! (`SCHEMA_BASE`, default `HEAD~1`) must still be generated, and must read
//! what it read before: no removed or renamed required field, no new required
//! field, no changed type, unless under a new version with an upcaster.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn schemas_of_the_previous_commit_still_read_their_data() {
    let base = std::env::var("SCHEMA_BASE").unwrap_or_else(|_| "HEAD~1".into());
    let Some(listing) = git(&["ls-tree", "--name-only", &base, "schemas/events/"]) else {
        println!(
            "schemas_of_the_previous_commit_still_read_their_data: skipped, {base} is not available \
             (not a git checkout, or no history)"
        );
        return;
    };
    let current: std::collections::BTreeMap<String, serde_json::Value> =
        mileage_domain::schema::schema_files()
            .into_iter()
            .map(|(path, text)| {
                (
                    format!("schemas/{path}"),
                    serde_json::from_str(&text).unwrap(),
                )
            })
            .collect();
    let mut problems = Vec::new();
    let mut compared = 0;
    let is_json = |p: &&str| Path::new(p).extension().is_some_and(|e| e == "json");
    for path in listing.lines().filter(is_json) {
        let old_text = git(&["show", &format!("{base}:{path}")]).expect("the file git listed");
        let old: serde_json::Value = serde_json::from_str(&old_text).expect("committed JSON");
        compared += 1;
        match current.get(path) {
            None => problems.push(format!(
                "{path} is gone: events stored at that version could no longer be read"
            )),
            Some(new) => {
                for problem in mileage_domain::schema::incompatibilities(&old, new) {
                    problems.push(format!("{path}: {problem}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "incompatible schema changes since {base} (add a new version with an upcaster instead):\n{}",
        problems.join("\n")
    );
    println!("compared {compared} event schemas with {base}");
}
