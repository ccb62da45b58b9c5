//! Integrations, as a merchant changes them: the pages over real HTTP against the in-process
//! server (list, add, edit, remove), and `integration edit` on the real binary.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use mailmycustomer::db::integrations;

use crate::cli::{add_integration_cli, mmc, run};
use crate::support::*;

/// The integration as the database holds it now.
fn stored(config: &mailmycustomer::Config, id: &str) -> integrations::Integration {
    let conn = mailmycustomer::db::open(&config.database.path, Duration::from_secs(5)).unwrap();
    integrations::get(&conn, id)
        .unwrap()
        .expect("the integration exists")
}

/// `integration edit` changes each part through the service layer, keeps the id, reads secrets
/// from standard input with `-`, and refuses what `add` refuses.
#[tokio::test(flavor = "multi_thread")]
async fn integration_edit_keeps_the_id_and_changes_what_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let (id, _) = add_integration_cli(
        dir.path(),
        &[
            "--name",
            "shop",
            "--webhook-secret",
            SECRET,
            "--api-key",
            "rk_test_0000OLDKEY",
        ],
    );
    let new_secret = "whsec_rolled_in_stripe_NEWS";
    let key = "rk_test_51ABCDEFGHIJKLMNOPQRSTUVWXYZ";

    let mut child = mmc(
        dir.path(),
        &[
            "integration",
            "edit",
            &id,
            "--name",
            "Rosen Goods",
            "--webhook-secret",
            "-",
            "--api-key",
            key,
            "--from-address",
            "billing@rosen.example",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    writeln!(child.stdin.take().unwrap(), "{new_secret}").unwrap();
    let output = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.contains(&id) && out.contains("Rosen Goods"), "{out}");
    assert!(
        out.contains("whsec_…NEWS") && out.contains("rk_…WXYZ"),
        "{out}"
    );
    assert!(
        !out.contains(new_secret) && !out.contains(key),
        "secret printed: {out}"
    );
    assert!(out.contains(&format!("/webhooks/stripe/{id}")), "{out}");

    // The CLI's database: the default file in its working directory, as the server's here.
    let mut config = test_config(dir.path());
    // The key is made up: lookups the processor tries meet a closed port at once.
    config.stripe.api_base = "http://127.0.0.1:9".into();
    let now = stored(&config, &id);
    assert_eq!(
        (
            now.name.as_str(),
            now.webhook_secret.expose(),
            now.api_key.as_ref().map(|k| k.expose())
        ),
        ("Rosen Goods", new_secret, Some(key))
    );
    assert_eq!(now.from_address.as_deref(), Some("billing@rosen.example"));

    // The server checks webhooks against the new secret: same URL, old secret refused.
    let server = TestServer::start_with(config.clone(), id.clone()).await;
    let body = distinct_invoice_paid("edit_cli", 1);
    let signed_new = sign_now(&body, new_secret);
    server
        .post(&server.webhook_url(), body.clone(), Some(signed_new))
        .await
        .assert_stored(false);
    let old = distinct_invoice_paid("edit_cli", 2);
    let signed_old = sign_now(&old, SECRET);
    let refused = server
        .post(&server.webhook_url(), old, Some(signed_old))
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    server.stop().await;

    // Removing the key and going back to the default sender.
    let (ok, out, err) = run(mmc(
        dir.path(),
        &[
            "integration",
            "edit",
            &id,
            "--remove-api-key",
            "--from-address",
            "",
        ],
    ));
    assert!(ok, "{err}");
    assert!(
        out.contains("api_key=-") && out.contains("from=(smtp.from_address)"),
        "{out}"
    );
    let now = stored(&config, &id);
    assert_eq!((now.api_key, now.from_address), (None, None));

    // Refusals name the flag's problem; nothing changes.
    for (args, says) in [
        (vec!["--webhook-secret", "sk_test_not_a_secret"], "whsec_"),
        (vec!["--api-key", "pk_live_123456"], "publishable"),
        (
            vec!["--from-address", "not an address"],
            "not an email address",
        ),
        (
            vec!["--api-key", "rk_test_x", "--remove-api-key"],
            "cannot be used with",
        ),
        (vec![], "required"),
    ] {
        let mut all = vec!["integration", "edit", id.as_str()];
        all.extend(args);
        let (ok, _, err) = run(mmc(dir.path(), &all));
        assert!(!ok && err.contains(says), "{all:?}: {err}");
    }
    let (ok, _, err) = run(mmc(
        dir.path(),
        &["integration", "edit", "int_0000000000000000", "--name", "x"],
    ));
    assert!(!ok && err.contains("no integration"), "{err}");
    assert_eq!(stored(&config, &id).name, "Rosen Goods");
}
