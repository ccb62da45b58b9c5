//! `mailmycustomer doctor` on the real binary (issue 14, "Metrics and health"): a working setup
//! (smtp-sink, the fake Stripe with an integration connected by key, a good config) passes
//! while a server runs on the same database; then each part is broken alone and its line fails
//! with its fix: the relay's port, the SMTP password, the key, a permission, the endpoint, the
//! public URL, the clock, the seal key, the config, a damaged file; DKIM is looked up only
//! where a resolver answers.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::{mmc, run};
use crate::connect_key::{KEY, PUBLIC_URL};
use crate::fake_stripe::FakeStripe;
use crate::sink::{free_port, Sink};
use crate::smtp_server::ScriptedServer;
use crate::support::*;

/// A database with an integration connected by key to the fake Stripe, a relay, a config file
/// naming both, and a server running on it all.
struct Setup {
    dir: tempfile::TempDir,
    fake: FakeStripe,
    sink: Sink,
    server: Option<TestServer>,
    config_file: PathBuf,
    integration: String,
    endpoint: String,
}

impl Setup {
    async fn working() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeStripe::start().await;
        let sink = Sink::start();
        let mut config = test_config(dir.path());
        config.stripe.api_base = fake.base_url.clone();
        config.server.public_url = PUBLIC_URL.into();
        relay_to(&mut config, sink.port);
        let config_file = dir.path().join("config.toml");
        std::fs::write(
            &config_file,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"{PUBLIC_URL}\"\n\
                 [database]\npath = \"{}\"\n\
                 [stripe]\napi_base = \"{}\"\n\
                 [smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
                 from_address = \"billing@rosen.example\"\ntimeout_secs = 5\n",
                config.database.path.display(),
                fake.base_url,
                sink.port
            ),
        )
        .unwrap();
        let server = TestServer::start_with(config, "int_0000000000000000".into()).await;

        let mut setup = Setup {
            dir,
            fake,
            sink,
            server: Some(server),
            config_file,
            integration: String::new(),
            endpoint: String::new(),
        };
        let (ok, out, err) = setup
            .mmc(
                &["integration", "connect", "--name", "shop", "--api-key", KEY],
                &[],
            )
            .await;
        assert!(ok, "{err}");
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no {name} in {out}"))
                .to_owned()
        };
        setup.integration = field("id");
        setup.endpoint = field("endpoint_id");
        setup
    }

    /// Runs the binary with this setup's config file and `env` on top.
    async fn mmc(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        let mut cmd: Command = mmc(
            self.dir.path(),
            &[&["--config", self.config_file.to_str().unwrap()], args].concat(),
        );
        for (key, value) in env {
            cmd.env(key, value);
        }
        tokio::task::spawn_blocking(move || run(cmd)).await.unwrap()
    }

    /// `doctor`'s exit status and what it printed.
    async fn doctor(&self, env: &[(&str, &str)]) -> Doctor {
        let (passed, out, err) = self.mmc(&["doctor"], env).await;
        Doctor { passed, out, err }
    }
}

struct Doctor {
    passed: bool,
    out: String,
    err: String,
}

impl Doctor {
    /// The line of check `name` ("smtp", "stripe shop (int_…)"), with the fix line under it
    /// when there is one.
    fn line(&self, name: &str) -> String {
        let mut lines = self.out.lines();
        while let Some(line) = lines.next() {
            if line
                .get(6..)
                .is_some_and(|l| l.starts_with(&format!("{name}: ")))
            {
                let mut found = line.to_owned();
                if let Some(fix) = lines.next().filter(|l| l.starts_with("      fix: ")) {
                    found.push('\n');
                    found.push_str(fix);
                }
                return found;
            }
        }
        panic!("no {name:?} line in:\n{}\n{}", self.out, self.err);
    }

    fn failed(&self) -> Vec<&str> {
        self.out.lines().filter(|l| l.starts_with("FAIL")).collect()
    }

    /// Exits 1, with `name`'s the only failing line, saying each of `said`.
    fn fails_only(&self, name: &str, said: &[&str]) {
        assert!(!self.passed, "doctor passed:\n{}", self.out);
        let line = self.line(name);
        assert!(line.starts_with("FAIL"), "{line}\n---\n{}", self.out);
        for text in said {
            assert!(line.contains(text), "{text:?} missing from:\n{line}");
        }
        assert_eq!(
            self.failed().len(),
            1,
            "more than {name} failed:\n{}",
            self.out
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_working_setup_passes_every_check_while_the_server_runs() {
    let setup = Setup::working().await;
    let requests_before = setup.fake.requests().len();
    let doctor = setup.doctor(&[]).await;
    assert!(doctor.passed, "{}\n{}", doctor.out, doctor.err);

    let stripe = format!("stripe shop ({})", setup.integration);
    for name in [
        "config",
        "database",
        "database key",
        "database integrity",
        "database schema",
        "database wal",
        "database disk",
        "smtp",
        &stripe,
        "public url",
        "clock",
    ] {
        assert!(doctor.line(name).starts_with("ok  "), "{}", doctor.out);
    }
    assert!(doctor.line("database integrity").contains("quick_check"));
    assert!(doctor.line(&stripe).contains(&setup.endpoint));
    assert!(doctor.line(&stripe).contains("is enabled"));
    assert!(doctor
        .line("dkim")
        .starts_with("skip  dkim: not configured"));
    assert!(
        doctor.out.ends_with("11 ok, 0 failed, 1 skipped\n"),
        "{}",
        doctor.out
    );
    assert!(!doctor.out.contains(KEY), "the key leaked: {}", doctor.out);

    // Stripe was only read; the relay got no message. On a scripted relay, the whole
    // conversation is EHLO then QUIT.
    assert!(setup.sink.messages().is_empty());
    let asked: Vec<_> = setup.fake.requests()[requests_before..].to_vec();
    assert!(asked.iter().any(|r| r.path == "/v1/account"), "{asked:?}");
    assert!(
        asked
            .iter()
            .any(|r| r.path == format!("/v1/webhook_endpoints/{}", setup.endpoint)),
        "{asked:?}"
    );
    assert!(asked.iter().all(|r| r.method == "GET"), "{asked:?}");

    let relay = ScriptedServer::start(&[]).await;
    let port = relay.port().to_string();
    let doctor = setup.doctor(&[("MMC_SMTP__PORT", &port)]).await;
    assert!(doctor.passed, "{}", doctor.out);
    assert_eq!(relay.log().commands, ["EHLO rosen.example", "QUIT"]);

    // The server went on serving throughout: doctor took no lock it needs.
    let server = setup.server.as_ref().unwrap();
    let ready = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_broken_part_fails_alone_with_its_fix() {
    let setup = Setup::working().await;
    let stripe = format!("stripe shop ({})", setup.integration);

    // The relay's port closed.
    let closed = free_port().to_string();
    setup
        .doctor(&[("MMC_SMTP__PORT", &closed)])
        .await
        .fails_only(
            "smtp",
            &["connection refused", "fix: nothing listens on", "smtp.port"],
        );

    // A relay that demands AUTH refuses the password; no MAIL is ever sent.
    let relay = ScriptedServer::start(&["AUTH PLAIN"]).await;
    relay.reply_text("AUTH", "535 5.7.8 Error: authentication failed");
    let port = relay.port().to_string();
    setup
        .doctor(&[
            ("MMC_SMTP__PORT", &port),
            ("MMC_SMTP__USERNAME", "shop"),
            ("MMC_SMTP__PASSWORD", "wrong"),
        ])
        .await
        .fails_only("smtp", &["535", "fix: check smtp.username / smtp.password"]);
    let log = relay.log();
    assert_eq!(log.verbs("AUTH").len(), 1, "{log:?}");
    assert!(
        log.verbs("MAIL").is_empty() && log.verbs("QUIT").is_empty(),
        "{log:?}"
    );

    // A key Stripe refuses; the clock then has no key to ask with, and says so.
    setup.fake.fail_next("/v1/account", 401, 1);
    let doctor = setup.doctor(&[]).await;
    doctor.fails_only(&stripe, &["Stripe refuses the key", "Change the API key"]);
    assert!(doctor
        .line("clock")
        .starts_with("skip  clock: no API key to ask Stripe the time"));

    // A permission taken away from the key.
    setup.fake.restrict_key(KEY, &["rak_product_read"]);
    setup.doctor(&[]).await.fails_only(
        &stripe,
        &["Read on Products", "rak_product_read", "grant it"],
    );
    setup.fake.restrict_key(KEY, &[]);

    // The endpoint disabled on Stripe, then gone.
    setup.fake.set_endpoint_status(&setup.endpoint, "disabled");
    setup
        .doctor(&[])
        .await
        .fails_only(&stripe, &["is disabled", "fix: Stripe disabled", "Enable"]);
    setup.fake.set_endpoint_status(&setup.endpoint, "enabled");
    setup.fake.fail_next("/v1/webhook_endpoints/", 404, 1);
    setup
        .doctor(&[])
        .await
        .fails_only(&stripe, &["is deleted", "paste the API key again"]);

    // A loopback public URL.
    setup
        .doctor(&[("MMC_SERVER__PUBLIC_URL", "http://127.0.0.1:8080")])
        .await
        .fails_only(
            "public url",
            &["loopback address", "fix: set server.public_url"],
        );

    // Stripe's clock 10 minutes ahead: this one is behind, past half the 300 s tolerance.
    setup.fake.clock_offset(600);
    let doctor = setup.doctor(&[]).await;
    doctor.fails_only(
        "clock",
        &["behind Stripe's", "webhook_tolerance_secs = 300"],
    );
    let line = doctor.line("clock");
    let seconds: i64 = line["FAIL  clock: this clock is ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((598..=602).contains(&seconds), "{line}");
    setup.fake.clock_offset(0);

    // Another seal key than the database's: named where it came from.
    let other_key = "ab".repeat(32);
    let doctor = setup
        .doctor(&[("MMC_DATABASE__SECRET_KEY", &other_key)])
        .await;
    doctor.fails_only(
        "database key",
        &["MMC_DATABASE__SECRET_KEY", "does not open the secrets"],
    );
    // What needs no key is still checked; what does is not read.
    assert!(doctor.line("database integrity").starts_with("ok  "));
    assert!(doctor.line("stripe").contains("could not be read"));

    // A value no layer may hold, named with the layer that set it.
    setup
        .doctor(&[("MMC_SERVER__LISTEN", "nowhere")])
        .await
        .fails_only(
            "config",
            &[
                "server.listen",
                "fix: change server.listen in the environment variable MMC_SERVER__LISTEN",
            ],
        );

    // After all that, the same setup passes again.
    let doctor = setup.doctor(&[]).await;
    assert!(doctor.passed, "{}", doctor.out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_database_file_fails_with_restore_named() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("mailmycustomer.db");
    let (ok, _, err) = run(mmc(dir.path(), &["migrate"]));
    assert!(ok, "{err}");

    // Three pages in the middle overwritten: the file opens, quick_check finds the damage.
    let mut bytes = std::fs::read(&database).unwrap();
    let page = 4096;
    let middle = bytes.len() / page / 2;
    assert!(middle > 8, "{} bytes", bytes.len());
    for b in &mut bytes[middle * page..(middle + 3) * page] {
        *b = 0x5a;
    }
    std::fs::write(&database, &bytes).unwrap();
    let (passed, out, _) = run(mmc(dir.path(), &["doctor"]));
    assert!(!passed, "{out}");
    let failed: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("FAIL  database"))
        .collect();
    assert_eq!(failed.len(), 1, "{out}");
    assert!(
        failed[0].starts_with("FAIL  database integrity: PRAGMA quick_check: ")
            && !failed[0].contains("\\u{a}"),
        "{out}"
    );
    assert!(
        out.contains("fix: the file is damaged") && out.contains("mailmycustomer restore FILE"),
        "{out}"
    );

    // Not a database at all.
    std::fs::write(&database, vec![0x5a; 3 * page]).unwrap();
    let (passed, out, _) = run(mmc(dir.path(), &["doctor"]));
    assert!(!passed, "{out}");
    assert!(
        out.contains("FAIL  database: cannot read") && out.contains("not a database"),
        "{out}"
    );
    assert!(out.contains("mailmycustomer restore FILE"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dkim_is_looked_up_only_where_a_resolver_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(mmc(dir.path(), &["migrate"]));
    assert!(ok, "{err}");
    let key = dir.path().join("dkim.pem");
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let sink = Sink::start();
    let port = sink.port.to_string();
    let dkim = |path: &Path| {
        let (_, out, _) = run(mmc(dir.path(), &["doctor"])
            .env("MMC_SMTP__HOST", "127.0.0.1")
            .env("MMC_SMTP__PORT", &port)
            .env("MMC_SMTP__SECURITY", "none")
            .env("MMC_SMTP__FROM_ADDRESS", "billing@rosen.example")
            .env("MMC_SMTP__DKIM_KEY_PATH", path)
            .env("MMC_SMTP__DKIM_SELECTOR", "mmc")
            .env("MMC_SMTP__DKIM_DOMAIN", "rosen.example"));
        out.lines()
            .find(|l| l.get(6..).is_some_and(|l| l.starts_with("dkim: ")))
            .unwrap_or_else(|| panic!("no dkim line: {out}"))
            .to_owned()
    };

    // rosen.example is reserved: no resolver holds a record for it. Without a resolver the
    // lookup is skipped; with one that answers, the missing record fails, naming it; one that
    // does not answer in time is a skip too. Never "ok".
    let line = dkim(&key);
    let has_nameserver = std::fs::read_to_string("/etc/resolv.conf")
        .is_ok_and(|t| t.lines().any(|l| l.starts_with("nameserver")));
    if has_nameserver {
        assert!(
            (line.starts_with("FAIL") || line.starts_with("skip"))
                && line.contains("mmc._domainkey.rosen.example"),
            "{line}"
        );
    } else {
        assert!(
            line.starts_with("skip") && line.contains("no DNS resolver here"),
            "{line}"
        );
    }

    // A key that does not read fails whatever the DNS, naming the file.
    let missing = dir.path().join("missing.pem");
    let line = dkim(&missing);
    assert!(
        line.starts_with("FAIL  dkim: DKIM key") && line.contains("missing.pem"),
        "{line}"
    );
}
