//! Issue 10, settings: values saved on the settings page sit between the config file and the
//! environment, say where they came from, and reach the sender without a restart.

use std::collections::BTreeMap;

use mailmycustomer::config::{Overrides, Source};
use mailmycustomer::{Config, Error};

fn saved(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every combination of the four layers that can set `server.public_url`: the strongest one
/// present wins, and the config says which it was.
#[test]
fn precedence_defaults_file_page_env_flag() {
    let dir = tempfile::tempdir().unwrap();
    for mask in 0..16 {
        let (file, page, env, flag) = (mask & 1 != 0, mask & 2 != 0, mask & 4 != 0, mask & 8 != 0);
        let path = dir.path().join(format!("config{mask}.toml"));
        let text = match file {
            true => "[server]\npublic_url = \"https://file.example\"\n",
            false => "[log]\nlevel = \"info\"\n",
        };
        std::fs::write(&path, text).unwrap();
        let env_vars = match env {
            true => vars(&[("MMC_SERVER__PUBLIC_URL", "https://env.example")]),
            false => vars(&[]),
        };
        let flags = Overrides {
            public_url: flag.then(|| "https://flag.example".to_owned()),
            ..Overrides::default()
        };
        let page_values = match page {
            true => saved(&[("server.public_url", "https://page.example")]),
            false => saved(&[]),
        };
        let config = Config::load(Some(&path), env_vars, &flags)
            .unwrap()
            .with_saved(&page_values)
            .unwrap();
        let want = if flag {
            ("https://flag.example", Source::Flag("--public-url"))
        } else if env {
            (
                "https://env.example",
                Source::Env("MMC_SERVER__PUBLIC_URL".into()),
            )
        } else if page {
            ("https://page.example", Source::Page)
        } else if file {
            ("https://file.example", Source::File)
        } else {
            ("", Source::Default)
        };
        assert_eq!(
            (
                config.server.public_url.as_str(),
                config.source("server.public_url")
            ),
            want,
            "file={file} page={page} env={env} flag={flag}"
        );
    }
}

/// Saving again replaces what was saved: a key no longer saved returns to the file's value (or
/// the default) and says so; the environment's keys never take the page's value.
#[test]
fn saved_values_are_replaced_and_removed_and_never_beat_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[smtp]\nhost = \"file.example\"\nfrom_address = \"billing@file.example\"\nport = 2525\n",
    )
    .unwrap();
    let secret = dir.path().join("password");
    std::fs::write(&secret, "from-a-file\n").unwrap();
    let env = vars(&[
        ("MMC_SMTP__USERNAME", "env-user"),
        ("MMC_SMTP__PASSWORD_FILE", secret.to_str().unwrap()),
    ]);
    let loaded = Config::load(Some(&path), env, &Overrides::default()).unwrap();
    assert_eq!(loaded.source("smtp.host"), Source::File);
    assert_eq!(loaded.source("smtp.port"), Source::File);
    assert_eq!(loaded.source("smtp.pool_size"), Source::Default);
    assert_eq!(
        loaded.source("smtp.password").read_only_reason().as_deref(),
        Some("set by MMC_SMTP__PASSWORD_FILE")
    );
    assert_eq!(loaded.smtp.password.expose(), "from-a-file");

    let first = loaded
        .with_saved(&saved(&[
            ("smtp.host", "page.example"),
            ("smtp.pool_size", "2"),
            ("smtp.username", "page-user"),
            ("smtp.password", "from-the-page"),
        ]))
        .unwrap();
    assert_eq!(first.smtp.host, "page.example");
    assert_eq!(first.source("smtp.host"), Source::Page);
    assert_eq!(first.smtp.pool_size, 2);
    assert_eq!(first.smtp.port, 2525, "not saved: the file's");
    assert_eq!(first.smtp.username, "env-user", "the environment wins");
    assert_eq!(first.smtp.password.expose(), "from-a-file");
    assert_eq!(
        first.below_page("smtp.host").as_deref(),
        Some("file.example")
    );

    let second = first
        .with_saved(&saved(&[("smtp.port", "465"), ("smtp.security", "tls")]))
        .unwrap();
    assert_eq!(second.smtp.host, "file.example", "back to the file's");
    assert_eq!(second.source("smtp.host"), Source::File);
    assert_eq!(second.smtp.pool_size, 4, "back to the default");
    assert_eq!(second.source("smtp.pool_size"), Source::Default);
    assert_eq!(second.smtp.port, 465);
    assert_eq!(second.smtp.security.name(), "tls");

    let nothing = second.with_saved(&BTreeMap::new()).unwrap();
    assert_eq!(nothing, loaded);
    assert_eq!(nothing.source("smtp.port"), Source::File);
}

/// A saved value is checked as the config file's would be, and the error names the key.
#[test]
fn invalid_saved_values_are_refused_naming_the_key() {
    let base = Config::default();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("smtp.port", "70000")], "smtp.port"),
        (&[("smtp.port", "abc")], "smtp.port"),
        (&[("smtp.security", "ssl")], "smtp.security"),
        (&[("smtp.pool_size", "-1")], "smtp.pool_size"),
        (&[("smtp.host", "relay.example")], "smtp.from_address"),
        (
            &[
                ("smtp.host", "relay.example"),
                ("smtp.from_address", "nobody"),
            ],
            "smtp.from_address",
        ),
        (
            &[
                ("smtp.host", "relay.example"),
                ("smtp.from_address", "a@b.example"),
                ("smtp.pool_size", "0"),
            ],
            "smtp.pool_size",
        ),
        (
            &[
                ("smtp.host", "relay.example"),
                ("smtp.from_address", "a@b.example"),
                ("smtp.username", "someone"),
            ],
            "smtp.password",
        ),
        (
            &[("server.public_url", "ftp://x.example")],
            "server.public_url",
        ),
    ];
    for (values, field) in cases {
        match base.with_saved(&saved(values)) {
            Err(Error::Invalid {
                field: named,
                message,
            }) => {
                assert_eq!(&named, field, "{values:?}: {message}");
                assert!(message.contains(field), "{values:?}: {message}");
            }
            other => panic!("{values:?}: {other:?}"),
        }
    }
    // Only the page's keys can be saved; anything else in the table is not taken.
    let err = base
        .with_saved(&saved(&[("server.listen", "0.0.0.0:1")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.listen"), "{err}");
}
