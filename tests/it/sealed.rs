//! Issue 12, secrets at rest: webhook signing secrets, API keys, OAuth tokens and the SMTP
//! password never reach the database file (or its WAL) in plain text, still work sealed, and a
//! start with the wrong key, or without its key, stops with an error naming where the key is.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use mailmycustomer::config::Overrides;
use mailmycustomer::db::{self, integrations};
use mailmycustomer::seal;
use mailmycustomer::Config;

use crate::cli::{mmc, run};
use crate::fake_stripe::FakeStripe;
use crate::support::{distinct_invoice_paid, sign_now, signed_in, test_config, TestServer};

const WEBHOOK_SECRET: &str = "whsec_SealedWebhookSecret0123456789";
const API_KEY: &str = "rk_test_SealedRestrictedKey0123456789abcdef";
const SMTP_PASSWORD: &str = "Sealed-SMTP-password-9731";
const ACCESS_TOKEN: &str = "sk_test_SealedOAuthAccessToken456789";
const REFRESH_TOKEN: &str = "rt_SealedOAuthRefreshToken0123456789";

/// Which of `secrets` appear anywhere in the database file or its WAL, byte for byte.
fn found_in_files(database: &Path, secrets: &[&str]) -> Vec<String> {
    let mut bytes = std::fs::read(database).unwrap();
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    if let Ok(more) = std::fs::read(&wal) {
        bytes.extend(more);
    }
    secrets
        .iter()
        .filter(|s| bytes.windows(s.len()).any(|w| w == s.as_bytes()))
        .map(|s| s.to_string())
        .collect()
}

/// What `serve` says when it refuses to start on `config`.
async fn refused_start(config: Config) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        mailmycustomer::serve(config, listener, async {}),
    )
    .await
    .expect("serve answers at once");
    result.expect_err("serve must refuse this key").to_string()
}

async fn delivered(server: &TestServer, tag: &str, secret: &str) -> u16 {
    let body = distinct_invoice_paid(tag, 1);
    let signature = sign_now(&body, secret);
    server
        .post(&server.webhook_url(), body, Some(signature))
        .await
        .status
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_saved_on_the_pages_are_sealed_in_the_file_and_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    let mut config = test_config(dir.path());
    config.stripe.api_base = fake.base_url.clone();
    let database = config.database.path.clone();
    let mut server = TestServer::start_with(config.clone(), String::new()).await;

    // The first command on a new database made its key file beside it, readable by its owner.
    let key_file = seal::key_file(&database);
    assert_eq!(key_file, dir.path().join("mailmycustomer.db.key"));
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read_to_string(&key_file).unwrap();

    let ui = signed_in(&server).await;
    let form = ui.get("/integrations/new").await;
    let id = form.hidden("id").expect("the new integration's id");
    ui.post(
        "/integrations/new",
        &[
            ("id", &id),
            ("name", "Rosen Goods"),
            ("webhook_secret", WEBHOOK_SECRET),
            ("api_key", API_KEY),
            ("from_address", "billing@rosen.example"),
        ],
    )
    .await
    .assert_redirect("/integrations");
    server.integration_id = id.clone();
    ui.post(
        "/settings",
        &[("smtp.username", "rosen"), ("smtp.password", SMTP_PASSWORD)],
    )
    .await
    .assert_redirect("/settings");

    // The pages show the last four characters at most.
    let edit = ui.get(&format!("/integrations/{id}")).await;
    assert_eq!(edit.status, 200);
    assert!(edit.text.contains("…6789") && edit.text.contains("…cdef"));
    let settings = ui.get("/settings").await;
    for page in [&edit.text, &settings.text] {
        for secret in [WEBHOOK_SECRET, API_KEY, SMTP_PASSWORD] {
            assert!(!page.contains(secret), "{secret} shown");
        }
    }

    // A webhook signed with the secret is accepted (it unseals); one signed otherwise is not.
    assert_eq!(delivered(&server, "sealed_ok", WEBHOOK_SECRET).await, 200);
    assert_eq!(delivered(&server, "sealed_bad", "whsec_other").await, 400);

    // Sealed in the rows, absent from the file and the WAL, even before a checkpoint.
    let conn = server.db();
    let (secret, api_key): (String, String) = conn
        .query_row(
            "SELECT webhook_secret, api_key FROM integrations WHERE id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let password: String = conn
        .query_row(
            "SELECT value FROM saved_settings WHERE key = 'smtp.password'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    for stored in [&secret, &api_key, &password] {
        assert!(seal::is_sealed(stored), "{stored}");
    }
    let read = integrations::get(&conn, &id).unwrap().unwrap();
    assert_eq!(read.webhook_secret.expose(), WEBHOOK_SECRET);
    assert_eq!(read.api_key.unwrap().expose(), API_KEY);
    assert_eq!(
        db::settings::load(&conn).unwrap()["smtp.password"],
        SMTP_PASSWORD
    );
    drop(conn);
    let everything = [WEBHOOK_SECRET, API_KEY, SMTP_PASSWORD, key.trim()];
    assert_eq!(found_in_files(&database, &everything), Vec::<String>::new());
    server.stop().await;
    assert_eq!(found_in_files(&database, &everything), Vec::<String>::new());

    // Another key, from the config file's key or the environment: refused, naming where it
    // came from, before anything else happens.
    let other = seal::new_key_text().unwrap();
    let mut wrong = config.clone();
    wrong.database.secret_key = other.as_str().into();
    let err = refused_start(wrong).await;
    assert!(
        err.contains("database.secret_key") && err.contains("not the key"),
        "{err}"
    );
    let from_env = Config::load(
        None,
        [("MMC_DATABASE__SECRET_KEY".to_owned(), other.clone())],
        &Overrides {
            database: Some(database.clone()),
            listen: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        },
    )
    .unwrap();
    let err = refused_start(from_env).await;
    assert!(err.contains("MMC_DATABASE__SECRET_KEY"), "{err}");
    assert!(!err.contains(&other) && !err.contains(key.trim()), "{err}");

    // The CLI refuses the same way, and `config dump` never prints the key.
    let db_flag = database.to_str().unwrap();
    let (ok, _, err) = run(
        mmc(dir.path(), &["--database", db_flag, "integration", "list"])
            .env("MMC_DATABASE__SECRET_KEY", &other),
    );
    assert!(!ok && err.contains("MMC_DATABASE__SECRET_KEY"), "{err}");
    let (ok, out, err) = run(mmc(dir.path(), &["--database", db_flag, "config", "dump"])
        .env("MMC_DATABASE__SECRET_KEY", key.trim()));
    assert!(ok, "{err}");
    assert!(out.contains("secret_key = \"[redacted]\""), "{out}");
    assert!(
        !out.contains(key.trim()) && !out.contains(SMTP_PASSWORD),
        "{out}"
    );

    // The key file gone: refused, naming the file, and no new key is made in its place.
    let aside = dir.path().join("kept.key");
    std::fs::rename(&key_file, &aside).unwrap();
    let err = refused_start(config.clone()).await;
    assert!(
        err.contains(&key_file.display().to_string()) && err.contains("missing"),
        "{err}"
    );
    assert!(!key_file.exists(), "a sealed database got a new key");

    // With its key back, it starts and the secret still verifies webhooks.
    std::fs::rename(&aside, &key_file).unwrap();
    let server = TestServer::start_with(config, id).await;
    assert_eq!(
        delivered(&server, "sealed_again", WEBHOOK_SECRET).await,
        200
    );
    server.stop().await;
}

mod old_schema {
    refinery::embed_migrations!("migrations");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_from_before_sealing_is_sealed_by_its_first_start_and_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let database = config.database.path.clone();
    let id = "int_0123456789abcdef";
    const REPLACED: &str = "whsec_ReplacedBeforeSealing0123456789";
    {
        // A database as V13 left it: secrets in plain text, one of them replaced once (its old
        // text may stay in the page's free space unless the file is rewritten).
        let mut conn = rusqlite::Connection::open(&database).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        old_schema::migrations::runner()
            .set_target(refinery::Target::Version(13))
            .run(&mut conn)
            .unwrap();
        conn.execute(
            "INSERT INTO integrations (id, name, webhook_secret, api_key, created_at,
                 oauth_access_token, oauth_refresh_token)
             VALUES (?1, 'Rosen Goods', ?2, ?3, 0, ?4, ?5)",
            [id, REPLACED, API_KEY, ACCESS_TOKEN, REFRESH_TOKEN],
        )
        .unwrap();
        conn.execute(
            "UPDATE integrations SET webhook_secret = ?2 WHERE id = ?1",
            [id, WEBHOOK_SECRET],
        )
        .unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO saved_settings (key, value, updated_at) VALUES
                 ('smtp.username', 'rosen', 0), ('smtp.password', '{SMTP_PASSWORD}', 0);"
        ))
        .unwrap();
    }
    let all = [
        WEBHOOK_SECRET,
        REPLACED,
        API_KEY,
        ACCESS_TOKEN,
        REFRESH_TOKEN,
        SMTP_PASSWORD,
    ];
    // The test can fail: the current secrets are there in plain text now.
    let current = [&all[..1], &all[2..]].concat();
    assert_eq!(found_in_files(&database, &current).len(), current.len());
    assert!(!seal::key_file(&database).exists());

    let server = TestServer::start_with(config.clone(), id.to_owned()).await;
    assert!(seal::key_file(&database).exists(), "a key file was made");
    assert_eq!(found_in_files(&database, &all), Vec::<String>::new());
    assert_eq!(delivered(&server, "old_ok", WEBHOOK_SECRET).await, 200);
    let conn = server.db();
    let read = integrations::get(&conn, id).unwrap().unwrap();
    assert_eq!(read.webhook_secret.expose(), WEBHOOK_SECRET);
    assert_eq!(read.api_key.unwrap().expose(), API_KEY);
    assert_eq!(read.oauth_access_token.unwrap().expose(), ACCESS_TOKEN);
    assert_eq!(read.oauth_refresh_token.unwrap().expose(), REFRESH_TOKEN);
    assert_eq!(
        db::settings::load(&conn).unwrap()["smtp.password"],
        SMTP_PASSWORD
    );
    let ui = signed_in(&server).await;
    assert!(ui
        .get("/settings")
        .await
        .text
        .contains("Set. Leave empty to keep it."));
    let step = |conn: &rusqlite::Connection| -> (i64, i64, String) {
        conn.query_row(
            "SELECT sealed_at, sealed_values, (SELECT webhook_secret FROM integrations) FROM sealing",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    let first = step(&conn);
    assert_eq!(first.1, 5, "two OAuth tokens, a key, a secret, a password");
    drop(conn);
    server.stop().await;

    // A second start does nothing: the same record, the same sealed text.
    let server = TestServer::start_with(config, id.to_owned()).await;
    assert_eq!(step(&server.db()), first);

    // Plain text planted around the program after the seal step is refused, not used.
    server
        .db()
        .execute(
            "UPDATE integrations SET webhook_secret = 'whsec_planted' WHERE id = ?1",
            [id],
        )
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_ne!(delivered(&server, "planted", "whsec_planted").await, 200);
    let err = integrations::get(&server.db(), id).unwrap_err().to_string();
    assert!(err.contains("plain text"), "{err}");
    server.stop().await;
}
