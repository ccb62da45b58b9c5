//! Renders a template (subject, HTML body, optional text body) with minijinja: sandboxed (no
//! filesystem, no includes, fuel-limited), strict about undefined variables, HTML-escaped in the
//! HTML body only. Each template version is compiled once and kept.

use std::collections::HashMap;
use std::sync::RwLock;

use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior, Value};

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

/// Renders templates, compiling each version once. Keys are chosen by the caller (e.g. the
/// template's id and update time), so an edited template is compiled afresh.
pub struct Renderer {
    env: RwLock<Environment<'static>>,
    /// Which cache key each template id currently has, to drop superseded versions.
    versions: RwLock<HashMap<String, String>>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer {
            env: RwLock::new(environment()),
            versions: RwLock::new(HashMap::new()),
        }
    }
}

const PARTS: [(&str, &str); 3] = [
    ("subject", "subject.txt"),
    ("HTML body", "body.html"),
    ("text body", "body.txt"),
];

impl Renderer {
    /// Renders `source` for `kind` with `facts`. `cache_key` identifies this exact version of
    /// the template (None: compile without caching, e.g. for a preview of unsaved text).
    pub fn render(
        &self,
        cache_key: Option<(&str, &str)>,
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
                match cache_key {
                    Some((id, version)) => self.render_cached(id, version, suffix, text, &ctx),
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

    fn render_cached(
        &self,
        id: &str,
        version: &str,
        suffix: &str,
        text: &str,
        ctx: &Value,
    ) -> Result<String, Error> {
        let name = format!("{id}@{version}/{suffix}");
        {
            let env = self.env.read().expect("renderer lock");
            if let Ok(template) = env.get_template(&name) {
                return template.render(ctx);
            }
        }
        let mut env = self.env.write().expect("renderer lock");
        let mut versions = self.versions.write().expect("renderer lock");
        let current = format!("{id}@{version}");
        if let Some(old) = versions.insert(id.to_owned(), current.clone()) {
            if old != current {
                for (_, old_suffix) in PARTS {
                    env.remove_template(&format!("{old}/{old_suffix}"));
                }
            }
        }
        env.add_template_owned(name.clone(), text.to_owned())?;
        env.get_template(&name)?.render(ctx)
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
    fn a_cached_template_is_recompiled_when_its_version_changes() {
        let renderer = Renderer::default();
        let facts = sample(TrialEnding);
        let v1 = source("one {{ name }}", "x", None);
        let v2 = source("two {{ name }}", "x", None);
        let r = |key: (&str, &str), src: &TemplateSource| {
            renderer
                .render(Some(key), src, TrialEnding, &facts)
                .unwrap()
                .subject
        };
        assert_eq!(r(("7", "100"), &v1), "one Jenny Rosen");
        assert_eq!(
            r(("7", "100"), &v2),
            "one Jenny Rosen",
            "same version: compiled once"
        );
        assert_eq!(r(("7", "101"), &v2), "two Jenny Rosen");
    }
}
