//! Output and file hygiene (issue 9.3) and stale compiled templates (issue 8.7): the database
//! files are private whatever the umask, and a template that replaced a deleted one under the
//! same id renders its own text.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailmycustomer::db::templates::{self, TemplateInput};
use mailmycustomer::pipeline::prepare::Outcome;
use mailmycustomer::templates::render::TemplateSource;
use mailmycustomer::trigger::TriggerKind;

use crate::cli::run;
use crate::support::fixture;

const BIN: &str = env!("CARGO_BIN_EXE_mailmycustomer");

// ---------------------------------------------------------------------------------------------
// Issue 8.7: a deleted template is never sent.

/// SQLite gives the next template the id of a deleted one (the highest id), and versions start
/// at 1 again. The processor's renderer lives as long as the server, so without a cache keyed on
/// the text it would render the deleted template's text under the new one's id.
#[tokio::test(flavor = "multi_thread")]
async fn a_template_that_reuses_a_deleted_ones_id_renders_its_own_text() {
    let s = crate::pipeline::setup(Some("rk_test_51Rosen00000000000000")).await;
    let payload = String::from_utf8(fixture("invoice.paid.json")).unwrap();
    let save = |subject: &str, html: &str| {
        templates::save(
            &s.pool.get().unwrap(),
            &TemplateInput {
                trigger: TriggerKind::PaymentReceived,
                product_id: Some("prod_QXg1hqf4jFNsqG".into()),
                plan_id: Some("price_1PgafmB7WZ01zgkW6dKueIc5".into()),
                source: TemplateSource {
                    subject: subject.into(),
                    html: html.into(),
                    text: None,
                },
                enabled: true,
            },
        )
        .unwrap()
    };
    let email = || async {
        match s
            .preparer
            .prepare(&s.integration, &s.templates(), None, &payload)
            .await
        {
            Outcome::Delivery(d) => (d.template_id, d.subject, d.html),
            other => panic!("expected a delivery, got {other:?}"),
        }
    };

    let deleted = save("Deleted template for {{ name }}", "<p>deleted</p>");
    let (id, subject, _) = email().await;
    assert_eq!(id, Some(deleted.id));
    assert_eq!(subject.as_deref(), Some("Deleted template for Jenny Rosen"));

    assert!(templates::remove(&s.pool.get().unwrap(), deleted.id).unwrap());
    let new = save("New template for {{ name }}", "<p>new</p>");
    assert_eq!(
        (new.id, new.version),
        (deleted.id, deleted.version),
        "SQLite reused the id, and the version starts again"
    );
    let (id, subject, html) = email().await;
    assert_eq!(id, Some(new.id));
    assert_eq!(subject.as_deref(), Some("New template for Jenny Rosen"));
    assert_eq!(html.as_deref(), Some("<p>new</p>"));
}

// ---------------------------------------------------------------------------------------------
// Issue 9.3: the database files are created 0600 whoever creates them.

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Runs the debug binary with `umask 000`, the most permissive a caller can set.
fn mmc_umask_000(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(args)
        .current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("MMC_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn the_database_and_its_wal_and_shm_are_created_0600_whatever_the_umask() {
    // The CLI creating the database (here in a directory it creates too).
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(mmc_umask_000(
        dir.path(),
        &["--database", "data/cli.db", "migrate"],
    ));
    assert!(ok, "{err}");
    assert_eq!(mode(&dir.path().join("data/cli.db")), 0o600);
    assert_eq!(mode(&dir.path().join("data")), 0o700);

    // `serve` creating it: the -wal and -shm files exist while it runs.
    let mut child = mmc_umask_000(dir.path(), &["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db = dir.path().join("mailmycustomer.db");
    let files = [
        db.clone(),
        dir.path().join("mailmycustomer.db-wal"),
        dir.path().join("mailmycustomer.db-shm"),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !files.iter().all(|f| f.exists()) {
        assert!(
            Instant::now() < deadline,
            "serve did not create all of {files:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let modes: Vec<u32> = files.iter().map(|f| mode(f)).collect();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(modes, [0o600; 3], "{files:?}");
}
