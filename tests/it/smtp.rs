//! The SMTP transport against a real Postfix `smtp-sink`, a scripted server for faults, and
//! `openssl s_server` for TLS. Received mail is parsed with mail-parser and DKIM signatures are
//! checked with mail-auth's verifier against the test's own public key.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use mail_parser::{MessageParser, MimeHeaders};
use mailmycustomer::config::{SmtpConfig, SmtpSecurity};
use mailmycustomer::outbox::smtp::{
    send_test_email, Mailer, OutgoingEmail, SendError, SmtpConnection, TEST_SUBJECT,
};

use crate::sink::{free_port, Sink};
use crate::smtp_server::{Reply, ScriptedServer, TlsTerminator};

const SUBJECT: &str = "Café — paiement reçu ✓";
const FROM_NAME: &str = "Boutique Élodie";
const TO_NAME: &str = "Zoë Müller-Šťastná";

fn config(port: u16, security: SmtpSecurity) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security,
        from_address: "billing@shop.example".into(),
        from_name: FROM_NAME.into(),
        timeout_secs: 5,
        ..SmtpConfig::default()
    }
}

fn text_body(n: usize) -> String {
    format!(
        "Bonjour Zoë,\n\nNous avons bien reçu votre paiement n°{n} de 42,00 € — merci !\n\
         .a line that starts with a dot\n{}\nÀ bientôt ✓\n",
        "long line ".repeat(40).trim_end()
    )
}

fn html_body(n: usize) -> String {
    format!(
        "<html><body><p>Bonjour Zoë,</p><p>Paiement n°{n} reçu : 42,00 €.</p><p>{}</p></body></html>",
        "très long paragraphe ".repeat(30).trim_end()
    )
}

fn email<'a>(
    id: i64,
    to: &'a str,
    subject: &'a str,
    text: &'a str,
    html: &'a str,
) -> OutgoingEmail<'a> {
    OutgoingEmail {
        delivery_id: id,
        created_at: 1_764_000_000 + id,
        to,
        to_name: Some(TO_NAME),
        from_address: None,
        subject,
        html,
        text,
    }
}

fn crlf_to_lf(text: &str) -> String {
    text.replace("\r\n", "\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn three_messages_over_one_connection_to_smtp_sink() {
    let sink = Sink::start();
    let mut config = config(sink.port, SmtpSecurity::None);
    config.reply_to = "support@shop.example".into();
    config.helo_name = "mmc.shop.example".into();
    let mailer = Mailer::new(&config).unwrap();

    let recipients = ["zoe@example.com", "bob@example.org", "carol@example.net"];
    let subjects: Vec<String> = (0..3).map(|n| format!("{SUBJECT} #{n}")).collect();
    let texts: Vec<String> = (0..3).map(text_body).collect();
    let htmls: Vec<String> = (0..3).map(html_body).collect();
    let emails: Vec<OutgoingEmail> = (0..3)
        .map(|n| {
            email(
                100 + n as i64,
                recipients[n],
                &subjects[n],
                &texts[n],
                &htmls[n],
            )
        })
        .collect();

    let mut connection = mailer.connect().await.unwrap();
    assert!(connection.nodelay(), "TCP_NODELAY must be on");
    let mut ids = Vec::new();
    for e in &emails {
        let id = connection.send(&mailer, e).await.unwrap();
        assert_eq!(id, mailer.message_id(e));
        ids.push(id);
    }
    connection.quit().await;
    // One probe session, then ours: three messages and one QUIT in one session.
    sink.wait_counters("sess=2 quit=1 mesg=3");

    let files = sink.messages();
    assert_eq!(files.len(), 3);
    let mut seen = Vec::new();
    for raw in &files {
        let message = MessageParser::default().parse(raw).unwrap();
        let id = format!("<{}>", message.message_id().unwrap());
        let n = ids
            .iter()
            .position(|i| *i == id)
            .unwrap_or_else(|| panic!("unknown {id}"));
        seen.push(n);
        assert_eq!(
            id,
            format!("<{}.{}@shop.example>", 100 + n, 1_764_000_100 + n)
        );
        assert!(id.ends_with("@shop.example>"));

        let from = message.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some(FROM_NAME));
        assert_eq!(from.address(), Some("billing@shop.example"));
        let to = message.to().unwrap().first().unwrap();
        assert_eq!(to.name(), Some(TO_NAME));
        assert_eq!(to.address(), Some(recipients[n]));
        let reply_to = message.reply_to().unwrap().first().unwrap();
        assert_eq!(reply_to.address(), Some("support@shop.example"));
        assert_eq!(message.subject(), Some(subjects[n].as_str()));
        assert!(message.date().is_some(), "Date header");
        assert_eq!(
            message.header_raw("MIME-Version").map(str::trim),
            Some("1.0")
        );

        let root = message.root_part().content_type().unwrap();
        assert_eq!(
            (root.ctype(), root.subtype()),
            ("multipart", Some("alternative"))
        );
        let text_part = message.part(1).unwrap().content_type().unwrap();
        assert_eq!(
            (text_part.ctype(), text_part.subtype()),
            ("text", Some("plain"))
        );
        assert_eq!(
            text_part
                .attribute("charset")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("utf-8")
        );
        let html_part = message.part(2).unwrap().content_type().unwrap();
        assert_eq!(
            (html_part.ctype(), html_part.subtype()),
            ("text", Some("html"))
        );
        assert_eq!(
            html_part
                .attribute("charset")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("utf-8")
        );
        assert_eq!(crlf_to_lf(&message.body_text(0).unwrap()), texts[n]);
        assert_eq!(crlf_to_lf(&message.body_html(0).unwrap()), htmls[n]);

        // smtp-sink records the envelope and EHLO it saw.
        let head = String::from_utf8_lossy(raw);
        assert!(head.contains("X-Client-Proto: ESMTP"), "{head}");
        assert!(head.contains("X-Helo-Args: mmc.shop.example"), "{head}");
        assert!(
            head.contains("X-Mail-Args: <billing@shop.example>"),
            "{head}"
        );
        assert!(
            head.contains(&format!("X-Rcpt-Args: <{}>", recipients[n])),
            "{head}"
        );
    }
    seen.sort();
    assert_eq!(seen, [0, 1, 2]);
}

/// Issue 8.8: Stripe allows 256-character names; a non-Latin one made a `To:` line of over
/// 1,000 octets, which relays refuse. Every header line must stay within 78 octets (RFC 5322
/// recommends 78 and requires 998), a long name comes back shortened but readable, and a long
/// subject comes back whole.
#[tokio::test(flavor = "multi_thread")]
async fn long_non_latin_names_and_subjects_keep_every_header_line_short() {
    let sink = Sink::start();
    let mut config = config(sink.port, SmtpSecurity::None);
    let long_from = "Магазин Елены Прекрасной ".repeat(11);
    config.from_name = long_from.chars().take(256).collect();
    let mailer = Mailer::new(&config).unwrap();

    let names: Vec<String> = [
        "山田太郎",
        "Ангелина Королёва-Преображенская",
        "محمد بن عبد الله",
        "Zoë 🎉",
        "Jean-Baptiste Emmanuel Zorg de la Fontaine-Montmorency ",
    ]
    .iter()
    .map(|n| n.chars().cycle().take(256).collect())
    .chain(["Zoë Müller".to_owned()])
    .collect();
    let subject: String = "ご注文ありがとうございました。お支払いを確認しました — ".repeat(8);
    let mut connection = mailer.connect().await.unwrap();
    for (n, name) in names.iter().enumerate() {
        let e = OutgoingEmail {
            to_name: Some(name),
            ..email(
                500 + n as i64,
                "zoe@example.com",
                &subject,
                "x\n",
                "<p>x</p>",
            )
        };
        connection.send(&mailer, &e).await.unwrap();
    }
    connection.quit().await;

    let files = sink
        .wait_for(names.len(), std::time::Duration::from_secs(10))
        .await;
    for raw in &files {
        let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
        let head = text.split("\n\n").next().unwrap();
        for line in head.lines() {
            assert!(line.len() <= 78, "{} octets: {line}\n{head}", line.len());
        }
        let message = MessageParser::default().parse(raw).unwrap();
        let n = message.message_id().unwrap().split('.').next().unwrap();
        let name = &names[n.parse::<usize>().unwrap() - 500];
        assert_eq!(message.subject(), Some(subject.trim_end()));
        for (got, wanted) in [
            (message.to().unwrap().first().unwrap(), name.as_str()),
            (message.from().unwrap().first().unwrap(), &config.from_name),
        ] {
            let got_name = got.name().unwrap_or_else(|| panic!("no name in {head}"));
            if wanted.chars().count() <= 12 {
                assert_eq!(got_name, wanted, "a short name is kept whole");
                continue;
            }
            let kept = got_name
                .strip_suffix('…')
                .unwrap_or_else(|| panic!("{got_name:?} is not marked as shortened"));
            assert!(
                kept.chars().count() >= 10 && wanted.starts_with(kept),
                "{got_name:?} is not a readable start of {wanted:?}"
            );
        }
        assert_eq!(
            message.to().unwrap().first().unwrap().address(),
            Some("zoe@example.com")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_sink_rejections_are_classified() {
    // -f RCPT: the sink answers RCPT with 5xx; -r would answer with 4xx.
    let sink = Sink::start_with(free_port(), &["-f", "RCPT"]);
    let mailer = Mailer::new(&config(sink.port, SmtpSecurity::None)).unwrap();
    let mut connection = mailer.connect().await.unwrap();
    let text = text_body(1);
    let html = html_body(1);
    let err = connection
        .send(&mailer, &email(1, "zoe@example.com", SUBJECT, &text, &html))
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    assert!(
        err.message().contains("500 5.3.0 Error: command failed"),
        "{err:?}"
    );
    connection.reset().await.unwrap();
    connection.quit().await;
}

// ---------------------------------------------------------------------------------------------
// Faults, through the scripted server.

async fn send_one(
    mailer: &Mailer,
    connection: &mut SmtpConnection,
    id: i64,
    to: &str,
) -> Result<String, SendError> {
    let text = text_body(id as usize);
    let html = html_body(id as usize);
    connection
        .send(mailer, &email(id, to, SUBJECT, &text, &html))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn rcpt_4xx_is_transient_with_code_and_text() {
    let server = ScriptedServer::start(&[]).await;
    server.reply_text("RCPT", "451 4.3.0 Mailbox temporarily unavailable");
    let mailer = Mailer::new(&config(server.port(), SmtpSecurity::None)).unwrap();
    let mut connection = mailer.connect().await.unwrap();
    let err = send_one(&mailer, &mut connection, 1, "zoe@example.com")
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Transient { .. }), "{err:?}");
    assert_eq!(
        err.message(),
        "RCPT TO rejected: 451 4.3.0 Mailbox temporarily unavailable"
    );
    assert!(server.log().messages.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn rcpt_5xx_is_permanent_with_code_and_text() {
    let server = ScriptedServer::start(&[]).await;
    server.reply_text(
        "RCPT",
        "550 5.1.1 <nobody@example.com>: Recipient address rejected",
    );
    let mailer = Mailer::new(&config(server.port(), SmtpSecurity::None)).unwrap();
    let mut connection = mailer.connect().await.unwrap();
    let err = send_one(&mailer, &mut connection, 1, "nobody@example.com")
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    assert!(
        err.message()
            .contains("550 5.1.1 <nobody@example.com>: Recipient address rejected"),
        "{err:?}"
    );
    assert_eq!(err.hint(mailer.config()), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_4xx_and_reset_the_same_connection_sends() {
    let server = ScriptedServer::start(&[]).await;
    server.reply_text("RCPT", "452 4.5.3 Too many recipients, try later");
    let mailer = Mailer::new(&config(server.port(), SmtpSecurity::None)).unwrap();
    let mut connection = mailer.connect().await.unwrap();
    let err = send_one(&mailer, &mut connection, 1, "zoe@example.com")
        .await
        .unwrap_err();
    assert!(!err.is_permanent());
    connection.reset().await.unwrap();
    let id = send_one(&mailer, &mut connection, 1, "zoe@example.com")
        .await
        .unwrap();
    assert_eq!(id, "<1.1764000001@shop.example>");
    connection.quit().await;

    let log = server.log();
    assert_eq!(log.connections, 1);
    assert_eq!(log.messages.len(), 1);
    let verbs: Vec<&str> = log
        .commands
        .iter()
        .map(|c| c.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        verbs,
        ["EHLO", "MAIL", "RCPT", "RSET", "MAIL", "RCPT", "DATA", "QUIT"]
    );
    assert_eq!(log.verbs("MAIL"), ["MAIL FROM:<billing@shop.example>"; 2]);
    assert_eq!(log.verbs("RCPT"), ["RCPT TO:<zoe@example.com>"; 2]);
    assert_eq!(log.verbs("EHLO"), ["EHLO shop.example"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_after_a_failed_one_resets_by_itself() {
    let server = ScriptedServer::start(&[]).await;
    server.reply_text(".", "554 5.7.1 Message rejected as spam");
    let mailer = Mailer::new(&config(server.port(), SmtpSecurity::None)).unwrap();
    let mut connection = mailer.connect().await.unwrap();
    let err = send_one(&mailer, &mut connection, 1, "zoe@example.com")
        .await
        .unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(
        err.message(),
        "message rejected: 554 5.7.1 Message rejected as spam"
    );
    send_one(&mailer, &mut connection, 2, "zoe@example.com")
        .await
        .unwrap();
    let log = server.log();
    assert_eq!(log.connections, 1);
    assert_eq!(log.verbs("RSET").len(), 1);
    assert_eq!(log.messages.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_refused_is_transient_and_names_host_and_port() {
    let port = free_port();
    let config = config(port, SmtpSecurity::None);
    let mailer = Mailer::new(&config).unwrap();
    let err = mailer.connect().await.unwrap_err();
    assert!(!err.is_permanent());
    assert_eq!(
        err.message(),
        format!("connection refused by 127.0.0.1:{port}")
    );
    assert_eq!(
        err.hint(&config).unwrap(),
        format!("nothing listens on 127.0.0.1:{port}: check smtp.host and smtp.port")
    );

    let (err, hint) = send_test_email(&config, "me@example.com")
        .await
        .unwrap_err();
    assert!(!err.is_permanent());
    assert!(hint.unwrap().contains("check smtp.host and smtp.port"));
}

#[tokio::test(flavor = "multi_thread")]
async fn server_closing_mid_transaction_is_transient_and_ends_the_connection() {
    for (verb, stage) in [("RCPT", "RCPT TO"), ("DATA", "DATA"), (".", "message")] {
        let server = ScriptedServer::start(&[]).await;
        server.reply(verb, Reply::Close);
        let mailer = Mailer::new(&config(server.port(), SmtpSecurity::None)).unwrap();
        let mut connection = mailer.connect().await.unwrap();
        let err = send_one(&mailer, &mut connection, 1, "zoe@example.com")
            .await
            .unwrap_err();
        assert!(!err.is_permanent(), "{verb}: {err:?}");
        assert!(err.message().starts_with(stage), "{verb}: {err:?}");
        assert!(!connection.is_usable(), "{verb}");
        assert!(connection.reset().await.is_err(), "{verb}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_stops_answering_times_out() {
    let server = ScriptedServer::start(&[]).await;
    server.reply("MAIL", Reply::Hang);
    let mut config = config(server.port(), SmtpSecurity::None);
    config.timeout_secs = 1;
    let mailer = Mailer::new(&config).unwrap();
    let mut connection = mailer.connect().await.unwrap();
    let err = send_one(&mailer, &mut connection, 1, "zoe@example.com")
        .await
        .unwrap_err();
    assert!(!err.is_permanent());
    assert_eq!(err.message(), "MAIL FROM: no reply within 1 s");
    assert!(!connection.is_usable());
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_is_sent_and_535_hints_at_the_credentials() {
    let server = ScriptedServer::start(&["AUTH PLAIN"]).await;
    let mut config = config(server.port(), SmtpSecurity::None);
    config.username = "shop".into();
    config.password = mailmycustomer::config::Secret("s3cret-pass".into());

    // Accepted: AUTH PLAIN carries "\0shop\0s3cret-pass".
    let mailer = Mailer::new(&config).unwrap();
    let mut connection = mailer.connect().await.unwrap();
    send_one(&mailer, &mut connection, 1, "zoe@example.com")
        .await
        .unwrap();
    connection.quit().await;
    assert_eq!(
        server.log().verbs("AUTH"),
        ["AUTH PLAIN AHNob3AAczNjcmV0LXBhc3M="]
    );

    server.reply_text("AUTH", "535 5.7.8 Error: authentication failed");
    let err = mailer.connect().await.unwrap_err();
    assert!(!err.is_permanent());
    assert!(
        err.message()
            .contains("535 5.7.8 Error: authentication failed"),
        "{err:?}"
    );
    assert!(!err.message().contains("s3cret"), "{err:?}");
    assert!(!format!("{err:?}").contains("s3cret"));
    assert_eq!(
        err.hint(&config).as_deref(),
        Some("check smtp.username / smtp.password")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_recipient_is_permanent_without_contacting_the_server() {
    let server = ScriptedServer::start(&[]).await;
    let config = config(server.port(), SmtpSecurity::None);
    let mailer = Mailer::new(&config).unwrap();
    let mut connection = mailer.connect().await.unwrap();
    let before = server.log().commands.len();
    for bad in [
        "not-an-address",
        "a@b@c",
        "zoe@example.com>\r\nRCPT TO:<x@y",
    ] {
        let err = send_one(&mailer, &mut connection, 1, bad)
            .await
            .unwrap_err();
        assert!(err.is_permanent(), "{bad}");
        assert!(
            err.message().starts_with("invalid recipient address"),
            "{err:?}"
        );
    }
    assert_eq!(
        server.log().commands.len(),
        before,
        "nothing sent for bad recipients"
    );
    assert!(connection.is_usable());
    send_one(&mailer, &mut connection, 2, "zoe@example.com")
        .await
        .unwrap();

    let connections = server.log().connections;
    let (err, _) = send_test_email(&config, "not-an-address")
        .await
        .unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(
        server.log().connections,
        connections,
        "no connection for a bad recipient"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_denied_is_transient_with_a_hint() {
    let server = ScriptedServer::start(&[]).await;
    server.reply_text("RCPT", "554 5.7.1 <zoe@example.com>: Relay access denied");
    let config = config(server.port(), SmtpSecurity::None);
    let (err, hint) = send_test_email(&config, "zoe@example.com")
        .await
        .unwrap_err();
    // A setting to fix on this side: the message goes through once it is fixed.
    assert!(!err.is_permanent());
    assert!(err
        .message()
        .contains("554 5.7.1 <zoe@example.com>: Relay access denied"));
    assert_eq!(
        hint.as_deref(),
        Some("the relay does not accept mail from this machine: set smtp.username/password")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn send_test_email_reports_the_servers_reply() {
    let server = ScriptedServer::start(&[]).await;
    let config = config(server.port(), SmtpSecurity::None);
    let line = send_test_email(&config, "me@example.com").await.unwrap();
    assert!(line.contains("\"250 2.0.0 Ok: queued as 1\""), "{line}");
    assert!(line.contains("Message-ID <test."), "{line}");
    let log = server.log();
    assert_eq!(log.verbs("QUIT").len(), 1);
    let message = MessageParser::default().parse(&log.messages[0]).unwrap();
    assert_eq!(message.subject(), Some(TEST_SUBJECT));
    let id = message.message_id().unwrap();
    assert!(line.contains(id), "{line} / {id}");
    assert!(id.ends_with("@shop.example"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sender_override_headers_and_retries() {
    let server = ScriptedServer::start(&[]).await;
    let mailer = Mailer::new(&config(server.port(), SmtpSecurity::None)).unwrap();
    let mut connection = mailer.connect().await.unwrap();
    let mut e = email(
        7,
        "zoe@example.com",
        "Hi\r\nBcc: evil@example.net",
        "x\n",
        "<p>x</p>",
    );
    e.from_address = Some("orders@other.example");
    // A retry of the same delivery carries the same Message-ID.
    assert_eq!(
        connection.send(&mailer, &e).await.unwrap(),
        "<7.1764000007@other.example>"
    );
    assert_eq!(
        connection.send(&mailer, &e).await.unwrap(),
        "<7.1764000007@other.example>"
    );
    let log = server.log();
    assert_eq!(log.verbs("MAIL"), ["MAIL FROM:<orders@other.example>"; 2]);
    for raw in &log.messages {
        let message = MessageParser::default().parse(raw).unwrap();
        assert_eq!(message.message_id(), Some("7.1764000007@other.example"));
        assert_eq!(
            message.from().unwrap().first().unwrap().address(),
            Some("orders@other.example")
        );
        // A line break in a subject never starts a header of its own.
        assert!(message.header_raw("Bcc").is_none());
        assert_eq!(message.subject(), Some("Hi  Bcc: evil@example.net"));
    }

    e.from_address = Some("not an address");
    let err = connection.send(&mailer, &e).await.unwrap_err();
    assert!(err.is_permanent());
    assert!(err.message().contains("invalid sender address"), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// TLS modes and their hints.

#[tokio::test(flavor = "multi_thread")]
async fn tls_against_a_plain_server_hints_at_starttls() {
    let server = ScriptedServer::start(&[]).await;
    let config = config(server.port(), SmtpSecurity::Tls);
    let err = Mailer::new(&config).unwrap().connect().await.unwrap_err();
    assert!(!err.is_permanent());
    assert!(
        err.message().starts_with("TLS handshake with 127.0.0.1:"),
        "{err:?}"
    );
    let as_587 = SmtpConfig {
        port: 587,
        ..config.clone()
    };
    assert_eq!(
        err.hint(&as_587).as_deref(),
        Some("port 587 usually wants security = \"starttls\"")
    );
    assert!(err
        .hint(&config)
        .unwrap()
        .contains("security = \"starttls\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_not_offered_is_an_error_with_a_hint() {
    let server = ScriptedServer::start(&["8BITMIME"]).await;
    let config = config(server.port(), SmtpSecurity::Starttls);
    let err = Mailer::new(&config).unwrap().connect().await.unwrap_err();
    assert_eq!(
        err.message(),
        format!("127.0.0.1:{} does not offer STARTTLS", server.port())
    );
    assert_eq!(
        err.hint(&config).as_deref(),
        Some(
            "the server does not offer STARTTLS: use security = \"none\" only for a local \
             relay, or the port for TLS"
        )
    );
    assert!(server.log().verbs("STARTTLS").is_empty());
    assert!(server.log().verbs("MAIL").is_empty());
}

/// A CA and, signed by it, a certificate for 127.0.0.1 and one for another name; made with
/// the openssl CLI.
struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    fn new() -> Certificates {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=MailMyCustomer test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
        );
        for (name, san) in [("ip", "IP:127.0.0.1"), ("other", "DNS:mail.other.example")] {
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let pem = format!("{name}.pem");
            let ext = format!("{name}.ext");
            std::fs::write(
                d.join(&ext),
                format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
            )
            .unwrap();
            openssl(
                d,
                &[
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    "/CN=test",
                ],
            );
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                ],
            );
        }
        Certificates { dir }
    }

    fn terminator(&self, name: &str) -> TlsTerminator {
        let d = self.dir.path();
        TlsTerminator::start(
            &d.join(format!("{name}.pem")),
            &d.join(format!("{name}.key")),
        )
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is needed for the TLS and DKIM tests: run tests/run, or apt-get install openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_certificate_is_refused_with_a_hint() {
    let certs = Certificates::new();
    let mut terminator = certs.terminator("ip");
    let server = ScriptedServer::behind_tls(&mut terminator).await;
    let config = config(server.port(), SmtpSecurity::Tls);
    let err = Mailer::new(&config).unwrap().connect().await.unwrap_err();
    assert!(!err.is_permanent());
    assert!(
        err.message().starts_with(&format!(
            "TLS certificate of 127.0.0.1:{} rejected",
            server.port()
        )),
        "{err:?}"
    );
    assert!(err.message().contains("UnknownIssuer"), "{err:?}");
    assert!(err
        .hint(&config)
        .unwrap()
        .starts_with("the relay's certificate is not trusted by this machine"));
    assert!(server.log().verbs("EHLO").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_smtp_against_implicit_tls_hints_at_port_465() {
    let certs = Certificates::new();
    let terminator = certs.terminator("ip");
    let mut config = config(terminator.port, SmtpSecurity::Starttls);
    config.timeout_secs = 1;
    let err = Mailer::new(&config).unwrap().connect().await.unwrap_err();
    assert!(!err.is_permanent());
    assert_eq!(
        err.message(),
        format!(
            "no SMTP greeting from 127.0.0.1:{} within 1 s",
            terminator.port
        )
    );
    let as_465 = SmtpConfig {
        port: 465,
        ..config
    };
    assert_eq!(
        err.hint(&as_465).as_deref(),
        Some("port 465 wants security = \"tls\"")
    );
}

/// Trusting the test CA needs SSL_CERT_FILE, read when the TLS verifier is built; it is set
/// for a child process running `tls_client_half` rather than changed in this process, where
/// other tests run in parallel.
#[tokio::test(flavor = "multi_thread")]
async fn implicit_tls_and_starttls_with_verified_certificates() {
    let certs = Certificates::new();
    let mut implicit = certs.terminator("ip");
    let implicit_server = ScriptedServer::behind_tls(&mut implicit).await;
    let starttls_server = ScriptedServer::start(&["STARTTLS", "8BITMIME"]).await;
    starttls_server.starttls_through(certs.terminator("ip"));
    let mut wrong_name = certs.terminator("other");
    let wrong_name_server = ScriptedServer::behind_tls(&mut wrong_name).await;

    let ports = format!(
        "{},{},{}",
        implicit_server.port(),
        starttls_server.port(),
        wrong_name_server.port()
    );
    let ca = certs.ca();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "smtp::tls_client_half",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SSL_CERT_FILE", ca)
            .env("MMC_TEST_TLS_PORTS", ports)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{report}");
    assert!(report.contains("1 passed"), "{report}");

    // The messages only reach the scripted sessions through openssl's TLS end.
    for server in [&implicit_server, &starttls_server] {
        let log = server.log();
        assert_eq!(log.messages.len(), 1, "{log:?}");
        let message = MessageParser::default().parse(&log.messages[0]).unwrap();
        assert_eq!(message.subject(), Some(SUBJECT));
    }
    let verbs: Vec<String> = starttls_server
        .log()
        .commands
        .iter()
        .map(|c| c.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(
        verbs,
        ["EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    );
    assert!(wrong_name_server.log().commands.is_empty());
}

/// The client half of `implicit_tls_and_starttls_with_verified_certificates`, run by it in a
/// child process with the test CA trusted.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "started by implicit_tls_and_starttls_with_verified_certificates in a child process"]
async fn tls_client_half() {
    let ports: Vec<u16> = std::env::var("MMC_TEST_TLS_PORTS")
        .expect("run through implicit_tls_and_starttls_with_verified_certificates")
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    let text = text_body(1);
    let html = html_body(1);
    let e = email(1, "zoe@example.com", SUBJECT, &text, &html);
    for (port, security) in [
        (ports[0], SmtpSecurity::Tls),
        (ports[1], SmtpSecurity::Starttls),
    ] {
        let mailer = Mailer::new(&config(port, security)).unwrap();
        let mut connection = mailer
            .connect()
            .await
            .unwrap_or_else(|err| panic!("{security:?}: {err:?}"));
        assert!(connection.nodelay(), "{security:?}: TCP_NODELAY under TLS");
        connection.send(&mailer, &e).await.unwrap();
        connection.quit().await;
    }

    let config = config(ports[2], SmtpSecurity::Tls);
    let err = Mailer::new(&config).unwrap().connect().await.unwrap_err();
    assert!(err.message().starts_with("TLS certificate of"), "{err:?}");
    assert!(err.message().contains("not valid for name"), "{err:?}");
    assert!(err
        .hint(&config)
        .unwrap()
        .starts_with("the certificate does not match smtp.host = \"127.0.0.1\""));
}

// ---------------------------------------------------------------------------------------------
// DKIM.

struct TxtCache(Mutex<HashMap<Box<str>, mail_auth::Txt>>);

impl mail_auth::ResolverCache<Box<str>, mail_auth::Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<mail_auth::Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<mail_auth::Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }

    fn insert(&self, key: Box<str>, value: mail_auth::Txt, _: Instant) {
        self.0.lock().unwrap().insert(key, value);
    }
}

/// Verifies the message's DKIM signature with mail-auth against `record`, served from a
/// cache: the resolver has no name servers, so nothing leaves the machine.
async fn dkim_verifies(message: &[u8], selector: &str, domain: &str, record: &str) -> bool {
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
    let authenticator = mail_auth::MessageAuthenticator::new(
        ResolverConfig::from_parts(None, vec![], vec![]),
        ResolverOpts::default(),
    )
    .unwrap();
    let cache = TxtCache(Mutex::new(HashMap::new()));
    let key = mail_auth::common::verify::DomainKey::parse(record.as_bytes()).unwrap();
    cache.0.lock().unwrap().insert(
        format!("{selector}._domainkey.{domain}.").into(),
        key.into(),
    );
    let parsed = mail_auth::AuthenticatedMessage::parse(message).unwrap();
    let results = authenticator
        .verify_dkim(mail_auth::Parameters::new(&parsed).with_txt_cache(&cache))
        .await;
    assert_eq!(results.len(), 1);
    *results[0].result() == mail_auth::DkimResult::Pass
}

/// Generates a key with the openssl CLI; returns the private key path and the DKIM record.
fn dkim_key(dir: &Path, kind: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{kind}.pem"));
    let key_arg = key.to_str().unwrap();
    match kind {
        "ed25519" => openssl(dir, &["genpkey", "-algorithm", "ed25519", "-out", key_arg]),
        "rsa-pkcs8" => openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                key_arg,
            ],
        ),
        "rsa-pkcs1" => openssl(dir, &["genrsa", "-traditional", "-out", key_arg, "2048"]),
        _ => unreachable!(),
    }
    let der = dir.join(format!("{kind}.pub.der"));
    openssl(
        dir,
        &[
            "pkey",
            "-in",
            key_arg,
            "-pubout",
            "-outform",
            "DER",
            "-out",
            der.to_str().unwrap(),
        ],
    );
    let der = std::fs::read(der).unwrap();
    let record = if kind == "ed25519" {
        // RFC 8463: the raw 32-byte key, the end of the SubjectPublicKeyInfo.
        format!("v=DKIM1; k=ed25519; p={}", base64(&der[der.len() - 32..]))
    } else {
        format!("v=DKIM1; k=rsa; p={}", base64(&der))
    };
    (key, record)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn dkim_signatures_verify() {
    let dir = tempfile::tempdir().unwrap();
    let server = ScriptedServer::start(&[]).await;
    for kind in ["ed25519", "rsa-pkcs8", "rsa-pkcs1"] {
        let (key, record) = dkim_key(dir.path(), kind);
        let mut config = config(server.port(), SmtpSecurity::None);
        config.dkim_key_path = key.to_str().unwrap().into();
        config.dkim_selector = "mmc2026".into();
        config.dkim_domain = "shop.example".into();
        let mailer = Mailer::new(&config).unwrap();
        let mut connection = mailer.connect().await.unwrap();
        send_one(&mailer, &mut connection, 1, "zoe@example.com")
            .await
            .unwrap();
        connection.quit().await;

        let raw = server.log().messages.pop().unwrap();
        let message = MessageParser::default().parse(&raw).unwrap();
        let signature: String = message
            .header_raw("DKIM-Signature")
            .unwrap_or_else(|| panic!("{kind}: no DKIM-Signature"))
            .split_whitespace()
            .collect();
        let tags: HashMap<&str, &str> = signature
            .split(';')
            .filter_map(|t| t.split_once('='))
            .collect();
        assert_eq!(tags["d"], "shop.example", "{kind}");
        assert_eq!(tags["s"], "mmc2026", "{kind}");
        let algorithm = if kind == "ed25519" {
            "ed25519-sha256"
        } else {
            "rsa-sha256"
        };
        assert_eq!(tags["a"], algorithm, "{kind}");
        let signed: Vec<String> = tags["h"].split(':').map(str::to_ascii_lowercase).collect();
        for header in ["from", "to", "subject", "date", "message-id"] {
            assert!(signed.contains(&header.to_owned()), "{kind}: {signed:?}");
        }
        assert!(
            dkim_verifies(&raw, "mmc2026", "shop.example", &record).await,
            "{kind}"
        );

        // The same message with a changed subject no longer verifies: the check can fail.
        let text = String::from_utf8(raw.clone()).unwrap();
        let tampered = text.replacen("Subject: ", "Subject: Re: ", 1);
        assert_ne!(tampered, text);
        assert!(!dkim_verifies(tampered.as_bytes(), "mmc2026", "shop.example", &record).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dkim_key_problems_are_named_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(2525, SmtpSecurity::None);
    config.dkim_selector = "mmc".into();
    config.dkim_domain = "shop.example".into();

    let missing = dir.path().join("missing.pem");
    config.dkim_key_path = missing.to_str().unwrap().into();
    let err = Mailer::new(&config).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("DKIM key {}: cannot read it", missing.display())),
        "{err}"
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key\n").unwrap();
    config.dkim_key_path = garbage.to_str().unwrap().into();
    let err = Mailer::new(&config).unwrap_err().to_string();
    assert!(
        err.contains(garbage.to_str().unwrap()) && err.contains("not a PEM private key"),
        "{err}"
    );

    let certificate = dir.path().join("cert.pem");
    std::fs::write(
        &certificate,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    config.dkim_key_path = certificate.to_str().unwrap().into();
    let err = Mailer::new(&config).unwrap_err().to_string();
    assert!(err.contains("\"CERTIFICATE\", not a private key"), "{err}");

    config.dkim_selector = String::new();
    let err = Mailer::new(&config).unwrap_err().to_string();
    assert!(err.contains("smtp.dkim_selector"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_that_cannot_work_are_refused() {
    let mut config = config(2525, SmtpSecurity::None);
    config.from_address = "billing".into();
    let err = Mailer::new(&config).unwrap_err().to_string();
    assert!(err.contains("smtp.from_address = \"billing\""), "{err}");
    config.from_address = "billing@shop.example".into();
    config.host = String::new();
    let err = Mailer::new(&config).unwrap_err().to_string();
    assert!(err.contains("smtp.host is empty"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_envelope_is_pipelined_when_the_server_offers_it() {
    let server = ScriptedServer::start(&["PIPELINING"]).await;
    let mailer = Mailer::new(&config(server.port(), SmtpSecurity::None)).unwrap();
    let mut connection = mailer.connect().await.unwrap();
    for n in 1..=2 {
        send_one(&mailer, &mut connection, n, "zoe@example.com")
            .await
            .unwrap();
    }
    connection.quit().await;
    let log = server.log();
    assert_eq!(log.messages.len(), 2);
    // MAIL FROM and RCPT TO each arrived with the rest of the envelope already behind them.
    let pipelined: Vec<&str> = log
        .pipelined
        .iter()
        .map(|c| c.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(pipelined, ["MAIL", "RCPT", "MAIL", "RCPT"], "{log:?}");

    // Without the extension, each command waits for its reply.
    let plain = ScriptedServer::start(&[]).await;
    let mailer = Mailer::new(&config(plain.port(), SmtpSecurity::None)).unwrap();
    let mut connection = mailer.connect().await.unwrap();
    send_one(&mailer, &mut connection, 1, "zoe@example.com")
        .await
        .unwrap();
    connection.quit().await;
    assert!(plain.log().pipelined.is_empty(), "{:?}", plain.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipelined_refusal_is_reported_and_the_connection_stays_usable() {
    let server = ScriptedServer::start(&["PIPELINING"]).await;
    server.reply_text(
        "RCPT",
        "550 5.1.1 <zoe@example.com>: Recipient address rejected",
    );
    server.reply_text("DATA", "554 5.5.1 Error: no valid recipients");
    let mailer = Mailer::new(&config(server.port(), SmtpSecurity::None)).unwrap();
    let mut connection = mailer.connect().await.unwrap();
    let err = send_one(&mailer, &mut connection, 1, "zoe@example.com")
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    assert!(
        err.message().contains("550 5.1.1"),
        "the first refusal is reported: {err:?}"
    );
    assert!(connection.is_usable());

    server.reply_text("MAIL", "451 4.3.0 Temporary lookup failure");
    server.reply_text("RCPT", "503 5.5.1 Error: need MAIL command");
    server.reply_text("DATA", "503 5.5.1 Error: need RCPT command");
    let err = send_one(&mailer, &mut connection, 2, "zoe@example.com")
        .await
        .unwrap_err();
    assert!(
        !err.is_permanent() && err.message().contains("451 4.3.0"),
        "{err:?}"
    );

    send_one(&mailer, &mut connection, 3, "zoe@example.com")
        .await
        .unwrap();
    connection.quit().await;
    let log = server.log();
    assert_eq!(log.messages.len(), 1);
    assert_eq!(log.connections, 1, "refusals did not cost the connection");
}
