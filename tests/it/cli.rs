//! The real binary, spawned as a user would run it: serve, healthcheck, config, integration.

use std::borrow::BorrowMut;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_mailmycustomer");

/// Runs the (debug) binary with a clean MMC_ environment, in `dir`.
pub fn mmc(dir: &Path, args: &[&str]) -> Command {
    mmc_with(Path::new(BIN), dir, args)
}

/// Runs `binary` (debug or `release_binary()`) with a clean MMC_ environment, in `dir`.
pub fn mmc_with(binary: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary);
    cmd.args(args).current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("MMC_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

pub fn run(mut cmd: impl BorrowMut<Command>) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.borrow_mut().output().unwrap();
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// `mailmycustomer integration add ARGS`; returns the new integration's id and the output.
pub fn add_integration_cli(dir: &Path, args: &[&str]) -> (String, String) {
    let mut all = vec!["integration", "add"];
    all.extend_from_slice(args);
    let (ok, out, err) = run(mmc(dir, &all));
    assert!(ok, "{err}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("integration add prints the id")
        .to_owned();
    (id, out)
}

pub struct Spawned {
    pub child: Child,
    pub addr: String,
}

/// Starts `serve` on port 0 with JSON logs and `env` set, and reads the bound address from its
/// first lines.
pub fn spawn_serve(dir: &Path, env: &[(&str, String)]) -> Spawned {
    spawn_serve_with(Path::new(BIN), dir, env)
}

/// `spawn_serve` with another build of the binary, such as `release_binary()`.
pub fn spawn_serve_with(binary: &Path, dir: &Path, env: &[(&str, String)]) -> Spawned {
    let mut child = mmc_with(binary, dir, &["serve", "--listen", "127.0.0.1:0"])
        .env("MMC_LOG__FORMAT", "json")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let addr = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("serve exited early: {seen:#?}"))
            .unwrap();
        let log: serde_json::Value = serde_json::from_str(&line).unwrap();
        seen.push(log.clone());
        if let Some(listen) = log["fields"]["listen"].as_str() {
            if log["fields"]["message"]
                .as_str()
                .unwrap()
                .contains("serving")
            {
                break listen.to_owned();
            }
        }
    };
    let first = seen[0]["fields"]["message"].as_str().unwrap();
    assert!(
        first.contains("embedded defaults"),
        "first log line: {first}"
    );
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Spawned { child, addr }
}

/// On the release binary: what users run serves, stores and stops cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_stores_webhooks_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (id, out) =
        add_integration_cli(dir.path(), &["--name", "shop", "--webhook-secret", SECRET]);
    assert!(out.contains(&format!("/webhooks/stripe/{id}")), "{out}");
    assert!(out.contains("stripe listen --forward-to"), "{out}");

    let Spawned { mut child, addr } = spawn_serve_with(&release_binary(), dir.path(), &[]);
    let url = format!("http://{addr}/webhooks/stripe/{id}");
    let body = fixture("invoice.paid.json");
    let response = reqwest::Client::new()
        .post(&url)
        .header("Stripe-Signature", sign_now(&body, SECRET))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let health = format!("http://{addr}/healthz");
    let (ok, out, _) = run(mmc(dir.path(), &["healthcheck", "--url", &health]));
    assert!(ok && out.contains("schema_version"), "{out}");

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");

    let (ok, _, err) = run(mmc(
        dir.path(),
        &["healthcheck", "--url", &health, "--timeout", "2"],
    ));
    assert!(!ok && err.contains("unhealthy"), "{err}");

    // The event survived the process: the default database is in the working directory.
    let conn = mailmycustomer::db::open(
        &mailmycustomer::db::Options::at(&dir.path().join("mailmycustomer.db"))
            .unwrap()
            .with_busy_timeout(Duration::from_secs(1)),
    )
    .unwrap();
    assert_eq!(
        mailmycustomer::db::events::count(&conn, Some(&id)).unwrap(),
        1
    );
}

/// systemd may stop the server the moment it starts: a SIGTERM right after the "serving" line
/// is a clean stop, not the signal's default action (which killed the process, exit by signal).
#[test]
fn a_sigterm_right_after_start_is_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..5 {
        let Spawned { mut child, .. } = spawn_serve(dir.path(), &[]);
        // SAFETY: kill(2) on our own child, which has not been waited for.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
}

#[test]
fn init_config_check_and_dump() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, example, _) = run(mmc(dir.path(), &["init-config"]));
    assert!(ok);
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml"))
            .unwrap();
    assert_eq!(example, shipped);

    let file = dir.path().join("config.toml");
    std::fs::write(&file, &example).unwrap();
    let file = file.to_str().unwrap();
    let (ok, out, err) = run(mmc(dir.path(), &["config", "check", "--config", file]));
    assert!(ok, "{out}{err}");

    let (ok, out, _) = run(mmc(dir.path(), &["config", "dump", "--config", file])
        .env("MMC_SERVER__PUBLIC_URL", "https://mail.example.com"));
    assert!(ok);
    assert!(
        out.contains("public_url = \"https://mail.example.com\""),
        "{out}"
    );

    std::fs::write(
        dir.path().join("bad.toml"),
        "[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n",
    )
    .unwrap();
    let (ok, _, err) = run(mmc(
        dir.path(),
        &["config", "check", "--config", "bad.toml"],
    ));
    assert!(!ok && err.contains("port"), "{err}");

    let (ok, _, err) = run(mmc(dir.path(), &["config", "check"]).env("MMC_SERVER__LISTN", "x"));
    assert!(!ok && err.contains("MMC_SERVER__LISTN"), "{err}");

    let (ok, _, err) = run(mmc(dir.path(), &["serve", "--config", "missing.toml"]));
    assert!(!ok && err.contains("missing.toml"), "{err}");
}

#[test]
fn integrations_are_listed_redacted_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec_0123456789abcdefVERYSECRET";
    let key = "rk_test_51ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let (id, _) = add_integration_cli(
        dir.path(),
        &[
            "--name",
            "shop",
            "--webhook-secret",
            secret,
            "--api-key",
            key,
            "--account",
            "acct_123",
        ],
    );

    let (ok, out, _) = run(mmc(dir.path(), &["integration", "list"]));
    assert!(ok);
    assert!(
        out.contains(&id) && out.contains("shop") && out.contains("acct_123"),
        "{out}"
    );
    assert!(
        out.contains("whsec_…CRET") && out.contains("rk_…WXYZ"),
        "{out}"
    );
    assert!(
        !out.contains(secret) && !out.contains(key),
        "secret printed: {out}"
    );

    let (ok, _, err) = run(mmc(
        dir.path(),
        &[
            "integration",
            "add",
            "--name",
            "shop",
            "--webhook-secret",
            secret,
        ],
    ));
    assert!(
        !ok && err.contains("--name: an integration named \"shop\" already exists"),
        "{err}"
    );
    let (ok, _, err) = run(mmc(
        dir.path(),
        &[
            "integration",
            "add",
            "--name",
            "x",
            "--webhook-secret",
            "sk_live_oops",
        ],
    ));
    assert!(
        !ok && err.contains("--webhook-secret: the webhook signing secret starts with whsec_"),
        "{err}"
    );
    let (ok, _, err) = run(mmc(
        dir.path(),
        &[
            "integration",
            "add",
            "--name",
            "x",
            "--webhook-secret",
            secret,
            "--api-key",
            "pk_live_123",
        ],
    ));
    assert!(
        !ok && err.contains("--api-key: this is a publishable key"),
        "{err}"
    );

    let (ok, out, _) = run(mmc(dir.path(), &["integration", "remove", &id]));
    assert!(
        ok && out.contains(&format!("disconnected integration {id}")),
        "{out}"
    );
    let (ok, out, err) = run(mmc(dir.path(), &["integration", "remove", &id, "--erase"]));
    assert!(
        ok && out.contains(&format!("erased integration {id}")),
        "{err}"
    );
    let (ok, _, err) = run(mmc(dir.path(), &["integration", "remove", &id]));
    assert!(!ok && err.contains("no integration"), "{err}");
    let (ok, out, _) = run(mmc(dir.path(), &["integration", "list"]));
    assert!(ok && out.contains("no integrations"), "{out}");
}

#[test]
fn a_secret_can_come_from_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = mmc(
        dir.path(),
        &[
            "integration",
            "add",
            "--name",
            "piped",
            "--webhook-secret",
            "-",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"whsec_from_stdin_1234\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let (_, list, _) = run(mmc(dir.path(), &["integration", "list"]));
    assert!(list.contains("whsec_…1234"), "{list}");
}

#[test]
fn migrate_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, _) = run(mmc(dir.path(), &["migrate", "--database", "data/state.db"]));
    let latest = mailmycustomer::db::latest_embedded_version();
    assert!(latest >= 2);
    assert!(
        ok && out.contains(&format!("schema version {latest}")),
        "{out}"
    );
    assert!(dir.path().join("data/state.db").exists());

    let (ok, out, _) = run(mmc(dir.path(), &["--help"]));
    assert!(ok);
    for command in [
        "serve",
        "init-config",
        "config",
        "migrate",
        "healthcheck",
        "integration",
    ] {
        assert!(out.contains(command), "--help lacks {command}: {out}");
    }
}

#[test]
fn templates_are_checked_on_save_listed_exported_and_imported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("bad.html"),
        "<p>Hello</p>\n<p>{{ customer.nmae }}</p>\n",
    )
    .unwrap();
    let (ok, _, err) = run(mmc(
        d,
        &[
            "template",
            "set",
            "--trigger",
            "payment_failed",
            "--subject",
            "Oops",
            "--html-file",
            "bad.html",
        ],
    ));
    assert!(!ok, "an undefined variable must be refused");
    assert!(
        err.contains("--html-file: HTML body, line 2") && err.contains("undefined"),
        "{err}"
    );

    let (ok, _, err) = run(mmc(
        d,
        &[
            "template",
            "set",
            "--trigger",
            "payment_faild",
            "--subject",
            "x",
            "--html-file",
            "bad.html",
        ],
    ));
    assert!(
        !ok && err.contains("payment_failed"),
        "unknown trigger names the valid ones: {err}"
    );

    std::fs::write(
        d.join("good.html"),
        "<p>Hi {{ name }}, {{ failReason }} ({{ amount }})</p>",
    )
    .unwrap();
    let (ok, out, err) = run(mmc(
        d,
        &[
            "template",
            "set",
            "--trigger",
            "payment_failed",
            "--product",
            "prod_gold",
            "--subject",
            "Payment problem, {{ customer.name }}",
            "--html-file",
            "good.html",
        ],
    ));
    assert!(ok, "{err}");
    let id: i64 = out.split_whitespace().nth(2).unwrap().parse().unwrap();

    let (ok, out, _) = run(mmc(d, &["template", "list"]));
    assert!(ok);
    assert_eq!(
        out.lines().count(),
        1 + 7 + 1,
        "header, 7 built-ins, ours: {out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with(&format!("{id} "))
            && l.contains("prod_gold")
            && l.contains("Payment problem")),
        "{out}"
    );

    let (ok, out, _) = run(mmc(d, &["template", "show", &id.to_string()]));
    assert!(ok);
    assert!(
        out.contains("failure.reason")
            && out.contains("Hi Jenny Rosen, Your card was declined. ($20.00)"),
        "{out}"
    );

    let (ok, out, _) = run(mmc(d, &["template", "export", "exported"]));
    assert!(ok && out.contains("exported 8"), "{out}");
    let file = d.join("exported/payment_failed.prod_gold.any-plan.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("{{ failReason }}") && text.contains("prod_gold"),
        "{text}"
    );

    // An import is all or nothing: one broken file and nothing changes.
    std::fs::write(
        &file,
        text.replace("{{ failReason }}", "{{ fail_reason }}")
            .replace("Payment problem", "Changed"),
    )
    .unwrap();
    let (ok, _, err) = run(mmc(d, &["template", "import", "exported"]));
    assert!(
        !ok && err.contains("payment_failed.prod_gold.any-plan.toml")
            && err.contains("nothing imported"),
        "{err}"
    );
    let (_, out, _) = run(mmc(d, &["template", "list"]));
    assert!(
        out.contains("Payment problem") && !out.contains("Changed"),
        "{out}"
    );

    std::fs::write(&file, text.replace("Payment problem", "Changed")).unwrap();
    let (ok, out, err) = run(mmc(d, &["template", "import", "exported"]));
    assert!(ok && out.contains("imported 8"), "{out}{err}");
    let (_, out, _) = run(mmc(d, &["template", "list"]));
    assert!(
        out.contains("Changed, {{ customer.name }}") && !out.contains("Payment problem"),
        "{out}"
    );

    let (ok, _, _) = run(mmc(d, &["template", "disable", &id.to_string()]));
    assert!(ok);
    let (_, out, _) = run(mmc(d, &["template", "list"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("{id} ")) && l.contains(" no ")),
        "{out}"
    );
    let (ok, _, _) = run(mmc(d, &["template", "remove", &id.to_string()]));
    assert!(ok);
    let (ok, _, err) = run(mmc(d, &["template", "remove", &id.to_string()]));
    assert!(!ok && err.contains("no template"), "{err}");
}

#[test]
fn preview_shows_the_email_an_event_file_would_send() {
    let dir = tempfile::tempdir().unwrap();
    let event = crate::support::fixtures_dir().join("events/invoice.paid.json");
    let (ok, out, err) = run(mmc(
        dir.path(),
        &["preview", "--event", event.to_str().unwrap()],
    ));
    assert!(ok, "{err}");
    assert!(out.contains("trigger: payment_received"), "{out}");
    assert!(
        out.contains("to: Jenny Rosen <jenny.rosen@example.com>"),
        "{out}"
    );
    assert!(
        out.contains("subject: Payment received: $20.00, thank you"),
        "{out}"
    );
    assert!(!out.contains("<html"), "HTML only with --html");

    let ignored = crate::support::fixtures_dir()
        .join("events/customer.subscription.updated.cancel_at_period_end.json");
    let (ok, out, _) = run(mmc(
        dir.path(),
        &["preview", "--event", ignored.to_str().unwrap()],
    ));
    assert!(
        ok && out.contains("no email: customer.subscription.updated"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn preview_with_an_integration_looks_up_what_the_event_lacks() {
    let fake = crate::fake_stripe::FakeStripe::start().await;
    fake.customer(
        "cus_QXg1o8vcGmoR32",
        Some("jenny@rosen.example"),
        Some("Jenny R."),
    );
    fake.product("prod_QXg1hqf4jFNsqG", "Sock club");
    let dir = tempfile::tempdir().unwrap();
    let (id, _) = add_integration_cli(
        dir.path(),
        &[
            "--name",
            "Sock shop",
            "--webhook-secret",
            SECRET,
            "--api-key",
            "rk_test_51SockShop0000000",
        ],
    );
    let event = crate::support::fixtures_dir().join("events/customer.subscription.created.json");
    let dir_path = dir.path().to_owned();
    let base = fake.base_url.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        run(mmc(
            &dir_path,
            &[
                "preview",
                "--event",
                event.to_str().unwrap(),
                "--integration",
                &id,
                "--html",
            ],
        )
        .env("MMC_STRIPE__API_BASE", base))
    })
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    assert!(out.contains("to: Jenny R. <jenny@rosen.example>"), "{out}");
    assert!(out.contains("subject: Welcome to Sock club"), "{out}");
    assert!(out.contains("Sock shop") && out.contains("<html"), "{out}");
    assert_eq!(fake.count("/v1/customers/cus_QXg1o8vcGmoR32"), 1);
}

/// Issue 10: a value the service layer refuses is reported with the flag that gave it, so the
/// message says what to change on the command line; a missing id says what was looked for.
#[test]
fn a_refused_value_names_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ok.html"), "<p>Hi {{ customer.name }}</p>").unwrap();
    std::fs::write(d.join("bad.txt"), "Hi {{ customer.nmae }}").unwrap();
    let set = |subject: &str, text_file: Option<&str>| {
        let mut args = vec![
            "template",
            "set",
            "--trigger",
            "payment_failed",
            "--subject",
            subject,
            "--html-file",
            "ok.html",
        ];
        args.extend(text_file.map(|f| ["--text-file", f]).into_iter().flatten());
        run(mmc(d, &args))
    };
    let (ok, _, err) = set("  ", None);
    assert!(!ok && err.contains("--subject: subject: is empty"), "{err}");
    let (ok, _, err) = set("Hello", Some("bad.txt"));
    assert!(
        !ok && err.contains("--text-file: text body, line 1") && err.contains("customer.nmae"),
        "{err}"
    );
    let (ok, _, err) = set("Hello", Some("missing.txt"));
    assert!(
        !ok && err.contains("--text-file: reading missing.txt"),
        "{err}"
    );

    std::fs::write(d.join("event.json"), "{ not json").unwrap();
    let (ok, _, err) = run(mmc(d, &["preview", "--event", "event.json"]));
    assert!(
        !ok && err.contains("--event: this is not a Stripe event"),
        "{err}"
    );
    let event = crate::support::fixtures_dir().join("events/invoice.paid.json");
    let (ok, _, err) = run(mmc(
        d,
        &[
            "preview",
            "--event",
            event.to_str().unwrap(),
            "--integration",
            "int_0000000000000000",
        ],
    ));
    assert!(
        !ok && err.contains("no integration \"int_0000000000000000\""),
        "{err}"
    );

    let (ok, _, err) = run(mmc(d, &["send-test-email", "--to", "not-an-address"]));
    assert!(
        !ok && err.contains("--to: \"not-an-address\" is not an email address"),
        "{err}"
    );
    let (ok, _, err) = run(mmc(d, &["template", "enable", "9999"]));
    assert!(!ok && err.contains("no template \"9999\""), "{err}");
    let (ok, _, err) = run(mmc(d, &["log", "show", "9999"]));
    assert!(!ok && err.contains("no delivery \"9999\""), "{err}");
}

/// Issue 10: `log resend` from the CLI queues a new delivery through the service layer (a
/// running server sends it; `delivery::log_…` covers that), keeps the old one, and refuses a
/// skipped delivery, which has no email to send, saying why it was skipped.
#[test]
fn log_resend_queues_a_copy_and_refuses_a_skipped_delivery() {
    use mailmycustomer::db::deliveries::{self, Inserted, NewDelivery, Status};
    use mailmycustomer::trigger::TriggerKind;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (integration, _) = add_integration_cli(d, &["--name", "shop", "--webhook-secret", SECRET]);
    let conn = mailmycustomer::db::open(
        &mailmycustomer::db::Options::at(&d.join("mailmycustomer.db")).unwrap(),
    )
    .unwrap();
    let insert = |key: &str, status: Status, email: bool| {
        let new = NewDelivery {
            recipient: email.then(|| "jenny.rosen@example.com".to_owned()),
            subject: email.then(|| "Your payment failed".to_owned()),
            html: email.then(|| "<p>Sorry</p>".to_owned()),
            status,
            note: Some(match email {
                true => "550 5.1.1 mailbox unavailable".to_owned(),
                false => "no template for payment_failed × any product × any plan".to_owned(),
            }),
            ..NewDelivery::new(&integration, "evt_1", key, TriggerKind::PaymentFailed)
        };
        match deliveries::insert(&conn, &new, 1_000).unwrap() {
            Inserted::New(id) => id,
            other => panic!("{other:?}"),
        }
    };
    let failed = insert("invoice:in_1:failed:attempt_1", Status::Failed, true);
    let skipped = insert("invoice:in_2:failed:attempt_1", Status::Skipped, false);

    let (ok, out, err) = run(mmc(d, &["log", "resend", &failed.to_string()]));
    assert!(ok, "{err}");
    let new: i64 = out
        .strip_prefix("queued delivery ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let copy = deliveries::get(&conn, new).unwrap().unwrap();
    assert_eq!(
        (copy.status, copy.resend_of, copy.trigger),
        (Status::Queued, Some(failed), TriggerKind::PaymentFailed)
    );
    assert_eq!(copy.subject.as_deref(), Some("Your payment failed"));
    let original = deliveries::get(&conn, failed).unwrap().unwrap();
    assert_eq!(
        original.status,
        Status::Failed,
        "the original stays as it was"
    );

    let (ok, out, _) = run(mmc(d, &["log", "show", &new.to_string()]));
    assert!(
        ok && out.contains(&format!("delivery {new}: queued"))
            && out.contains(&format!("resend of:    {failed}")),
        "{out}"
    );

    let (ok, _, err) = run(mmc(d, &["log", "resend", &skipped.to_string()]));
    assert!(
        !ok && err.contains("was skipped (no template for payment_failed"),
        "{err}"
    );
    let (ok, _, err) = run(mmc(d, &["log", "resend", "9999"]));
    assert!(!ok && err.contains("no delivery \"9999\""), "{err}");
}
