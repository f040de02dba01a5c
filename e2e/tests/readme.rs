//! The README stays true: its "Try it" block, taken from the file, runs
//! against the local stack as `deploy/local/run.sh` starts it (with the
//! tests' binaries), and every repository path the README and `docs/` name
//! exists.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mileage_e2e::{binary, free_port};
use mileage_store::testing::Service;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The first fenced `bash` block of the README's "Try it" section.
fn try_it_block(readme: &str) -> String {
    let section = readme
        .split("\n## Try it\n")
        .nth(1)
        .expect("the README has a \"Try it\" section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let block = section
        .split("```bash\n")
        .nth(1)
        .expect("\"Try it\" has a bash block");
    block
        .split("\n```")
        .next()
        .expect("the block is closed")
        .to_owned()
}

/// `deploy/local/run.sh` with the tests' binaries on free ports, its env
/// file in `work/target` (where the README's block sources it) and its
/// output in `work`.
struct LocalStack {
    process: Service,
    work: PathBuf,
    env_path: PathBuf,
}

impl LocalStack {
    /// Started, and ready: run.sh writes its env file once everything answers.
    async fn start() -> Self {
        let work = std::env::temp_dir().join(format!("mileage-readme-{}", uuid::Uuid::new_v4()));
        let env_path = work.join("target/mileage-run.env");
        std::fs::create_dir_all(work.join("target")).unwrap();
        let bins = binary("mileage-command-api").parent().unwrap().to_owned();
        let address = || format!("127.0.0.1:{}", free_port());
        let process = Service(
            Command::new("bash")
                .arg(root().join("deploy/local/run.sh"))
                .env("MILEAGE_BIN_DIR", &bins)
                .env("MILEAGE_ENV", &env_path)
                .env("GATEWAY_PORT", free_port().to_string())
                .env("COMMAND_API_ADDR", address())
                .env("QUERY_API_ADDR", address())
                .env("PROJECTOR_ADDR", address())
                .env("SMS_GATEWAY_ADDR", address())
                .env("PROMETHEUS_ADDR", address())
                .env("RUST_LOG", "warn")
                .env_remove("NOTIFIER_URL")
                .env_remove("DATABASE_URL")
                .stdout(std::fs::File::create(work.join("run.out")).unwrap())
                .stderr(std::fs::File::create(work.join("run.err")).unwrap())
                .spawn()
                .expect("run.sh starts"),
        );
        let mut stack = Self {
            process,
            work,
            env_path,
        };
        let deadline = Instant::now() + Duration::from_secs(180);
        while !stack.env_path.exists() {
            assert!(
                stack.process.0.try_wait().unwrap().is_none(),
                "run.sh stopped: {}",
                stack.log()
            );
            assert!(
                Instant::now() < deadline,
                "run.sh never got ready: {}",
                stack.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stack
    }

    /// What run.sh printed: the banner, then its errors.
    fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.work.join(name)).unwrap_or_default();
        format!("run.sh said: {}{}", read("run.out"), read("run.err"))
    }

    /// What the env file exports as `key`.
    fn exported(&self, key: &str) -> String {
        let env_file = std::fs::read_to_string(&self.env_path).unwrap();
        env_file
            .lines()
            .find_map(|line| line.strip_prefix(&format!("export {key}=")))
            .unwrap_or_else(|| panic!("{key} is exported: {env_file}"))
            .to_owned()
    }

    /// Runs `block` in `bash -e -o pipefail` from the work folder, as a
    /// user pastes it there; `timeout` ends one that hangs.
    async fn run(&self, block: &str) -> (String, String) {
        let (block, work) = (block.to_owned(), self.work.clone());
        let ran = tokio::task::spawn_blocking(move || {
            Command::new("timeout")
                .args(["300", "bash", "-e", "-o", "pipefail", "-c", &block])
                .current_dir(&work)
                .stdin(Stdio::null())
                .output()
        })
        .await
        .unwrap()
        .expect("bash runs");
        let out = String::from_utf8_lossy(&ran.stdout).into_owned();
        let err = String::from_utf8_lossy(&ran.stderr).into_owned();
        assert!(
            ran.status.success(),
            "the block failed ({}):\n{out}\n{err}\n{}",
            ran.status,
            self.log()
        );
        (out, err)
    }

    /// Stops run.sh as Ctrl-C does; it removes its env file.
    async fn stop(mut self) {
        let exit = self.process.terminate(Duration::from_secs(60)).await;
        assert!(
            !self.env_path.exists(),
            "run.sh removes its env file when it stops ({exit})"
        );
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

#[tokio::test]
async fn the_readmes_try_it_block_runs_against_the_local_stack() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let stack = LocalStack::start().await;
    let (out, _) = stack.run(&try_it_block(&readme)).await;
    for expected in [
        r#""balance":300"#,
        r#""balance":200"#,
        r#""memberStatus":"DORMANT""#,
        ": DESTRUCTION",
        r#""memberStatus":"CLEARED""#,
        r#""rejoinedMemberId": "#,
        r#""byStatus":{"CLEARED":1,"DESTRUCTION":1"#,
        "010****1234",
        "notices ",
        "DormantMemberDestroyed",
        "MileageProjectorLagging: inactive",
    ] {
        assert!(
            out.contains(expected),
            "the output shows {expected}:\n{out}"
        );
    }
    assert!(
        !out.contains("01085581234") && !out.contains("1234567\""),
        "no phone number in clear:\n{out}"
    );

    // Through the gateway as run.sh (as root here) starts it, a body past
    // what nginx holds in memory is buffered by its workers and reaches
    // the service; one past the gateway's own limit is refused alike.
    let gateway = stack.exported("MILEAGE");
    let http = reqwest::Client::new();
    for size in [20 * 1024, 100 * 1024] {
        let body = format!(
            r#"{{"phoneNo":"01012345678","nickname":"{}"}}"#,
            "x".repeat(size)
        );
        let answer = http
            .post(format!("{gateway}/members"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 413, "{size} bytes: {}", stack.log());
        assert_eq!(
            answer.headers()["content-type"],
            "application/problem+json",
            "{size} bytes"
        );
        let problem: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(problem["code"], "request.payload_too_large", "{size} bytes");
    }

    // The alerts page the banner names answers.
    let banner = stack.log();
    let alerts = banner
        .split("alerts: ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("the banner names the alerts page: {banner}"));
    let page = http.get(alerts).send().await.unwrap();
    assert_eq!(page.status(), 200, "{alerts}");
    stack.stop().await;
}

/// Words of `text` that look like a path in this repository: they start
/// with one of its top-level entries and name something below it.
fn repository_paths(text: &str, top: &[String]) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || "`()[],;\"'|".contains(c))
        .map(|word| word.split('#').next().unwrap_or_default())
        .map(|word| word.trim_end_matches(['.', ':']))
        .filter(|word| {
            word.split('/')
                .next()
                .is_some_and(|first| top.iter().any(|t| t == first))
                && word.contains('/')
        })
        // Patterns, not paths: `schemas/events/<Type>.v<N>.json`.
        .filter(|word| !word.contains(['<', '{', '*', '$']))
        .map(str::to_owned)
        .collect()
}

/// The anchors of a Markdown document's headings, as GitHub makes them.
fn anchors(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            line.trim_start_matches('#')
                .strip_prefix(' ')
                .filter(|_| line.starts_with('#'))
        })
        .map(|heading| {
            heading
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn every_repository_path_the_readme_and_docs_name_exists() {
    let root = root();
    let top: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "target")
        .collect();
    let mut documents = vec![root.join("README.md")];
    documents.extend(
        std::fs::read_dir(root.join("docs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    assert!(documents.len() > 3, "docs/ has the internals");
    let mut missing = Vec::new();
    let mut checked = 0;
    for document in &documents {
        let text = std::fs::read_to_string(document).unwrap();
        let name = document.strip_prefix(&root).unwrap().display().to_string();
        for path in repository_paths(&text, &top) {
            checked += 1;
            if !root.join(&path).exists() {
                missing.push(format!("{name}: {path}"));
            }
        }
        // Relative links, resolved from the document's own folder, and
        // their anchors among the target's headings.
        for link in text.split("](").skip(1) {
            let link = link.split(')').next().unwrap_or_default();
            if link.contains("://") {
                continue;
            }
            let (file, anchor) = link.split_once('#').unwrap_or((link, ""));
            let target = if file.is_empty() {
                document.clone()
            } else {
                document.parent().unwrap_or(Path::new(".")).join(file)
            };
            checked += 1;
            if !target.exists() {
                missing.push(format!("{name}: link {link}"));
            } else if !anchor.is_empty()
                && !anchors(&std::fs::read_to_string(&target).unwrap_or_default())
                    .iter()
                    .any(|a| a == anchor)
            {
                missing.push(format!("{name}: anchor {link}"));
            }
        }
    }
    assert!(checked > 50, "the scan finds the paths ({checked})");
    assert!(missing.is_empty(), "named but not there: {missing:#?}");
}
