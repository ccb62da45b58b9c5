//! The built-in templates, one per trigger: seeded into the database on first start so a fresh
//! install sends something good-looking the moment a trigger fires, and the merchant edits them
//! like any other template. They live in `assets/email/`: per trigger an HTML body, set in a
//! shared layout of tables and inline styles (which mail clients render alike), and a text body.

use super::render::TemplateSource;
use crate::trigger::TriggerKind;

const LAYOUT: &str = include_str!("../../assets/email/layout.html");
const CONTENT_MARKER: &str = "<!-- CONTENT -->";

/// The subject, HTML body and text body of a built-in template. The text is written by hand
/// rather than derived: it reads better, and it saves deriving text from HTML for every email.
fn parts(kind: TriggerKind) -> (&'static str, &'static str, &'static str) {
    use TriggerKind::*;
    match kind {
        SubscriptionCreated => (
            "Welcome to {{ product.name or merchant.name }}",
            include_str!("../../assets/email/subscription_created.html"),
            include_str!("../../assets/email/subscription_created.txt"),
        ),
        SubscriptionCancelled => (
            "Your {{ product.name or merchant.name }} subscription has been cancelled",
            include_str!("../../assets/email/subscription_cancelled.html"),
            include_str!("../../assets/email/subscription_cancelled.txt"),
        ),
        PaymentFailed => (
            "Action needed: your payment to {{ merchant.name }} failed",
            include_str!("../../assets/email/payment_failed.html"),
            include_str!("../../assets/email/payment_failed.txt"),
        ),
        RenewalUpcoming => (
            "Your {{ product.name or merchant.name }} subscription renews on {{ renewal_date }}",
            include_str!("../../assets/email/renewal_upcoming.html"),
            include_str!("../../assets/email/renewal_upcoming.txt"),
        ),
        TrialEnding => (
            "Your {{ product.name or merchant.name }} trial ends on {{ trial_end }}",
            include_str!("../../assets/email/trial_ending.html"),
            include_str!("../../assets/email/trial_ending.txt"),
        ),
        PaymentReceived => (
            "Payment received: {{ amount }}, thank you",
            include_str!("../../assets/email/payment_received.html"),
            include_str!("../../assets/email/payment_received.txt"),
        ),
        RefundCompleted => (
            "Your refund of {{ refund.amount }} is on its way",
            include_str!("../../assets/email/refund_completed.html"),
            include_str!("../../assets/email/refund_completed.txt"),
        ),
    }
}

/// The built-in template for `kind`.
pub fn builtin(kind: TriggerKind) -> TemplateSource {
    let (subject, body, text) = parts(kind);
    TemplateSource {
        subject: subject.to_owned(),
        html: LAYOUT.replacen(CONTENT_MARKER, body.trim_end(), 1),
        text: Some(text.to_owned()),
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
