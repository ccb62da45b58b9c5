//! Output and file hygiene (issue 9.3), stale compiled templates (issue 8.7) and long names
//! (issue 8.8): what the CLI prints from the database cannot drive the operator's terminal, the
//! database files are private whatever the umask, template export and import touch only regular
//! files, a template that replaced a deleted one under the same id renders its own text, and a
//! customer with a 256-character name gets the email.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mail_parser::MessageParser;
use mailmycustomer::db::deliveries::{self, NewDelivery, Status};
use mailmycustomer::db::templates::{self, TemplateInput};
use mailmycustomer::db::{self, integrations};
use mailmycustomer::pipeline::prepare::Outcome;
use mailmycustomer::templates::body::Format;
use mailmycustomer::trigger::TriggerKind;

use crate::cli::{mmc, run};
use crate::fake_stripe::FakeStripe;
use crate::sink::Sink;
use crate::smtp_server::ScriptedServer;
use crate::support::{fixture, relay_to, test_config, TestServer, SECRET};

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
                id: None,
                integration_id: None,
                trigger: TriggerKind::PaymentReceived,
                product_id: Some("prod_QXg1hqf4jFNsqG".into()),
                plan_id: Some("price_1PgafmB7WZ01zgkW6dKueIc5".into()),
                subject: subject.into(),
                format: Format::Html,
                body: html.into(),
                text: None,
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
// Issue 8.8: long names do not fail delivery.

/// The whole path: Stripe's customer has a 256-character CJK name (Stripe's limit), the
/// subscription email goes out through smtp-sink, and every header line of what arrives is
/// within 78 octets, with the name shortened but readable.
#[tokio::test(flavor = "multi_thread")]
async fn a_customer_with_a_256_character_non_latin_name_gets_the_email() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeStripe::start().await;
    crate::pipeline::populate(&fake);
    let name: String = "山田花子".chars().cycle().take(256).collect();
    fake.customer(
        "cus_QXg1o8vcGmoR32",
        Some("jenny.rosen@example.com"),
        Some(&name),
    );
    let sink = Sink::start();
    let mut config = test_config(dir.path());
    config.stripe.api_base = fake.base_url.clone();
    relay_to(&mut config, sink.port);
    let mut conn = db::open(&db::Options::at(&config.database.path).unwrap()).unwrap();
    db::migrate(&mut conn).unwrap();
    let id = integrations::insert(
        &conn,
        &integrations::NewIntegration {
            name: "Rosen Goods",
            webhook_secret: SECRET,
            api_key: Some("rk_test_51RosenGoods000000"),
            stripe_account: None,
            from_address: None,
        },
    )
    .unwrap()
    .id;
    drop(conn);
    let server = TestServer::start_with(config, id).await;
    server
        .deliver(fixture("customer.subscription.created.json"))
        .await
        .assert_stored(false);

    let raw = sink.wait_for(1, Duration::from_secs(20)).await.remove(0);
    let text = String::from_utf8_lossy(&raw).replace("\r\n", "\n");
    let head = text.split("\n\n").next().unwrap();
    for line in head.lines() {
        assert!(line.len() <= 78, "{} octets: {line}\n{head}", line.len());
    }
    let message = MessageParser::default().parse(&raw).unwrap();
    let to = message.to().unwrap().first().unwrap();
    assert_eq!(to.address(), Some("jenny.rosen@example.com"));
    let shown = to.name().unwrap().strip_suffix('…').unwrap();
    assert!(
        shown.chars().count() >= 10 && name.starts_with(shown),
        "{shown}"
    );
    // The sent mark is committed just after the relay's answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        let delivery = deliveries::get(&server.db(), 1).unwrap().unwrap();
        if delivery.status == Status::Sent || Instant::now() > deadline {
            break delivery;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(delivery.status, Status::Sent, "{delivery:?}");
    assert_eq!(
        delivery.recipient_name.as_deref(),
        Some(name.as_str()),
        "the log keeps the whole name"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Issue 9.3: the CLI escapes control characters.

/// Raw control characters (C0, DEL, C1) and bidirectional overrides, which a terminal obeys.
fn raw_controls(out: &str) -> Vec<char> {
    out.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

/// Issue 10: an integration's webhook secret and API key are `Secret`s in the data model, so a
/// `{:?}` of an integration (a log line, a panic message, a test failure) never shows them, and
/// neither does a `{:?}` of the config with an SMTP password.
#[test]
fn debug_output_of_an_integration_or_the_config_shows_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db::open(&db::Options::at(&dir.path().join("t.db")).unwrap()).unwrap();
    db::migrate(&mut conn).unwrap();
    let (secret, key) = ("whsec_debugDEBUGdebug1234", "rk_live_debugDEBUGdebugWXYZ");
    let added = integrations::insert(
        &conn,
        &integrations::NewIntegration {
            name: "Debug shop",
            webhook_secret: secret,
            api_key: Some(key),
            stripe_account: None,
            from_address: None,
        },
    )
    .unwrap();
    let read = integrations::get(&conn, &added.id).unwrap().unwrap();
    assert_eq!(
        (
            read.webhook_secret.expose(),
            read.api_key.as_ref().map(|k| k.expose())
        ),
        (secret, Some(key)),
        "stored and read back as given"
    );
    for shown in [
        format!("{read:?}"),
        format!("{read:#?}"),
        format!("{:?}", vec![&added]),
    ] {
        assert!(
            !shown.contains("debugDEBUGdebug"),
            "a secret in Debug output: {shown}"
        );
        assert!(
            shown.contains("webhook_secret: [redacted]")
                && shown.matches("[redacted]").count() == 2
                && shown.contains("Debug shop"),
            "{shown}"
        );
    }

    let mut config = mailmycustomer::Config::default();
    config.smtp.password = mailmycustomer::config::Secret::new("hunter2-smtp-pass");
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("password: [redacted]"),
        "{shown}"
    );
}

#[test]
fn cli_output_escapes_control_characters_from_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn =
        db::open(&db::Options::at(&dir.path().join("mailmycustomer.db")).unwrap()).unwrap();
    db::migrate(&mut conn).unwrap();
    let integration = integrations::insert(
        &conn,
        &integrations::NewIntegration {
            name: "Shop\u{1b}]0;owned\u{7}",
            webhook_secret: "whsec_test_secret",
            api_key: None,
            stripe_account: Some("acct_\u{1b}[2J"),
            from_address: Some("billing@shop.example\u{9b}31m"),
        },
    )
    .unwrap();
    let delivery = deliveries::insert(
        &conn,
        &NewDelivery {
            product_id: Some("prod_\u{1b}[5m".into()),
            recipient: Some("jenny@example.com\u{1b}[8m".into()),
            recipient_name: Some("Jenny\u{202e}nesoR".into()),
            subject: Some("Receipt\u{1b}[2J\u{1b}[H".into()),
            status: Status::Failed,
            note: Some("550 refused\r\u{1b}[32msent\u{1b}[0m\nstatus: sent".into()),
            ..NewDelivery::new(
                integration.id.clone(),
                "evt_\u{1b}[1A",
                "invoice:in_1:paid\u{8}\u{8}",
                mailmycustomer::trigger::TriggerKind::PaymentReceived,
            )
        },
        db::now_unix(),
    )
    .unwrap();
    let deliveries::Inserted::New(delivery) = delivery else {
        panic!("not inserted")
    };
    let template = templates::save(
        &conn,
        &TemplateInput {
            id: None,
            integration_id: None,
            trigger: TriggerKind::PaymentReceived,
            product_id: Some("prod_\u{1b}[31m".into()),
            plan_id: None,
            subject: "Thanks\u{1b}]8;;https://evil.example\u{7} {{ name }}".into(),
            format: Format::Html,
            body: "<p>Hi\u{1b}[2J</p>\r\n<p>{{ name }}</p>".into(),
            text: Some("Hi\u{1b}[2J\n{{ name }}\u{9b}1m".into()),
            enabled: true,
        },
    )
    .unwrap();
    drop(conn);

    let mut event: serde_json::Value =
        serde_json::from_slice(&fixture("invoice.paid.json")).unwrap();
    event["data"]["object"]["customer_name"] = "Jenny\u{1b}]52;c;ZXZpbA==\u{7}".into();
    let event_file = dir.path().join("event.json");
    fs::write(&event_file, serde_json::to_vec(&event).unwrap()).unwrap();

    let delivery = delivery.to_string();
    let template = template.id.to_string();
    let commands: [&[&str]; 6] = [
        &["log"],
        &["log", "show", &delivery],
        &["template", "list"],
        &["template", "show", &template],
        &["integration", "list"],
        &["preview", "--html", "--event", event_file.to_str().unwrap()],
    ];
    let mut problems = Vec::new();
    for args in commands {
        let (_, out, err) = run(mmc(dir.path(), args));
        let what = args.join(" ");
        assert!(
            out.lines().count() > 1,
            "`{what}` printed little: {out}{err}"
        );
        let raw = raw_controls(&out);
        if !raw.is_empty() {
            problems.push(format!("`{what}` printed raw {raw:?}"));
        }
        // What the database holds is still shown, escaped (preview's event is not stored).
        if !what.starts_with("preview") && !out.contains("\\u{1b}") {
            problems.push(format!("`{what}` shows no escaped ESC:\n{out}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    let (_, out, _) = run(mmc(dir.path(), &["log", "show", &delivery]));
    assert!(
        out.contains("last error:   550 refused\\u{d}\\u{1b}[32msent\\u{1b}[0m\\u{a}status: sent"),
        "a stored newline cannot forge a line:\n{out}"
    );
}

/// What a relay (send-test-email) or a health URL (healthcheck) answers is printed escaped too.
#[tokio::test(flavor = "multi_thread")]
async fn replies_from_a_relay_or_a_health_url_are_printed_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let relay = ScriptedServer::start(&[]).await;
    relay.reply_text("RCPT", "550 5.1.1 no such user\u{1b}[2J\u{1b}]0;owned\u{7}");
    let mut cmd = mmc(
        dir.path(),
        &["send-test-email", "--to", "owner@rosen.example"],
    );
    cmd.env("MMC_SMTP__HOST", "127.0.0.1")
        .env("MMC_SMTP__PORT", relay.port().to_string())
        .env("MMC_SMTP__SECURITY", "none")
        .env("MMC_SMTP__FROM_ADDRESS", "billing@rosen.example");
    let (ok, _, err) = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
    assert!(!ok, "{err}");
    assert!(err.contains("no such user\\u{1b}[2J"), "{err}");
    assert!(raw_controls(&err).is_empty(), "{err}");

    // A one-answer HTTP server standing in for whatever --url points at.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/healthz", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let body = "down\u{1b}]0;owned\u{7}\u{1b}[2J";
        let _ = write!(
            stream,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    let (ok, _, err) = tokio::task::spawn_blocking({
        let cmd = mmc(dir.path(), &["healthcheck", "--url", &url]);
        move || run(cmd)
    })
    .await
    .unwrap();
    assert!(!ok, "{err}");
    assert!(err.contains("down\\u{1b}]0;owned"), "{err}");
    assert!(raw_controls(&err).is_empty(), "{err}");
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

// ---------------------------------------------------------------------------------------------
// Issue 9.3: template export and import touch only regular files.

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

/// Runs `args` and waits at most 20 s: a FIFO must be refused, not block the command.
fn run_bounded(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut child = mmc(dir, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`{}` hung", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn template_export_refuses_symlinks_and_special_files() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(mmc(dir.path(), &["migrate"]));
    assert!(ok, "{err}");
    let victim = dir.path().join("victim.txt");
    fs::write(&victim, "precious\n").unwrap();

    let out_dir = dir.path().join("export");
    fs::create_dir(&out_dir).unwrap();
    let link = out_dir.join("payment_failed.any-product.any-plan.toml");
    symlink(&victim, &link).unwrap();
    let (ok, _, err) = run_bounded(dir.path(), &["template", "export", "export"]);
    assert!(!ok, "export wrote through a symlink");
    assert!(
        err.contains("payment_failed.any-product.any-plan.toml") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");

    fs::remove_file(&link).unwrap();
    mkfifo(&link);
    let (ok, _, err) = run_bounded(dir.path(), &["template", "export", "export"]);
    assert!(!ok && err.contains("not a regular file"), "{err}");

    // A regular file in the way is replaced, as before.
    fs::remove_file(&link).unwrap();
    fs::write(&link, "old export").unwrap();
    let (ok, out, err) = run_bounded(dir.path(), &["template", "export", "export"]);
    assert!(ok, "{err}");
    assert!(out.contains("exported 7 templates"), "{out}");
    assert!(fs::read_to_string(&link)
        .unwrap()
        .contains("payment_failed"));
}

#[test]
fn template_import_refuses_symlinks_and_special_files() {
    let dir = tempfile::tempdir().unwrap();
    let good =
        "trigger = \"payment_failed\"\nsubject = \"Imported {{ name }}\"\nhtml = \"<p>x</p>\"\n";
    let elsewhere = dir.path().join("elsewhere.toml");
    fs::write(&elsewhere, good).unwrap();

    let import = dir.path().join("import");
    fs::create_dir(&import).unwrap();
    symlink(
        &elsewhere,
        import.join("payment_failed.any-product.any-plan.toml"),
    )
    .unwrap();
    let (ok, _, err) = run_bounded(dir.path(), &["template", "import", "import"]);
    assert!(!ok, "import read through a symlink");
    assert!(
        err.contains("symbolic link") && err.contains("nothing imported"),
        "{err}"
    );

    fs::remove_file(import.join("payment_failed.any-product.any-plan.toml")).unwrap();
    mkfifo(&import.join("fifo.toml"));
    fs::create_dir(import.join("folder.toml")).unwrap();
    let (ok, _, err) = run_bounded(dir.path(), &["template", "import", "import"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("fifo.toml: is not a regular file")
            && err.contains("folder.toml: is not a regular file"),
        "{err}"
    );

    // The same file, regular, imports.
    fs::remove_file(import.join("fifo.toml")).unwrap();
    fs::remove_dir(import.join("folder.toml")).unwrap();
    fs::copy(
        &elsewhere,
        import.join("payment_failed.any-product.any-plan.toml"),
    )
    .unwrap();
    let (ok, out, err) = run_bounded(dir.path(), &["template", "import", "import"]);
    assert!(ok && out.contains("imported 1 templates"), "{out}{err}");
    let (_, list, _) = run(mmc(dir.path(), &["template", "list"]));
    assert!(list.contains("Imported "), "{list}");
}
