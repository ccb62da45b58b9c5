//! The variables a template can use, per trigger. A template that names a variable its trigger
//! does not have is refused when saved (strict undefined), so a typo never reaches a customer.

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Object, ObjectRepr};
use minijinja::Value;

use super::money::format_money;
use crate::trigger::TriggerKind;

/// Everything an email may show, resolved: the event's facts plus what was looked up (customer
/// email, product and plan names).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmailFacts {
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub product_id: Option<String>,
    pub product_name: Option<String>,
    pub plan_id: Option<String>,
    pub plan_name: Option<String>,
    pub plan_interval: Option<String>,
    /// Minor units of `currency`.
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub refund_amount: Option<i64>,
    pub failure_reason: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub renewal_date: Option<i64>,
    pub trial_end: Option<i64>,
    pub invoice_url: Option<String>,
    pub invoice_pdf: Option<String>,
    pub receipt_url: Option<String>,
    pub merchant_name: String,
    /// When Stripe created the event; "days until renewal" counts from here so that a preview
    /// of an old event says what the customer would have read.
    pub event_created: i64,
}

/// A point in time shown as a date, e.g. "August 1, 2026"; the `date` filter formats it
/// differently.
#[derive(Debug, Clone, Copy)]
pub struct DateValue(pub i64);

impl DateValue {
    /// Formats with a strftime pattern, in UTC; None for an invalid pattern or time.
    pub fn format(&self, pattern: &str) -> Option<String> {
        let ts = jiff::Timestamp::from_second(self.0).ok()?;
        jiff::fmt::strtime::format(pattern, ts).ok()
    }
}

impl Object for DateValue {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format("%B %-d, %Y").unwrap_or_default())
    }
}

fn date(ts: Option<i64>) -> Value {
    ts.map(|t| Value::from_object(DateValue(t)))
        .unwrap_or(Value::from(()))
}

fn money(amount: Option<i64>, currency: Option<&str>) -> Option<String> {
    Some(format_money(amount?, currency?))
}

/// The template context for `kind`: the variables every trigger has, plus its own.
pub fn build(kind: TriggerKind, facts: &EmailFacts) -> Value {
    use TriggerKind::*;
    let currency = facts.currency.as_deref();
    let mut vars: Vec<(&str, Value)> = vec![
        (
            "customer",
            minijinja::context! { name => &facts.customer_name, email => &facts.customer_email },
        ),
        ("name", Value::from(facts.customer_name.clone())),
        (
            "product",
            minijinja::context! { id => &facts.product_id, name => &facts.product_name },
        ),
        (
            "plan",
            minijinja::context! {
                id => &facts.plan_id, name => &facts.plan_name, interval => &facts.plan_interval
            },
        ),
        ("amount", Value::from(money(facts.amount, currency))),
        ("amount_raw", Value::from(facts.amount)),
        (
            "currency",
            Value::from(facts.currency.as_ref().map(|c| c.to_ascii_uppercase())),
        ),
        (
            "merchant",
            minijinja::context! { name => &facts.merchant_name },
        ),
    ];
    let invoice = || {
        minijinja::context! { url => &facts.invoice_url, pdf => &facts.invoice_pdf }
    };
    let renewal = |vars: &mut Vec<(&str, Value)>| {
        vars.push(("renewal_date", date(facts.renewal_date)));
        let days = facts
            .renewal_date
            .map(|r| (r.saturating_sub(facts.event_created).max(0) as u64).div_ceil(86_400));
        vars.push(("days_until_renewal", Value::from(days)));
    };
    match kind {
        SubscriptionCreated => {
            renewal(&mut vars);
            vars.push(("trial_end", date(facts.trial_end)));
        }
        SubscriptionCancelled => {}
        PaymentFailed => {
            let reason = Value::from(facts.failure_reason.clone());
            vars.push(("failure", minijinja::context! { reason => reason.clone() }));
            vars.push(("failReason", reason));
            vars.push(("next_attempt_at", date(facts.next_attempt_at)));
            vars.push(("invoice", invoice()));
        }
        RenewalUpcoming => renewal(&mut vars),
        TrialEnding => vars.push(("trial_end", date(facts.trial_end))),
        PaymentReceived => {
            vars.push(("invoice", invoice()));
            vars.push(("receipt_url", Value::from(facts.receipt_url.clone())));
        }
        RefundCompleted => {
            let refunded = Value::from(money(facts.refund_amount, currency));
            vars.push((
                "refund",
                minijinja::context! { amount => refunded.clone(), amount_raw => &facts.refund_amount },
            ));
            vars.push(("amountRefunded", refunded));
            vars.push(("receipt_url", Value::from(facts.receipt_url.clone())));
        }
    }
    vars.into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into()
}

/// The names a template of `kind` may use, for documentation and error messages.
pub fn variable_names(kind: TriggerKind) -> Vec<String> {
    let context = build(kind, &sample(kind));
    let mut names = Vec::new();
    if let Ok(keys) = context.try_iter() {
        for key in keys {
            let value = context.get_item(&key).unwrap_or_default();
            match value.as_object().map(|o| o.repr()) {
                Some(ObjectRepr::Map) => {
                    for sub in value.try_iter().into_iter().flatten() {
                        names.push(format!("{key}.{sub}"));
                    }
                }
                _ => names.push(key.to_string()),
            }
        }
    }
    names
}

/// One variable as the editor lists it: its name, what it holds, and its value for the
/// trigger's sample event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub meaning: &'static str,
    pub example: String,
}

/// The variables of `kind` with their meaning and an example (empty when the sample lacks it).
pub fn variables(kind: TriggerKind) -> Vec<Variable> {
    let context = build(kind, &sample(kind));
    variable_names(kind)
        .into_iter()
        .map(|name| {
            let mut value = Some(context.clone());
            for part in name.split('.') {
                value = value.and_then(|v| v.get_attr(part).ok());
            }
            let example = value
                .filter(|v| !v.is_none() && !v.is_undefined())
                .map(|v| v.to_string())
                .unwrap_or_default();
            Variable {
                meaning: meaning(&name),
                name,
                example,
            }
        })
        .collect()
}

/// What a variable holds, in a few words.
fn meaning(name: &str) -> &'static str {
    match name {
        "customer.name" | "name" => "The customer's name, when Stripe has one",
        "customer.email" => "The customer's email address",
        "product.id" => "The Stripe product's id",
        "product.name" => "The product's name",
        "plan.id" => "The Stripe price's id",
        "plan.name" => "The plan's name (the price's nickname, else its amount)",
        "plan.interval" => "How often the plan bills: day, week, month or year",
        "amount" => "The amount, formatted in its currency",
        "amount_raw" => "The amount in minor units (cents), for the money filter",
        "currency" => "The currency code",
        "merchant.name" => "Your integration's name",
        "renewal_date" => "When the subscription renews (a date)",
        "days_until_renewal" => "Days from the event to the renewal",
        "trial_end" => "When the trial ends (a date)",
        "failure.reason" | "failReason" => "Why the payment failed, as the bank said",
        "next_attempt_at" => "When Stripe tries the payment again, if it will",
        "invoice.url" => "The invoice's page, where the customer can pay or update the card",
        "invoice.pdf" => "The invoice as a PDF",
        "receipt_url" => "The receipt's page",
        "refund.amount" | "amountRefunded" => "The amount refunded, formatted in its currency",
        "refund.amount_raw" => "The amount refunded in minor units",
        _ => "",
    }
}

/// A realistic example of each trigger's facts: templates are checked against it when saved,
/// and `template show` previews with it.
pub fn sample(kind: TriggerKind) -> EmailFacts {
    use TriggerKind::*;
    let created = 1_785_578_400; // 2026-08-01T10:00:00Z
    let mut facts = EmailFacts {
        customer_name: Some("Jenny Rosen".into()),
        customer_email: Some("jenny.rosen@example.com".into()),
        product_id: Some("prod_sample".into()),
        product_name: Some("Pro plan".into()),
        plan_id: Some("price_sample".into()),
        plan_name: Some("Monthly".into()),
        plan_interval: Some("month".into()),
        amount: Some(2000),
        currency: Some("usd".into()),
        merchant_name: "Your shop".into(),
        event_created: created,
        ..EmailFacts::default()
    };
    match kind {
        SubscriptionCreated => facts.renewal_date = Some(created + 30 * 86_400),
        SubscriptionCancelled => {}
        PaymentFailed => {
            facts.failure_reason = Some("Your card was declined.".into());
            facts.next_attempt_at = Some(created + 3 * 86_400);
            facts.invoice_url = Some("https://invoice.stripe.com/i/sample".into());
            facts.invoice_pdf = Some("https://invoice.stripe.com/i/sample/pdf".into());
        }
        RenewalUpcoming => facts.renewal_date = Some(created + 7 * 86_400),
        TrialEnding => facts.trial_end = Some(created + 3 * 86_400),
        PaymentReceived => {
            facts.invoice_url = Some("https://invoice.stripe.com/i/sample".into());
            facts.invoice_pdf = Some("https://invoice.stripe.com/i/sample/pdf".into());
            facts.receipt_url = Some("https://pay.stripe.com/receipts/sample".into());
        }
        RefundCompleted => {
            facts.refund_amount = Some(2000);
            facts.receipt_url = Some("https://pay.stripe.com/receipts/sample".into());
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The editor lists every variable with what it means and, where the sample has one, an
    /// example.
    #[test]
    fn every_variable_has_a_meaning() {
        for kind in TriggerKind::ALL {
            for v in variables(kind) {
                assert!(!v.meaning.is_empty(), "{kind}: {} has no meaning", v.name);
            }
        }
        let failed = variables(TriggerKind::PaymentFailed);
        let reason = failed.iter().find(|v| v.name == "failure.reason").unwrap();
        assert_eq!(reason.example, "Your card was declined.");
        let name = failed.iter().find(|v| v.name == "customer.name").unwrap();
        assert_eq!(name.example, "Jenny Rosen");
    }
}
