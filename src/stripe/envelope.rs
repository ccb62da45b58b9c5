//! The envelope every Stripe event shares (`id`, `type`, `created`, `livemode`, `api_version`,
//! `account`, `data.object`), checked on intake so that only real events are stored.

use serde_json::Value;

use crate::Error;

#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: String,
    pub event_type: String,
    pub account: Option<String>,
    pub api_version: Option<String>,
    pub livemode: bool,
    pub created: i64,
}

impl Envelope {
    pub fn parse(body: &[u8]) -> Result<Envelope, Error> {
        let bad = |why: &str| Error::NotAnEvent(why.to_owned());
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| Error::NotAnEvent(format!("invalid JSON ({e})")))?;
        let event = value.as_object().ok_or_else(|| bad("not a JSON object"))?;
        match event.get("object") {
            None => {}
            Some(Value::String(s)) if s == "event" => {}
            Some(_) => return Err(bad("`object` is not \"event\"")),
        }
        let text = |key: &str| -> Result<String, Error> {
            match event.get(key) {
                Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => Ok(s.clone()),
                _ => Err(Error::NotAnEvent(format!(
                    "`{key}` missing or not a short string"
                ))),
            }
        };
        let optional_text = |key: &str| -> Result<Option<String>, Error> {
            match event.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.len() <= 255 => Ok(Some(s.clone())),
                _ => Err(Error::NotAnEvent(format!("`{key}` is not a string"))),
            }
        };
        let id = text("id")?;
        let event_type = text("type")?;
        let created = event
            .get("created")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("`created` missing or not an integer"))?;
        let livemode = match event.get("livemode") {
            Some(Value::Bool(b)) => *b,
            _ => return Err(bad("`livemode` missing or not a boolean")),
        };
        if !event
            .get("data")
            .and_then(|d| d.get("object"))
            .is_some_and(Value::is_object)
        {
            return Err(bad("`data.object` missing or not an object"));
        }
        Ok(Envelope {
            id,
            event_type,
            account: optional_text("account")?,
            api_version: optional_text("api_version")?,
            livemode,
            created,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stripe/events");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let body = std::fs::read(&path).unwrap();
            let env = Envelope::parse(&body).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            assert!(env.id.starts_with("evt_"));
            // Files are named after their event type, plus an optional variant suffix.
            let file_name = path.file_name().unwrap().to_str().unwrap();
            assert!(
                file_name.starts_with(&format!("{}.", env.event_type)),
                "{file_name}"
            );
            n += 1;
        }
        assert!(n >= 15);
    }

    #[test]
    fn connect_fields() {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/stripe/events/invoice.paid.connect.json"
        ))
        .unwrap();
        let env = Envelope::parse(&body).unwrap();
        assert_eq!(env.event_type, "invoice.paid");
        assert!(env.account.unwrap().starts_with("acct_"));
        assert!(env.api_version.is_some());
    }

    #[test]
    fn refuses_what_is_not_an_event() {
        let cases: &[(&str, &str)] = &[
            ("not json", "invalid JSON"),
            ("[1,2]", "not a JSON object"),
            ("{}", "`id`"),
            (r#"{"id":"evt_1","object":"charge"}"#, "`object`"),
            (
                r#"{"id":"evt_1","type":"x","created":"1","livemode":false,"data":{"object":{}}}"#,
                "`created`",
            ),
            (
                r#"{"id":"evt_1","type":"x","created":1,"data":{"object":{}}}"#,
                "`livemode`",
            ),
            (
                r#"{"id":"evt_1","type":"x","created":1,"livemode":false,"data":{}}"#,
                "`data.object`",
            ),
            (
                r#"{"id":"evt_1","type":"x","created":1,"livemode":false,"account":5,"data":{"object":{}}}"#,
                "`account`",
            ),
            (
                r#"{"id":"","type":"x","created":1,"livemode":false,"data":{"object":{}}}"#,
                "`id`",
            ),
        ];
        for (body, expected) in cases {
            let err = Envelope::parse(body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
        let ok = r#"{"id":"evt_1","type":"x","created":1,"livemode":true,"api_version":null,"data":{"object":{}}}"#;
        assert_eq!(
            Envelope::parse(ok.as_bytes()).unwrap(),
            Envelope {
                id: "evt_1".into(),
                event_type: "x".into(),
                account: None,
                api_version: None,
                livemode: true,
                created: 1
            }
        );
    }
}
