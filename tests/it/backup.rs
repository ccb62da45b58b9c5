//! `backup` while the server takes webhooks, and `restore` while it does not: the real binary,
//! real HTTP, the copy read back with SQLite.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cli::{add_integration_cli, mmc, run, spawn_serve, Spawned};
use crate::support::*;

/// The Stripe event ids stored in the database at `path`.
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

fn stop(mut child: std::process::Child) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success());
}

/// The Stripe event ids in the backup at `path`, plain or zstd (decoded beside it).
fn ids_in_backup(path: &Path) -> BTreeSet<String> {
    let raw = std::fs::read(path).unwrap();
    if !raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return stored_ids(path);
    }
    let plain = path.with_extension("decoded");
    std::fs::write(&plain, zstd::decode_all(&raw[..]).unwrap()).unwrap();
    let ids = stored_ids(&plain);
    std::fs::remove_file(&plain).unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_under_load_holds_every_acknowledged_event_and_a_restore_puts_it_back() {
    backup_under_load_and_restore(false).await;
}

/// As above, with `backup --compress`: the copy is checked plain, then written as zstd; restore
/// finds it is one by its bytes.
#[tokio::test(flavor = "multi_thread")]
async fn a_compressed_backup_under_load_holds_every_acknowledged_event_and_restores() {
    backup_under_load_and_restore(true).await;
}

async fn backup_under_load_and_restore(compress: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (id, _) = add_integration_cli(dir.path(), &["--name", "shop", "--webhook-secret", SECRET]);
    let Spawned { child, addr } = spawn_serve(dir.path(), &[]);
    let url = format!("http://{addr}/webhooks/stripe/{id}");

    // Webhooks keep arriving, before, during and after the backup; each acknowledged id is noted.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let template: serde_json::Value =
        serde_json::from_slice(&fixture("invoice.paid.json")).unwrap();
    let load = {
        let (acknowledged, running, url) = (acknowledged.clone(), running.clone(), url.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0;
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let mut event = template.clone();
                let event_id = format!("evt_backup_{n:06}");
                event["id"] = event_id.clone().into();
                let body = serde_json::to_vec(&event).unwrap();
                let response = client
                    .post(&url)
                    .header("Stripe-Signature", sign_now(&body, SECRET))
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                acknowledged.lock().unwrap().push(event_id);
            }
        })
    };
    while acknowledged.lock().unwrap().len() < 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before_backup: Vec<String> = acknowledged.lock().unwrap().clone();

    let copy = dir
        .path()
        .join(if compress { "backup.zst" } else { "backup.db" });
    let backup_dir = dir.path().to_owned();
    let copy_arg = copy.to_str().unwrap().to_owned();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        let mut args = vec!["backup", &copy_arg];
        if compress {
            args.push("--compress");
        }
        run(mmc(&backup_dir, &args))
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("integrity check ok") && out.contains("stay sealed"),
        "{out}"
    );
    let kind = if compress { "(zstd," } else { "(plain SQLite," };
    assert!(out.contains("database ") && out.contains(kind), "{out}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let raw = std::fs::read(&copy).unwrap();
    assert_eq!(
        raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        compress,
        "zstd's magic bytes exactly when compressed"
    );
    // Some webhooks after the backup, then stop.
    let during = acknowledged.lock().unwrap().len();
    while acknowledged.lock().unwrap().len() < during + 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    let all: Vec<String> = acknowledged.lock().unwrap().clone();

    let in_copy = ids_in_backup(&copy);
    let missing: Vec<&String> = before_backup
        .iter()
        .filter(|e| !in_copy.contains(*e))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, not in it: {missing:?}"
    );
    assert!(
        in_copy.len() < all.len(),
        "the copy is a moment, not the end"
    );
    assert!(
        !dir.path().join("backup.db-wal").exists() && !dir.path().join("backup.zst-wal").exists(),
        "a backup is one file"
    );

    // A second backup to the same file is refused; the first stays whole.
    let (ok, _, err) = run(mmc(dir.path(), &["backup", copy.to_str().unwrap()]));
    assert!(!ok && err.contains("never overwrites"), "{err}");

    // Restore refuses while the server runs, and changes nothing.
    let (ok, _, err) = run(mmc(dir.path(), &["restore", copy.to_str().unwrap()]));
    assert!(!ok && err.contains("already serving"), "{err}");
    stop(child);
    let live = dir.path().join("mailmycustomer.db");
    assert_eq!(stored_ids(&live).len(), all.len());

    let (ok, out, err) = run(mmc(dir.path(), &["restore", copy.to_str().unwrap()]));
    assert!(ok, "{err}");
    let aside = out
        .lines()
        .find_map(|l| l.strip_prefix("The database it replaced is kept at "))
        .and_then(|l| l.split(" (").next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    assert_eq!(stored_ids(&live), in_copy, "the backup's events are back");
    assert_eq!(
        // The default database path is relative to the working directory, and so is this one.
        stored_ids(&dir.path().join(&aside)).len(),
        all.len(),
        "nothing lost aside"
    );

    // The restored database serves: a webhook sent again is a duplicate, a new one is stored.
    let Spawned { child, addr } = spawn_serve(dir.path(), &[]);
    let client = reqwest::Client::new();
    let mut event = template_event(&before_backup[0]);
    let body = serde_json::to_vec(&event).unwrap();
    let answer: serde_json::Value = client
        .post(format!("http://{addr}/webhooks/stripe/{id}"))
        .header("Stripe-Signature", sign_now(&body, SECRET))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["duplicate"], true, "{answer}");
    event["id"] = "evt_after_restore".into();
    let body = serde_json::to_vec(&event).unwrap();
    let status = client
        .post(format!("http://{addr}/webhooks/stripe/{id}"))
        .header("Stripe-Signature", sign_now(&body, SECRET))
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    stop(child);
}

fn template_event(id: &str) -> serde_json::Value {
    let mut event: serde_json::Value =
        serde_json::from_slice(&fixture("invoice.paid.json")).unwrap();
    event["id"] = id.into();
    event
}

#[test]
fn restore_refuses_what_is_not_a_backup_and_keeps_the_database() {
    let dir = tempfile::tempdir().unwrap();
    add_integration_cli(dir.path(), &["--name", "shop", "--webhook-secret", SECRET]);
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "shopping list").unwrap();
    let (ok, _, err) = run(mmc(dir.path(), &["restore", junk.to_str().unwrap()]));
    assert!(
        !ok && err.contains("not a MailMyCustomer database"),
        "{err}"
    );
    let (ok, out, _) = run(mmc(dir.path(), &["integration", "list"]));
    assert!(ok && out.contains("shop"), "{out}");
    let (ok, _, err) = run(mmc(dir.path(), &["backup", "/nonexistent-dir/x.db"]));
    assert!(
        !ok && err.contains("cannot create the backup file"),
        "{err}"
    );
}

/// A compressed backup cut short (a copy interrupted, a disk that filled) is refused by its
/// decoder before anything moves: the database is the one it was, nothing is left beside it.
#[test]
fn a_truncated_compressed_backup_is_refused_and_the_database_kept() {
    let dir = tempfile::tempdir().unwrap();
    add_integration_cli(dir.path(), &["--name", "shop", "--webhook-secret", SECRET]);
    let whole = dir.path().join("whole.db.zst");
    let (ok, _, err) = run(mmc(
        dir.path(),
        &["backup", "--compress", whole.to_str().unwrap()],
    ));
    assert!(ok, "{err}");
    add_integration_cli(dir.path(), &["--name", "later", "--webhook-secret", SECRET]);
    let raw = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.db.zst");
    std::fs::write(&cut, &raw[..raw.len() * 2 / 3]).unwrap();
    let names = || -> BTreeSet<String> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            // restore takes the serve lock, which leaves its (empty) lock file. SQLite's WAL and
            // shared-memory files are there or not depending on whether the last process to
            // close the database closed every connection first (it then deletes them).
            .filter(|n| !n.ends_with(".lock") && !n.ends_with("-wal") && !n.ends_with("-shm"))
            .collect()
    };
    let before = names();

    let (ok, _, err) = run(mmc(dir.path(), &["restore", cut.to_str().unwrap()]));
    assert!(!ok && err.contains("does not decode whole"), "{err}");
    let (ok, out, _) = run(mmc(dir.path(), &["integration", "list"]));
    assert!(ok && out.contains("shop") && out.contains("later"), "{out}");
    assert_eq!(
        before,
        names(),
        "no .restoring file and nothing moved aside"
    );

    // The whole one restores, and it is the moment it was taken.
    let (ok, out, err) = run(mmc(dir.path(), &["restore", whole.to_str().unwrap()]));
    assert!(ok && out.contains("(zstd)"), "{out}{err}");
    let (ok, out, _) = run(mmc(dir.path(), &["integration", "list"]));
    assert!(
        ok && out.contains("shop") && !out.contains("later"),
        "{out}"
    );
}

/// Secrets stay sealed in a backup, so a restore on another machine needs the key too: without
/// it every command refuses, naming where the key was looked for; with it, all works.
#[test]
fn a_restored_backup_needs_the_key_it_was_sealed_with() {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    add_integration_cli(old.path(), &["--name", "shop", "--webhook-secret", SECRET]);
    let copy = new.path().join("copy.db");
    let (ok, _, err) = run(mmc(old.path(), &["backup", copy.to_str().unwrap()]));
    assert!(ok, "{err}");
    let raw = std::fs::read(&copy).unwrap();
    assert!(
        !raw.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the signing secret is sealed in the backup"
    );

    let (ok, _, err) = run(mmc(new.path(), &["restore", copy.to_str().unwrap()]));
    assert!(ok, "{err}");
    let (ok, _, err) = run(mmc(new.path(), &["integration", "list"]));
    assert!(!ok && err.contains("mailmycustomer.db.key"), "{err}");

    std::fs::copy(
        old.path().join("mailmycustomer.db.key"),
        new.path().join("mailmycustomer.db.key"),
    )
    .unwrap();
    let (ok, out, err) = run(mmc(new.path(), &["integration", "list"]));
    assert!(
        ok && out.contains("shop") && out.contains("whsec_…"),
        "{out}{err}"
    );
}

/// `serve` with `[backup]` on: the newest backup in the directory is older than the interval,
/// so one is made at start, checked and compressed, and the oldest of ours beyond `keep` go;
/// files it did not name stay. A stop ends the schedule with the server.
#[test]
fn serve_backs_up_at_start_when_the_newest_backup_is_stale_and_keeps_keep() {
    let dir = tempfile::tempdir().unwrap();
    add_integration_cli(dir.path(), &["--name", "shop", "--webhook-secret", SECRET]);
    let backups = dir.path().join("kept");
    std::fs::create_dir(&backups).unwrap();
    let stale = [
        "mailmycustomer-20200101T000000Z.db.zst",
        "mailmycustomer-20200102T000000Z.db.zst",
    ];
    let foreign = ["before-upgrade-20200101T000000Z.db.zst", "notes.txt"];
    for name in stale.iter().chain(&foreign) {
        std::fs::write(backups.join(name), "x").unwrap();
    }
    let Spawned { child, .. } = spawn_serve(
        dir.path(),
        &[
            ("MMC_BACKUP__INTERVAL_HOURS", "24".to_owned()),
            ("MMC_BACKUP__KEEP", "2".to_owned()),
            ("MMC_BACKUP__DIR", backups.to_str().unwrap().to_owned()),
        ],
    );
    let names = || -> BTreeSet<String> {
        std::fs::read_dir(&backups)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let fresh = loop {
        // Pruned: the made one is checked and renamed before the oldest go.
        let now = names();
        let made = now
            .iter()
            .find(|n| n.starts_with("mailmycustomer-2") && !stale.contains(&n.as_str()));
        if let Some(made) = made.filter(|_| !now.contains(stale[0])) {
            break made.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{now:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    stop(child);
    let left = names();
    let expected: BTreeSet<String> = [fresh.as_str(), stale[1]]
        .into_iter()
        .chain(foreign)
        .map(str::to_owned)
        .collect();
    assert_eq!(left, expected, "keep = 2 of ours, and the others untouched");
    assert!(fresh.ends_with("Z.db.zst"), "{fresh}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(backups.join(&fresh))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // It is a whole backup: restore puts it back.
    let (ok, out, err) = run(mmc(
        dir.path(),
        &["restore", backups.join(&fresh).to_str().unwrap()],
    ));
    assert!(ok && out.contains("1 integration(s)"), "{out}{err}");
}
