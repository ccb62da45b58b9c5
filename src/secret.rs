//! `Secret`: a string that must not leak through logs or listings (the SMTP password, an
//! integration's webhook signing secret and Stripe API key). `Debug` never shows it, so a
//! `{:?}` of a config or an integration is safe to log; reading it takes `expose`, which makes
//! each use visible. It binds to SQL as the plain string it wraps; the queries that store one
//! seal it (`seal()`, see `crate::seal`).

use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "[redacted]"
        })
    }
}

impl ToSql for Secret {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl FromSql for Secret {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        String::column_result(value).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("whsec_abcdefghijklmnop1234");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
    }

    #[test]
    fn stored_in_sqlite_as_the_plain_string() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (s TEXT)").unwrap();
        let secret = Secret::new("rk_live_0123456789abcdef");
        conn.execute("INSERT INTO t VALUES (?1)", [&secret])
            .unwrap();
        let raw: String = conn.query_row("SELECT s FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(raw, "rk_live_0123456789abcdef");
        let back: Secret = conn.query_row("SELECT s FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(back, secret);
        let none: Option<Secret> = conn.query_row("SELECT NULL", [], |r| r.get(0)).unwrap();
        assert_eq!(none, None);
    }
}
