//! The built-in templates, one per trigger: seeded into the database on first start so a fresh
//! install sends something good-looking the moment a trigger fires, and the merchant edits them
//! like any other template. The HTML lives in `assets/email/`, one body per trigger inside a
//! shared layout built from tables and inline styles, which mail clients render alike.

use super::render::TemplateSource;
use crate::trigger::TriggerKind;

const LAYOUT: &str = include_str!("../../assets/email/layout.html");
const CONTENT_MARKER: &str = "<!-- CONTENT -->";

fn parts(kind: TriggerKind) -> (&'static str, &'static str) {
    use TriggerKind::*;
    match kind {
        SubscriptionCreated => (
            "Welcome to {{ product.name or merchant.name }}",
            include_str!("../../assets/email/subscription_created.html"),
        ),
        SubscriptionCancelled => (
            "Your {{ product.name or merchant.name }} subscription has been cancelled",
            include_str!("../../assets/email/subscription_cancelled.html"),
        ),
        PaymentFailed => (
            "Action needed: your payment to {{ merchant.name }} failed",
            include_str!("../../assets/email/payment_failed.html"),
        ),
        RenewalUpcoming => (
            "Your {{ product.name or merchant.name }} subscription renews on {{ renewal_date }}",
            include_str!("../../assets/email/renewal_upcoming.html"),
        ),
        TrialEnding => (
            "Your {{ product.name or merchant.name }} trial ends on {{ trial_end }}",
            include_str!("../../assets/email/trial_ending.html"),
        ),
        PaymentReceived => (
            "Payment received: {{ amount }}, thank you",
            include_str!("../../assets/email/payment_received.html"),
        ),
        RefundCompleted => (
            "Your refund of {{ refund.amount }} is on its way",
            include_str!("../../assets/email/refund_completed.html"),
        ),
    }
}

/// The built-in template for `kind`.
pub fn builtin(kind: TriggerKind) -> TemplateSource {
    let (subject, body) = parts(kind);
    TemplateSource {
        subject: subject.to_owned(),
        html: LAYOUT.replacen(CONTENT_MARKER, body.trim_end(), 1),
        text: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::render::validate;

    #[test]
    fn every_builtin_is_valid_for_its_trigger() {
        for kind in TriggerKind::ALL {
            let rendered = validate(kind, &builtin(kind)).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert!(!rendered.html.contains(CONTENT_MARKER));
            assert!(
                rendered.html.contains("Your shop"),
                "{kind}: merchant name shown"
            );
            assert!(
                rendered.text.contains("Jenny Rosen")
                    || kind == TriggerKind::PaymentReceived && rendered.text.contains("$20.00"),
                "{kind}: {}",
                rendered.text
            );
            assert!(!rendered.subject.contains("{{"), "{kind}");
        }
    }
}
