//! Renders a template (subject, HTML body, optional text body) with minijinja: sandboxed (no
//! filesystem, no includes, fuel-limited), strict about undefined variables, HTML-escaped in the
//! HTML body only. Each template version is compiled once and kept.
//!
//! Compiled code is found by a SHA-256 hash of the text it was compiled from, never by the
//! template's id: SQLite hands a deleted template's id to the next one, and a cache keyed by id
//! and version would then send the deleted template's text.

use std::collections::HashMap;
use std::sync::RwLock;

use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior, Value};
use sha2::{Digest, Sha256};

use super::context::{self, DateValue};
use super::money::format_money;
use crate::trigger::TriggerKind;

/// The three parts of a template as the merchant wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSource {
    pub subject: String,
    pub html: String,
    pub text: Option<String>,
}

/// A rendered email, ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Why a template cannot be used, with the part and line the merchant should look at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
pub struct TemplateError {
    pub part: &'static str,
    pub line: Option<usize>,
    pub message: String,
}

/// Enough for any real email; stops a template loop from burning the CPU.
const FUEL: u64 = 200_000;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(50);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    // An optional value that is absent (no PDF link yet) prints as nothing, not "none".
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.add_filter("date", date_filter);
    env.add_filter("money", money_filter);
    env
}

/// `{{ renewal_date | date("%d/%m/%Y") }}`: a date variable or a unix timestamp, formatted.
fn date_filter(value: Value, pattern: Option<String>) -> Result<Value, Error> {
    if value.is_none() {
        return Ok(value);
    }
    let ts = match value.downcast_object_ref::<DateValue>() {
        Some(d) => d.0,
        None => i64::try_from(value.clone()).map_err(|_| {
            Error::new(
                ErrorKind::InvalidOperation,
                "date expects a date variable or a unix timestamp",
            )
        })?,
    };
    let pattern = pattern.as_deref().unwrap_or("%B %-d, %Y");
    DateValue(ts)
        .format(pattern)
        .map(Value::from)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("invalid date format {pattern:?}"),
            )
        })
}

/// `{{ amount_raw | money(currency) }}`: minor units formatted in a currency.
fn money_filter(_state: &State, amount: Value, currency: String) -> Result<Value, Error> {
    if amount.is_none() {
        return Ok(amount);
    }
    let minor = i64::try_from(amount).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            "money expects an amount in minor units",
        )
    })?;
    Ok(Value::from(format_money(minor, &currency)))
}

/// Renders templates, compiling each version once. A part is compiled under the hash of its
/// text, so the same text always finds the same code and different text never does.
pub struct Renderer {
    cache: RwLock<Cache>,
}

struct Cache {
    env: Environment<'static>,
    /// The compiled name of each part of each template id, as last rendered: what lets an
    /// edited or deleted template's old code go, unless another template has the same text.
    parts: HashMap<i64, [Option<String>; 3]>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer {
            cache: RwLock::new(Cache {
                env: environment(),
                parts: HashMap::new(),
            }),
        }
    }
}

const PARTS: [(&str, &str); 3] = [
    ("subject", "subject.txt"),
    ("HTML body", "body.html"),
    ("text body", "body.txt"),
];

/// `<sha256 of the text>/body.html`: the suffix picks the escaping (HTML only in the HTML body).
fn compiled_name(text: &str, suffix: &str) -> String {
    format!("{}/{suffix}", hex::encode(Sha256::digest(text.as_bytes())))
}

impl Renderer {
    /// Renders `source` for `kind` with `facts`. `template_id` names the stored template the
    /// source belongs to, so its code is kept between renders (None: compile without keeping,
    /// e.g. to check unsaved text).
    pub fn render(
        &self,
        template_id: Option<i64>,
        source: &TemplateSource,
        kind: TriggerKind,
        facts: &context::EmailFacts,
    ) -> Result<RenderedEmail, TemplateError> {
        let ctx = context::build(kind, facts);
        let texts = [
            Some(source.subject.as_str()),
            Some(source.html.as_str()),
            source.text.as_deref(),
        ];
        let mut out: [Option<String>; 3] = Default::default();
        for (i, ((part, suffix), text)) in PARTS.iter().zip(texts).enumerate() {
            let Some(text) = text else { continue };
            out[i] = Some(
                match template_id {
                    Some(id) => self.render_cached(id, i, text, &ctx),
                    None => environment().render_named_str(suffix, text, &ctx),
                }
                .map_err(|e| to_template_error(part, e))?,
            );
        }
        let [subject, html, text] = out;
        let html = html.unwrap_or_default();
        let text = match text {
            Some(t) => t,
            None => html_to_text(&html),
        };
        Ok(RenderedEmail {
            subject: one_line(&subject.unwrap_or_default()),
            html,
            text,
        })
    }

    /// Renders part `i` of template `id`, compiling `text` unless code for this exact text is
    /// already kept for this template.
    fn render_cached(&self, id: i64, i: usize, text: &str, ctx: &Value) -> Result<String, Error> {
        let name = compiled_name(text, PARTS[i].1);
        {
            let cache = self.cache.read().expect("renderer lock");
            let current = cache.parts.get(&id).and_then(|p| p[i].as_deref());
            if current == Some(name.as_str()) {
                return cache.env.get_template(&name)?.render(ctx);
            }
        }
        let mut cache = self.cache.write().expect("renderer lock");
        if cache.env.get_template(&name).is_err() {
            cache
                .env
                .add_template_owned(name.clone(), text.to_owned())?;
        }
        let old = cache.parts.entry(id).or_default()[i].replace(name.clone());
        if let Some(old) = old.filter(|old| *old != name) {
            let in_use = cache
                .parts
                .values()
                .any(|p| p.iter().flatten().any(|n| *n == old));
            if !in_use {
                cache.env.remove_template(&old);
            }
        }
        let rendered = cache.env.get_template(&name)?.render(ctx);
        rendered
    }

    /// How many template parts are compiled and kept.
    #[cfg(test)]
    fn compiled(&self) -> usize {
        self.cache
            .read()
            .expect("renderer lock")
            .env
            .templates()
            .count()
    }
}

/// Checks a template before it is saved: it must compile and render against the sample event of
/// its trigger, so a typo is refused now rather than sent as a blank.
pub fn validate(
    kind: TriggerKind,
    source: &TemplateSource,
) -> Result<RenderedEmail, TemplateError> {
    if source.subject.trim().is_empty() {
        return Err(TemplateError {
            part: "subject",
            line: None,
            message: "is empty".into(),
        });
    }
    if source.html.trim().is_empty() {
        return Err(TemplateError {
            part: "HTML body",
            line: None,
            message: "is empty".into(),
        });
    }
    let rendered = Renderer::default().render(None, source, kind, &context::sample(kind))?;
    if rendered.subject.is_empty() {
        return Err(TemplateError {
            part: "subject",
            line: None,
            message: "renders to nothing for the sample event".into(),
        });
    }
    Ok(rendered)
}

fn to_template_error(part: &'static str, err: Error) -> TemplateError {
    let message = match err.kind() {
        ErrorKind::UndefinedError => format!(
            "{} (a variable that this trigger does not have, or a typo)",
            err.detail().unwrap_or("undefined value")
        ),
        _ => err
            .detail()
            .map(str::to_owned)
            .unwrap_or_else(|| err.kind().to_string()),
    };
    TemplateError {
        part,
        line: err.line(),
        message,
    }
}

/// A plain-text part derived from HTML: readable paragraphs, links kept as numbered references
/// in full (a wrapped URL is not clickable). Email layouts are tables; raw mode reads them as
/// one column instead of drawing their borders.
pub fn html_to_text(html: &str) -> String {
    let text = html2text::config::plain()
        .raw_mode(true)
        .no_link_wrapping()
        .string_from_read(html.as_bytes(), 78)
        .unwrap_or_else(|_| html.to_owned());
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines().map(str::trim_end) {
        blank_run = if line.is_empty() { blank_run + 1 } else { 0 };
        if blank_run < 2 {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.trim().to_owned()
}

/// A subject is a single header line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::context::{sample, EmailFacts};
    use TriggerKind::*;

    fn source(subject: &str, html: &str, text: Option<&str>) -> TemplateSource {
        TemplateSource {
            subject: subject.into(),
            html: html.into(),
            text: text.map(Into::into),
        }
    }

    fn render(
        kind: TriggerKind,
        src: &TemplateSource,
        facts: &EmailFacts,
    ) -> Result<RenderedEmail, TemplateError> {
        Renderer::default().render(None, src, kind, facts)
    }

    #[test]
    fn an_undefined_variable_is_refused_with_part_and_line() {
        let err = validate(
            PaymentFailed,
            &source("Hi", "<p>ok</p>\n<p>{{ custmer.name }}</p>", None),
        )
        .unwrap_err();
        assert_eq!((err.part, err.line), ("HTML body", Some(2)));
        assert!(err.message.contains("undefined"), "{err}");
        assert_eq!(err.to_string().split(':').next(), Some("HTML body, line 2"));

        // A variable of another trigger is as wrong as a typo.
        let err = validate(
            SubscriptionCreated,
            &source("{{ refund.amount }}", "<p>x</p>", None),
        )
        .unwrap_err();
        assert_eq!(err.part, "subject");
        let err = validate(
            RefundCompleted,
            &source("ok", "<p>x</p>", Some("{{ failure.reason }}")),
        )
        .unwrap_err();
        assert_eq!(err.part, "text body");

        let err = validate(PaymentReceived, &source("ok", "{% if %}", None)).unwrap_err();
        assert_eq!(err.part, "HTML body");
        assert!(validate(PaymentReceived, &source(" ", "<p>x</p>", None)).is_err());
    }

    #[test]
    fn html_is_escaped_in_the_body_but_not_in_subject_or_text() {
        let mut facts = sample(PaymentReceived);
        facts.customer_name = Some("Tom & <Jerry>".into());
        let out = render(
            PaymentReceived,
            &source(
                "Hi {{ customer.name }}",
                "<p>{{ customer.name }}</p>",
                Some("Hi {{ name }}"),
            ),
            &facts,
        )
        .unwrap();
        assert_eq!(out.subject, "Hi Tom & <Jerry>");
        assert_eq!(out.html, "<p>Tom &amp; &lt;Jerry&gt;</p>");
        assert_eq!(out.text, "Hi Tom & <Jerry>");
    }

    #[test]
    fn seed_aliases_and_absent_values() {
        let facts = sample(RefundCompleted);
        let out = render(
            RefundCompleted,
            &source(
                "{{ name }}: {{ amountRefunded }}",
                "<p>[{{ receipt_url }}]</p>",
                None,
            ),
            &facts,
        )
        .unwrap();
        assert_eq!(out.subject, "Jenny Rosen: $20.00");
        let facts = EmailFacts {
            receipt_url: None,
            ..facts
        };
        let out = render(
            RefundCompleted,
            &source("s", "<p>[{{ receipt_url }}]</p>", None),
            &facts,
        )
        .unwrap();
        assert_eq!(out.html, "<p>[]</p>", "an absent value prints as nothing");

        let out = render(
            PaymentFailed,
            &source("{{ failReason }}", "<p>{{ failure.reason }}</p>", None),
            &sample(PaymentFailed),
        )
        .unwrap();
        assert_eq!(out.subject, "Your card was declined.");
    }

    #[test]
    fn dates_days_and_money_filters() {
        let facts = sample(RenewalUpcoming);
        let out = render(
            RenewalUpcoming,
            &source(
                "{{ renewal_date }} | {{ renewal_date | date('%Y-%m-%d') }} | {{ days_until_renewal }}",
                "<p>{{ amount_raw | money('jpy') }} {{ 1500 | money('kwd') }} {{ amount }} {{ currency }}</p>",
                None,
            ),
            &facts,
        )
        .unwrap();
        assert_eq!(out.subject, "August 8, 2026 | 2026-08-08 | 7");
        assert_eq!(out.html, "<p>¥2,000 KWD 1.500 $20.00 USD</p>");
        let err = render(
            RenewalUpcoming,
            &source("{{ renewal_date | date('%Y-%') }}", "x", None),
            &facts,
        )
        .unwrap_err();
        assert!(err.message.contains("date format"), "{err}");
    }

    #[test]
    fn text_is_derived_from_html_keeping_links() {
        let out = render(
            PaymentReceived,
            &source(
                "s",
                "<h1>Thanks</h1><p>See <a href=\"{{ invoice.url }}\">your invoice</a>.</p>",
                None,
            ),
            &sample(PaymentReceived),
        )
        .unwrap();
        assert!(out.text.contains("Thanks"), "{}", out.text);
        assert!(
            out.text.contains("https://invoice.stripe.com/i/sample"),
            "{}",
            out.text
        );
        assert!(!out.text.contains("<p>"), "{}", out.text);
    }

    #[test]
    fn the_sandbox_has_no_files_and_a_fuel_limit() {
        let err = validate(
            PaymentReceived,
            &source("s", "{% include 'etc/passwd' %}", None),
        )
        .unwrap_err();
        assert_eq!(err.part, "HTML body");
        let err = validate(
            PaymentReceived,
            &source(
                "s",
                "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
                None,
            ),
        )
        .unwrap_err();
        assert!(err.message.contains("fuel"), "{err}");
    }

    #[test]
    fn the_subject_is_one_line() {
        let out = render(
            SubscriptionCancelled,
            &source("Bye\n  {{ name }}\r\n!", "x", None),
            &sample(SubscriptionCancelled),
        )
        .unwrap();
        assert_eq!(out.subject, "Bye Jenny Rosen !");
    }

    #[test]
    fn each_text_is_compiled_once_and_an_edit_drops_the_old_code() {
        let renderer = Renderer::default();
        let facts = sample(TrialEnding);
        let v1 = source("one {{ name }}", "x", None);
        let v2 = source("two {{ name }}", "x", None);
        let r = |id: i64, src: &TemplateSource| {
            renderer
                .render(Some(id), src, TrialEnding, &facts)
                .unwrap()
                .subject
        };
        assert_eq!(r(7, &v1), "one Jenny Rosen");
        assert_eq!(r(7, &v1), "one Jenny Rosen");
        assert_eq!(renderer.compiled(), 2, "subject and HTML, compiled once");
        assert_eq!(r(7, &v2), "two Jenny Rosen");
        assert_eq!(renderer.compiled(), 2, "the old subject is dropped");
        // Another template with the same text shares the code, and keeps it when 7 changes.
        assert_eq!(r(8, &v2), "two Jenny Rosen");
        assert_eq!(r(7, &v1), "one Jenny Rosen");
        assert_eq!(renderer.compiled(), 3);
        assert_eq!(r(8, &v2), "two Jenny Rosen");
    }

    /// Issue 8.7: SQLite reuses a deleted template's id, and a new template starts at version 1
    /// again; the text it renders must be its own.
    #[test]
    fn a_reused_id_and_version_never_render_the_old_text() {
        let renderer = Renderer::default();
        let facts = sample(PaymentReceived);
        let deleted = source("deleted {{ name }}", "<p>deleted</p>", Some("deleted"));
        let new = source("new {{ name }}", "<p>new</p>", Some("new"));
        let out = renderer
            .render(Some(12), &deleted, PaymentReceived, &facts)
            .unwrap();
        assert_eq!(out.subject, "deleted Jenny Rosen");
        let out = renderer
            .render(Some(12), &new, PaymentReceived, &facts)
            .unwrap();
        assert_eq!(
            (out.subject.as_str(), out.html.as_str(), out.text.as_str()),
            ("new Jenny Rosen", "<p>new</p>", "new")
        );
    }
}
