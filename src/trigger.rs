//! Maps a stored Stripe event to one of the 7 triggers, as a pure function.
//!
//! `classify` reads the event JSON and nothing else: no clock, no database, no network. What the
//! payload lacks (an email address, a product name, whether a charge paid an invoice, the invoice
//! behind a refund, a decline message) is listed by [`TriggerFacts::missing`] for the caller to
//! fetch. `product.*` and `price.*` events are [`Classification::Catalog`]: they send nothing but
//! keep cached names current. Customer data comes out cleaned by [`clean_text`]. Any JSON classifies without panicking;
//! a payload too broken to act on is `Ignored` with a reason that names the missing field.
//!
//! # Business keys
//!
//! Stripe sends one fact as several events (`invoice.paid` and `invoice.payment_succeeded`;
//! `refund.created` and `refund.updated`) and may deliver each event more than once, so the
//! outbox dedupes on [`TriggerFacts::business_key`], which names the fact, not the event:
//!
//! | trigger | key |
//! | --- | --- |
//! | subscription_created | `subscription:{sub}:created` |
//! | subscription_cancelled | `subscription:{sub}:cancelled` |
//! | trial_ending | `subscription:{sub}:trial_end:{trial_end}` (an extended trial is a new fact) |
//! | renewal_upcoming | `subscription:{sub}:renewal:{renewal_date}` (the preview has no invoice id) |
//! | payment_failed | `invoice:{in}:failed:attempt_{attempt_count}` (one email per retry) |
//! | payment_received | `invoice:{in}:paid`, or `charge:{ch}:paid` for a payment without invoice |
//! | refund_completed | `refund:{re}`, see below for `charge.refunded` |
//!
//! `charge.refunded` names its refund only in API versions before 2022-11-15, which embed the
//! refunds list; then its key is `refund:{re}` like the `refund.*` events. Later versions give
//! only the charge's cumulative `amount_refunded`, so the key is provisionally
//! `charge:{ch}:refunded:{amount_refunded}` (stable across redeliveries, distinct per partial
//! refund) and `missing()` asks for [`Lookup::RefundOfCharge`]: the caller lists the charge's
//! refunds, finds the one that brought the total to that amount with
//! [`refund_matching_total`], and re-keys the facts with [`refund_key`], so an email already sent
//! for `refund.created` is not sent again.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stripe::event::{integer, text, Charge, Invoice, InvoiceLink, Refund, Subscription};
pub use crate::stripe::event::{CustomerRef, ItemRef};

/// The 7 moments a merchant can email a customer about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    SubscriptionCreated,
    SubscriptionCancelled,
    PaymentFailed,
    RenewalUpcoming,
    TrialEnding,
    PaymentReceived,
    RefundCompleted,
}

impl TriggerKind {
    pub const ALL: [TriggerKind; 7] = [
        TriggerKind::SubscriptionCreated,
        TriggerKind::SubscriptionCancelled,
        TriggerKind::PaymentFailed,
        TriggerKind::RenewalUpcoming,
        TriggerKind::TrialEnding,
        TriggerKind::PaymentReceived,
        TriggerKind::RefundCompleted,
    ];

    /// The stable id stored in the database and used in template folders.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::SubscriptionCreated => "subscription_created",
            TriggerKind::SubscriptionCancelled => "subscription_cancelled",
            TriggerKind::PaymentFailed => "payment_failed",
            TriggerKind::RenewalUpcoming => "renewal_upcoming",
            TriggerKind::TrialEnding => "trial_ending",
            TriggerKind::PaymentReceived => "payment_received",
            TriggerKind::RefundCompleted => "refund_completed",
        }
    }
}

impl fmt::Display for TriggerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A trigger id that is not one of the 7.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown trigger {0:?}: use one of subscription_created, subscription_cancelled, \
     payment_failed, renewal_upcoming, trial_ending, payment_received, refund_completed"
)]
pub struct UnknownTrigger(pub String);

impl FromStr for TriggerKind {
    type Err = UnknownTrigger;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TriggerKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownTrigger(s.to_owned()))
    }
}

/// What an event means for the emails.
#[derive(Debug, Clone, PartialEq)]
pub enum Classification {
    Trigger(Box<TriggerFacts>),
    /// Not a trigger, or a payload too broken to act on; `reason` is for the event log.
    Ignored {
        reason: String,
    },
    /// `account.application.deauthorized`: the merchant (`account`, the envelope's connected
    /// account) revoked access, so sending for it must stop.
    Deauthorized {
        account: Option<String>,
    },
    /// `product.*`, `price.*` or (older accounts) `plan.*`: a name the catalog caches changed or
    /// went away, so emails keep saying what the merchant calls it now.
    Catalog(CatalogChange),
}

/// A product or price (plan) as a catalog event reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogChange {
    pub kind: CatalogKind,
    pub id: String,
    /// `*.deleted`: the object is gone and its cached name must be forgotten.
    pub deleted: bool,
    /// The object itself (`data.object`), for the caller to read the name from.
    pub object: Value,
    /// The event's `created`: an update older than what the catalog holds is stale (Stripe does
    /// not guarantee order).
    pub created: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogKind {
    Product,
    /// A price, or the older plan object of the same id.
    Price,
}

/// Everything an email about one trigger can say, as far as the event payload tells.
///
/// Amounts are in the currency's minor unit (see `templates::money`); times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerFacts {
    pub kind: TriggerKind,
    /// The outbox's dedupe key; see the module documentation.
    pub business_key: String,
    pub customer: CustomerRef,
    /// Every subscription item or invoice line, in Stripe's order; the template chooser picks.
    pub items: Vec<ItemRef>,
    /// Invoice `amount_paid` (payment_received) or `amount_due`; the subscription's Σ unit amount
    /// × quantity; the charge's `amount`; for refund_completed the refund's amount.
    pub amount: Option<i64>,
    pub currency: Option<String>,
    /// refund_completed only.
    pub refund_amount: Option<i64>,
    /// The decline message, when the payload carries it (an older invoice with its charge
    /// expanded); webhook payloads do not, so `missing()` then asks for
    /// [`Lookup::FailureReason`].
    pub failure_reason: Option<String>,
    /// payment_failed: the next retry, `None` when Stripe will not retry.
    pub next_attempt_at: Option<i64>,
    /// renewal_upcoming: when the renewal is charged; subscription_created / trial_ending: when
    /// the current period ends.
    pub renewal_date: Option<i64>,
    pub trial_end: Option<i64>,
    pub invoice_url: Option<String>,
    pub invoice_pdf: Option<String>,
    /// The charge's receipt; an invoice carries none, so `missing()` asks for
    /// [`Lookup::Receipt`] (the charge that paid it).
    pub receipt_url: Option<String>,
    pub invoice_id: Option<String>,
    pub subscription_id: Option<String>,
    pub charge_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub refund_id: Option<String>,
    /// `charge.refunded` only: the charge's cumulative `amount_refunded` after this refund, which
    /// identifies the refund when the payload does not name it (`refund_id` is `None`).
    pub charge_amount_refunded: Option<i64>,
    /// subscription_cancelled: `cancellation_details.reason`.
    pub cancellation_reason: Option<String>,
    /// A `charge.succeeded` from API 2025-03-31.basil or later no longer says whether it paid
    /// an invoice; if it did, `invoice.paid` covers it and this trigger must be dropped.
    pub invoice_link_unknown: bool,
    /// refund_completed: the refunded charge may have paid an invoice whose lines name the
    /// product and plan (a refund names only its charge). `false` once the payload or a lookup
    /// said the charge paid no invoice, or once the invoice was read.
    #[serde(default)]
    pub refund_invoice_unknown: bool,
}

/// Something to fetch from the Stripe API before the email can be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lookup {
    /// `GET /v1/customers/{id}` → `email`, `name`.
    CustomerEmail(String),
    /// `GET /v1/charges/{id}` → `customer`, `billing_details.email`, `receipt_url`: a refund
    /// names nothing but its charge.
    Charge(String),
    /// `GET /v1/products/{id}` → `name`; event payloads never carry it.
    ProductName(String),
    /// `GET /v1/invoice_payments?payment[type]=payment_intent&payment[payment_intent]={id}`:
    /// any result means the charge paid an invoice and the trigger is dropped.
    InvoiceOfCharge { payment_intent_id: String },
    /// `GET /v1/refunds?charge={charge_id}`, then [`refund_matching_total`] and [`refund_key`].
    RefundOfCharge {
        charge_id: String,
        amount_refunded: i64,
    },
    /// refund_completed: the invoice the refunded charge paid (`invoice_id` when the payload
    /// named it; else the charge's `invoice` before API 2025-03-31.basil, or the invoice payment
    /// of its payment intent since), then `GET /v1/invoices/{id}` for the lines' products.
    InvoiceOfRefund {
        invoice_id: Option<String>,
        charge_id: Option<String>,
        payment_intent_id: Option<String>,
    },
    /// payment_failed: the decline message, when the payload did not expand it: the charge's
    /// `failure_message` (an older invoice names its charge), else the payment intent's
    /// `last_payment_error.message` (named by an older invoice, else found through
    /// `GET /v1/invoice_payments?invoice={invoice_id}`).
    FailureReason {
        invoice_id: Option<String>,
        charge_id: Option<String>,
        payment_intent_id: Option<String>,
    },
    /// payment_received from an invoice: the `receipt_url` of the charge that paid it, found as
    /// for [`Lookup::FailureReason`] (invoices carry no receipt link).
    Receipt {
        invoice_id: String,
        charge_id: Option<String>,
        payment_intent_id: Option<String>,
    },
}

impl TriggerFacts {
    /// Cleans every text that comes from customer data or Stripe's words with [`clean_text`]:
    /// names, email, product names and the decline message. Ids and URLs are Stripe's own.
    pub fn sanitize(&mut self) {
        let customer = &mut self.customer;
        customer.name = clean(customer.name.take());
        customer.email = clean(customer.email.take());
        for item in &mut self.items {
            item.product_name = clean(item.product_name.take());
        }
        self.failure_reason = clean(self.failure_reason.take());
        self.cancellation_reason = clean(self.cancellation_reason.take());
    }

    fn new(kind: TriggerKind, business_key: String) -> TriggerFacts {
        TriggerFacts {
            kind,
            business_key,
            customer: CustomerRef::default(),
            items: Vec::new(),
            amount: None,
            currency: None,
            refund_amount: None,
            failure_reason: None,
            next_attempt_at: None,
            renewal_date: None,
            trial_end: None,
            invoice_url: None,
            invoice_pdf: None,
            receipt_url: None,
            invoice_id: None,
            subscription_id: None,
            charge_id: None,
            payment_intent_id: None,
            refund_id: None,
            charge_amount_refunded: None,
            cancellation_reason: None,
            invoice_link_unknown: false,
            refund_invoice_unknown: false,
        }
    }

    /// What to fetch before an email can be sent, in the order to fetch it. Empty when the
    /// payload is enough. When neither an email, a customer id nor a charge id is known there is
    /// nothing to fetch and nobody to write to: the caller must treat that as a permanent failure.
    pub fn missing(&self) -> Vec<Lookup> {
        let mut lookups = Vec::new();
        if self.customer.email.is_none() {
            if let Some(customer) = &self.customer.id {
                lookups.push(Lookup::CustomerEmail(customer.clone()));
            } else if let Some(charge) = &self.charge_id {
                lookups.push(Lookup::Charge(charge.clone()));
            }
        }
        if self.invoice_link_unknown {
            if let Some(intent) = &self.payment_intent_id {
                lookups.push(Lookup::InvoiceOfCharge {
                    payment_intent_id: intent.clone(),
                });
            }
        }
        if self.kind == TriggerKind::RefundCompleted && self.refund_invoice_unknown {
            lookups.push(Lookup::InvoiceOfRefund {
                invoice_id: self.invoice_id.clone(),
                // A charge.refunded payload is the charge itself: nothing more to read from it.
                charge_id: self
                    .charge_id
                    .clone()
                    .filter(|_| self.charge_amount_refunded.is_none()),
                payment_intent_id: self.payment_intent_id.clone(),
            });
        }
        if self.kind == TriggerKind::PaymentFailed && self.failure_reason.is_none() {
            let ids = [&self.invoice_id, &self.charge_id, &self.payment_intent_id];
            if ids.iter().any(|id| id.is_some()) {
                lookups.push(Lookup::FailureReason {
                    invoice_id: self.invoice_id.clone(),
                    charge_id: self.charge_id.clone(),
                    payment_intent_id: self.payment_intent_id.clone(),
                });
            }
        }
        if self.kind == TriggerKind::PaymentReceived && self.receipt_url.is_none() {
            if let Some(invoice) = &self.invoice_id {
                lookups.push(Lookup::Receipt {
                    invoice_id: invoice.clone(),
                    charge_id: self.charge_id.clone(),
                    payment_intent_id: self.payment_intent_id.clone(),
                });
            }
        }
        if self.kind == TriggerKind::RefundCompleted && self.refund_id.is_none() {
            if let (Some(charge), Some(total)) = (&self.charge_id, self.charge_amount_refunded) {
                lookups.push(Lookup::RefundOfCharge {
                    charge_id: charge.clone(),
                    amount_refunded: total,
                });
            }
        }
        for item in &self.items {
            if let (Some(product), None) = (&item.product_id, &item.product_name) {
                let lookup = Lookup::ProductName(product.clone());
                if !lookups.contains(&lookup) {
                    lookups.push(lookup);
                }
            }
        }
        lookups
    }
}

/// The business key of a completed refund, shared by every event that reports it.
pub fn refund_key(refund_id: &str) -> String {
    format!("refund:{refund_id}")
}

/// Given the `data` of `GET /v1/refunds?charge=…`, the id of the refund that brought the charge's
/// `amount_refunded` to `amount_refunded`. Failed and canceled refunds gave their money back, so
/// they do not count towards the total.
pub fn refund_matching_total(refunds: &[Value], amount_refunded: i64) -> Option<String> {
    let mut counted: Vec<(i64, usize, &Value)> = refunds
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            !matches!(
                r.get("status").and_then(Value::as_str),
                Some("failed" | "canceled")
            )
        })
        // Stripe lists newest first; the negated position orders equal times oldest first.
        .map(|(i, r)| (integer(r.get("created")).unwrap_or(0), usize::MAX - i, r))
        .collect();
    counted.sort_by_key(|&(created, order, _)| (created, order));
    let mut total = 0i64;
    for (_, _, refund) in counted {
        total = total.checked_add(integer(refund.get("amount"))?)?;
        if total == amount_refunded {
            return text(refund.get("id"));
        }
    }
    None
}

/// The event types a webhook endpoint the program creates subscribes to, and the catch-up
/// lists: each of the 7 triggers' events once (not the aliases that repeat a fact:
/// `invoice.payment_succeeded`, `charge.refunded`, `charge.refund.updated`, whose facts the
/// business keys would only dedupe), and the catalog's updates. A pasted-secret endpoint may send
/// the aliases too; `classify` takes them all.
pub const SUBSCRIBED_EVENTS: &[&str] = &[
    "customer.subscription.created",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.upcoming",
    "charge.succeeded",
    "refund.created",
    "refund.updated",
    "product.created",
    "product.updated",
    "product.deleted",
    "price.created",
    "price.updated",
    "price.deleted",
];

/// `billing_reason`s of invoices a subscription raised by itself: renewals, the first invoice,
/// prorations from a plan change and usage thresholds (`subscription` is the pre-2018 name for
/// all of them). A failure of any of these is an automatic charge the customer did not witness;
/// `manual` and `quote_accept` invoices are the merchant's own business.
const SUBSCRIPTION_BILLING_REASONS: [&str; 5] = [
    "subscription_cycle",
    "subscription_create",
    "subscription_update",
    "subscription_threshold",
    "subscription",
];

/// Reads one event. See the module documentation for the rules.
pub fn classify(event: &Value) -> Classification {
    let Some(event_type) = event.get("type").and_then(Value::as_str) else {
        return Classification::Ignored {
            reason: "malformed event: type missing or not a string".to_owned(),
        };
    };
    if event_type == "account.application.deauthorized" {
        // Events before API 2017-05-25 called the connected account `user_id`.
        let account = text(event.get("account")).or_else(|| text(event.get("user_id")));
        return Classification::Deauthorized { account };
    }
    if let Some(change) = catalog_change(event, event_type) {
        return change;
    }
    let facts = match event_type {
        "customer.subscription.created" => {
            subscription(event, event_type, TriggerKind::SubscriptionCreated)
        }
        "customer.subscription.deleted" => {
            subscription(event, event_type, TriggerKind::SubscriptionCancelled)
        }
        "customer.subscription.trial_will_end" => {
            subscription(event, event_type, TriggerKind::TrialEnding)
        }
        "customer.subscription.updated" => Err(subscription_updated(event, event_type)),
        "invoice.paid" | "invoice.payment_succeeded" => invoice_paid(event, event_type),
        "invoice.payment_failed" => invoice_payment_failed(event, event_type),
        "invoice.upcoming" => invoice_upcoming(event, event_type),
        "charge.succeeded" => charge_succeeded(event, event_type),
        "charge.refunded" => charge_refunded(event, event_type),
        "refund.created" | "refund.updated" | "charge.refund.updated" => refund(event, event_type),
        _ => Err(format!("{event_type} is not one of the 7 triggers")),
    };
    match facts {
        Ok(mut facts) => {
            facts.sanitize();
            Classification::Trigger(Box::new(facts))
        }
        Err(reason) => Classification::Ignored { reason },
    }
}

/// `product.*`, `price.*` and `plan.*` events: created and updated objects refresh the
/// catalog, deleted ones leave it.
fn catalog_change(event: &Value, event_type: &str) -> Option<Classification> {
    let (object, action) = event_type.split_once('.')?;
    let kind = match object {
        "product" => CatalogKind::Product,
        "price" | "plan" => CatalogKind::Price,
        _ => return None,
    };
    let deleted = match action {
        "created" | "updated" => false,
        "deleted" => true,
        _ => return None,
    };
    let change = data_object(event, event_type, object).and_then(|data| {
        let id = required(text(data.get("id")), event_type, "id")?;
        Ok(CatalogChange {
            kind,
            id,
            deleted,
            object: data.clone(),
            created: integer(event.get("created")).unwrap_or(0),
        })
    });
    Some(match change {
        Ok(change) => Classification::Catalog(change),
        Err(reason) => Classification::Ignored { reason },
    })
}

/// Customer data as it may reach a header, the log or a terminal: one line, no control
/// characters. Line breaks, tabs and other whitespace controls (and the Unicode line and
/// paragraph separators) become a space; a terminal escape sequence (ESC `[` … or ESC `]` … BEL)
/// goes whole, so no `[2J` is left behind; other control characters (NUL, DEL, C1) and the
/// bidirectional overrides and isolates that can make text read backwards are dropped; runs of
/// whitespace collapse to one space, trimmed.
pub fn clean_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            match chars.peek() {
                // CSI: parameter and intermediate bytes, then a final byte in @..~; anything
                // else ends it without being eaten.
                Some('[') => {
                    chars.next();
                    while let Some(&c) = chars.peek() {
                        if !('\u{20}'..='\u{7e}').contains(&c) {
                            break;
                        }
                        chars.next();
                        if c >= '\u{40}' {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ST (ESC \\), or the end of the text.
                Some(']') => {
                    chars.next();
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {}
            }
            continue;
        }
        let blank = c.is_whitespace();
        let dropped = !blank
            && (c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'));
        if dropped {
            continue;
        }
        if blank {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    out
}

/// [`clean_text`], and `None` when nothing is left.
pub fn clean(text: Option<String>) -> Option<String> {
    text.map(|t| clean_text(&t)).filter(|t| !t.is_empty())
}

/// `data.object`, checked to be a JSON object of the expected Stripe type when it says its type.
fn data_object<'a>(
    event: &'a Value,
    event_type: &str,
    expected: &str,
) -> Result<&'a Value, String> {
    let object = event
        .pointer("/data/object")
        .filter(|o| o.is_object())
        .ok_or_else(|| format!("malformed {event_type}: data.object missing or not an object"))?;
    match object.get("object").and_then(Value::as_str) {
        Some(found) if found != expected => Err(format!(
            "malformed {event_type}: data.object.object is {found:?}, expected {expected:?}"
        )),
        _ => Ok(object),
    }
}

fn required<T>(value: Option<T>, event_type: &str, field: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("malformed {event_type}: data.object.{field} missing"))
}

fn subscription(
    event: &Value,
    event_type: &str,
    kind: TriggerKind,
) -> Result<TriggerFacts, String> {
    let sub = Subscription(data_object(event, event_type, "subscription")?);
    let id = required(sub.id(), event_type, "id")?;
    let key = match kind {
        TriggerKind::SubscriptionCancelled => format!("subscription:{id}:cancelled"),
        TriggerKind::TrialEnding => {
            let trial_end = required(sub.trial_end(), event_type, "trial_end")?;
            format!("subscription:{id}:trial_end:{trial_end}")
        }
        _ => format!("subscription:{id}:created"),
    };
    let cancelled = kind == TriggerKind::SubscriptionCancelled;
    Ok(TriggerFacts {
        customer: sub.customer(),
        items: sub.items(),
        amount: sub.amount(),
        currency: sub.currency(),
        renewal_date: if cancelled { None } else { sub.period_end() },
        trial_end: sub.trial_end(),
        subscription_id: Some(id),
        cancellation_reason: if cancelled {
            sub.cancellation_reason()
        } else {
            None
        },
        ..TriggerFacts::new(kind, key)
    })
}

fn subscription_updated(event: &Value, event_type: &str) -> String {
    match data_object(event, event_type, "subscription") {
        Ok(object) if Subscription(object).is_cancel_scheduled() => format!(
            "{event_type} with a scheduled cancellation (cancel_at_period_end / cancel_at): the \
             subscription has not ended yet; customer.subscription.deleted will follow"
        ),
        Ok(_) => format!("{event_type} is not one of the 7 triggers"),
        Err(reason) => reason,
    }
}

/// The facts every invoice trigger shares.
fn invoice_facts(inv: Invoice, kind: TriggerKind, key: String) -> TriggerFacts {
    TriggerFacts {
        customer: inv.customer(),
        items: inv.items(),
        currency: text(inv.0.get("currency")),
        invoice_url: text(inv.0.get("hosted_invoice_url")),
        invoice_pdf: text(inv.0.get("invoice_pdf")),
        invoice_id: inv.id(),
        subscription_id: inv.subscription_id(),
        charge_id: inv.charge_id(),
        payment_intent_id: inv.payment_intent_id(),
        ..TriggerFacts::new(kind, key)
    }
}

fn invoice_paid(event: &Value, event_type: &str) -> Result<TriggerFacts, String> {
    let inv = Invoice(data_object(event, event_type, "invoice")?);
    let id = required(inv.id(), event_type, "id")?;
    let paid = required(integer(inv.0.get("amount_paid")), event_type, "amount_paid")?;
    if paid <= 0 {
        return Err(format!(
            "{event_type} with amount_paid {paid} (e.g. $0 trial invoice)"
        ));
    }
    Ok(TriggerFacts {
        amount: Some(paid),
        ..invoice_facts(
            inv,
            TriggerKind::PaymentReceived,
            format!("invoice:{id}:paid"),
        )
    })
}

fn invoice_payment_failed(event: &Value, event_type: &str) -> Result<TriggerFacts, String> {
    let inv = Invoice(data_object(event, event_type, "invoice")?);
    let collection = required(
        text(inv.0.get("collection_method")),
        event_type,
        "collection_method",
    )?;
    if collection != "charge_automatically" {
        return Err(format!(
            "{event_type} of a {collection} invoice: the customer pays it from the hosted \
             invoice page, no automatic payment failed"
        ));
    }
    let reason = text(inv.0.get("billing_reason")).unwrap_or_else(|| "missing".to_owned());
    if !SUBSCRIPTION_BILLING_REASONS.contains(&reason.as_str()) {
        return Err(format!(
            "{event_type} of a non-subscription invoice (billing_reason {reason})"
        ));
    }
    let id = required(inv.id(), event_type, "id")?;
    let attempt = required(
        integer(inv.0.get("attempt_count")),
        event_type,
        "attempt_count",
    )?;
    Ok(TriggerFacts {
        amount: integer(inv.0.get("amount_due")),
        failure_reason: inv.failure_message(),
        next_attempt_at: integer(inv.0.get("next_payment_attempt")),
        ..invoice_facts(
            inv,
            TriggerKind::PaymentFailed,
            format!("invoice:{id}:failed:attempt_{attempt}"),
        )
    })
}

fn invoice_upcoming(event: &Value, event_type: &str) -> Result<TriggerFacts, String> {
    let inv = Invoice(data_object(event, event_type, "invoice")?);
    let subscription = required(inv.subscription_id(), event_type, "subscription")?;
    let renewal = required(
        integer(inv.0.get("next_payment_attempt"))
            .or_else(|| inv.subscription_period_start())
            .or_else(|| integer(inv.0.get("period_end"))),
        event_type,
        "next_payment_attempt",
    )?;
    Ok(TriggerFacts {
        amount: integer(inv.0.get("amount_due")),
        renewal_date: Some(renewal),
        ..invoice_facts(
            inv,
            TriggerKind::RenewalUpcoming,
            format!("subscription:{subscription}:renewal:{renewal}"),
        )
    })
}

/// The facts every charge trigger shares.
fn charge_facts(charge: Charge, kind: TriggerKind, key: String) -> TriggerFacts {
    TriggerFacts {
        customer: charge.customer(),
        currency: text(charge.0.get("currency")),
        receipt_url: charge.receipt_url(),
        charge_id: charge.id(),
        payment_intent_id: charge.payment_intent_id(),
        ..TriggerFacts::new(kind, key)
    }
}

fn charge_succeeded(event: &Value, event_type: &str) -> Result<TriggerFacts, String> {
    let charge = Charge(data_object(event, event_type, "charge")?);
    let id = required(charge.id(), event_type, "id")?;
    if charge.0.get("captured") == Some(&Value::Bool(false)) {
        return Err(format!(
            "{event_type} with captured false: an authorization only, no money received yet"
        ));
    }
    let invoice_link_unknown = match charge.invoice_link() {
        InvoiceLink::Invoice(invoice) => {
            return Err(format!(
                "{event_type} of invoice {invoice}: invoice.paid covers it"
            ))
        }
        InvoiceLink::NoInvoice => false,
        // Invoices are paid through PaymentIntents (since 2019), so a charge without one
        // cannot be an invoice payment and there is nothing to look up.
        InvoiceLink::NotInPayload => charge.payment_intent_id().is_some(),
    };
    Ok(TriggerFacts {
        amount: integer(charge.0.get("amount")),
        invoice_link_unknown,
        ..charge_facts(
            charge,
            TriggerKind::PaymentReceived,
            format!("charge:{id}:paid"),
        )
    })
}

fn charge_refunded(event: &Value, event_type: &str) -> Result<TriggerFacts, String> {
    let charge = Charge(data_object(event, event_type, "charge")?);
    let id = required(charge.id(), event_type, "id")?;
    let previous = event.pointer("/data/previous_attributes");
    let refund = charge.new_refund(previous);
    if let Some(status) = refund.and_then(|r| r.status()) {
        if status != "succeeded" {
            return Err(format!(
                "{event_type} whose refund has status {status}; charge.refund.updated reports \
                 when it succeeds"
            ));
        }
    }
    let total = integer(charge.0.get("amount_refunded"));
    let before = previous.and_then(|p| integer(p.get("amount_refunded")));
    let delta = total
        .zip(before)
        .and_then(|(total, before)| total.checked_sub(before))
        .filter(|delta| *delta > 0);
    let refund_amount = delta.or_else(|| refund.and_then(|r| r.amount())).or(total);
    let refund_id = refund.and_then(|r| r.id());
    let key = match &refund_id {
        Some(refund_id) => refund_key(refund_id),
        None => {
            let total = required(total, event_type, "amount_refunded")?;
            format!("charge:{id}:refunded:{total}")
        }
    };
    let (invoice_id, refund_invoice_unknown) = match charge.invoice_link() {
        InvoiceLink::Invoice(invoice) => (Some(invoice), true),
        InvoiceLink::NoInvoice => (None, false),
        InvoiceLink::NotInPayload => (None, true),
    };
    Ok(TriggerFacts {
        amount: refund_amount,
        refund_amount,
        refund_id,
        charge_amount_refunded: total,
        invoice_id,
        refund_invoice_unknown,
        ..charge_facts(charge, TriggerKind::RefundCompleted, key)
    })
}

fn refund(event: &Value, event_type: &str) -> Result<TriggerFacts, String> {
    let refund = Refund(data_object(event, event_type, "refund")?);
    let id = required(refund.id(), event_type, "id")?;
    let status = required(refund.status(), event_type, "status")?;
    if status != "succeeded" {
        return Err(format!("{event_type} with status {status}"));
    }
    // A refund names at most its charge; only an expanded one tells which invoice it paid.
    let (invoice_id, refund_invoice_unknown) = match refund.charge().map(|c| c.invoice_link()) {
        Some(InvoiceLink::Invoice(invoice)) => (Some(invoice), true),
        Some(InvoiceLink::NoInvoice) => (None, false),
        Some(InvoiceLink::NotInPayload) | None => (None, true),
    };
    Ok(TriggerFacts {
        customer: refund.customer(),
        amount: refund.amount(),
        currency: refund.currency(),
        refund_amount: refund.amount(),
        receipt_url: refund.receipt_url(),
        charge_id: refund.charge_id(),
        payment_intent_id: refund.payment_intent_id(),
        refund_id: Some(id.clone()),
        invoice_id,
        refund_invoice_unknown,
        ..TriggerFacts::new(TriggerKind::RefundCompleted, refund_key(&id))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::templates::money::format_money;

    const CUS: &str = "cus_QXg1o8vcGmoR32";
    const SUB: &str = "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw";
    const INV: &str = "in_1Pgc6tB7WZ01zgkWu9fdqL6I";
    const PROD: &str = "prod_QXg1hqf4jFNsqG";
    const PRICE: &str = "price_1PgafmB7WZ01zgkW6dKueIc5";
    const CHARGE: &str = "ch_1PgafuB7WZ01zgkWXYmPNZs8";
    const CHARGE_PI: &str = "pi_1PgafuB7WZ01zgkWbC3rD9Lx";
    const REFUND: &str = "re_1Pgc72B7WZ01zgkWqPvrRrPE";
    /// The charge and payment intent that paid `INV`, as named by the older invoice shape.
    const INV_CHARGE: &str = "ch_3Pgc6tB7WZ01zgkW1Hq2Zp0A";
    const INV_PI: &str = "pi_3Pgc6tB7WZ01zgkW1kWb8nRf";
    const INVOICE_URL: &str = "https://invoice.stripe.com/i/acct_1PgafTB7WZ01zgkW/test_YWNjdF8xUGdhZlRCN1daMDF6Z2tXLF9RWGhWbkMyaDBKY3p3YywxMzE0NTY3ODk00200mQ3ZkTsp";
    const RECEIPT_URL: &str = "https://pay.stripe.com/receipts/payment/CAcaFwoVYWNjdF8xUGdhZlRCN1daMDF6Z2tXKI_ei7UGMgZv2S_KfiY6LCJrxC7awazgQA9I88krZKw5uuCkZ5Nup2tomEtAbSpdfzjVZHO3ZYP5KFZP";

    fn event(path: &str) -> Value {
        let file = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    fn facts_of(event: &Value) -> TriggerFacts {
        match classify(event) {
            Classification::Trigger(facts) => *facts,
            other => panic!("expected a trigger, got {other:?}"),
        }
    }

    fn facts(path: &str) -> TriggerFacts {
        facts_of(&event(path))
    }

    fn reason_of(event: &Value) -> String {
        match classify(event) {
            Classification::Ignored { reason } => reason,
            other => panic!("expected Ignored, got {other:?}"),
        }
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    fn jenny() -> CustomerRef {
        CustomerRef {
            id: some(CUS),
            email: some("jenny.rosen@example.com"),
            name: some("Jenny Rosen"),
        }
    }

    fn jenny_id_only() -> CustomerRef {
        CustomerRef {
            id: some(CUS),
            ..CustomerRef::default()
        }
    }

    fn item(product: &str, price: &str, interval: Option<&str>) -> ItemRef {
        ItemRef {
            product_id: some(product),
            price_id: some(price),
            interval: interval.map(str::to_owned),
            product_name: None,
        }
    }

    fn new(kind: TriggerKind, key: &str) -> TriggerFacts {
        TriggerFacts::new(kind, key.to_owned())
    }

    /// What every fixture on disk must classify as; a new fixture without a row fails the test.
    #[test]
    fn every_fixture_has_an_expected_classification() {
        use TriggerKind::*;
        let expected: &[(&str, Option<TriggerKind>)] = &[
            ("stripe/events/account.application.deauthorized.json", None),
            ("stripe/events/charge.refunded.json", Some(RefundCompleted)),
            ("stripe/events/charge.succeeded.json", Some(PaymentReceived)),
            (
                "stripe/events/customer.subscription.created.connect.json",
                Some(SubscriptionCreated),
            ),
            (
                "stripe/events/customer.subscription.created.json",
                Some(SubscriptionCreated),
            ),
            (
                "stripe/events/customer.subscription.deleted.json",
                Some(SubscriptionCancelled),
            ),
            (
                "stripe/events/customer.subscription.trial_will_end.json",
                Some(TrialEnding),
            ),
            (
                "stripe/events/customer.subscription.updated.cancel_at_period_end.json",
                None,
            ),
            (
                "stripe/events/invoice.paid.connect.json",
                Some(PaymentReceived),
            ),
            ("stripe/events/invoice.paid.json", Some(PaymentReceived)),
            (
                "stripe/events/invoice.payment_failed.json",
                Some(PaymentFailed),
            ),
            (
                "stripe/events/invoice.payment_succeeded.json",
                Some(PaymentReceived),
            ),
            ("stripe/events/invoice.upcoming.json", Some(RenewalUpcoming)),
            ("stripe/events/refund.created.json", Some(RefundCompleted)),
            ("stripe/events/refund.updated.json", Some(RefundCompleted)),
            ("older/charge.refund.updated.json", Some(RefundCompleted)),
            ("older/charge.refunded.json", Some(RefundCompleted)),
            ("older/charge.succeeded.invoice.json", None),
            ("older/charge.succeeded.kwd.json", Some(PaymentReceived)),
            ("older/charge.succeeded.one_off.json", Some(PaymentReceived)),
            (
                "older/customer.subscription.created.json",
                Some(SubscriptionCreated),
            ),
            (
                "older/customer.subscription.created.multi_item.json",
                Some(SubscriptionCreated),
            ),
            (
                "older/customer.subscription.deleted.json",
                Some(SubscriptionCancelled),
            ),
            (
                "older/customer.subscription.trial_will_end.json",
                Some(TrialEnding),
            ),
            ("older/invoice.paid.jpy.json", Some(PaymentReceived)),
            ("older/invoice.paid.json", Some(PaymentReceived)),
            (
                "older/invoice.payment_failed.expanded_charge.json",
                Some(PaymentFailed),
            ),
            ("older/invoice.payment_failed.json", Some(PaymentFailed)),
            ("older/invoice.upcoming.json", Some(RenewalUpcoming)),
        ];
        let mut on_disk = Vec::new();
        for dir in ["stripe/events", "older"] {
            let path = format!("{}/tests/fixtures/{dir}", env!("CARGO_MANIFEST_DIR"));
            for entry in std::fs::read_dir(path).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if name.ends_with(".json") {
                    on_disk.push(format!("{dir}/{name}"));
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = expected.iter().map(|(p, _)| (*p).to_owned()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
        for (path, kind) in expected {
            let got = match classify(&event(path)) {
                Classification::Trigger(facts) => Some(facts.kind),
                Classification::Ignored { .. }
                | Classification::Deauthorized { .. }
                | Classification::Catalog(_) => None,
            };
            assert_eq!(got, *kind, "{path}");
        }
    }

    #[test]
    fn subscription_created_current_and_older() {
        let expected = TriggerFacts {
            customer: jenny_id_only(),
            items: vec![item(PROD, PRICE, Some("month"))],
            amount: Some(2000),
            currency: some("usd"),
            renewal_date: Some(1785574800),
            subscription_id: some(SUB),
            ..new(
                TriggerKind::SubscriptionCreated,
                &format!("subscription:{SUB}:created"),
            )
        };
        assert_eq!(
            facts("stripe/events/customer.subscription.created.json"),
            expected
        );
        assert_eq!(
            facts("stripe/events/customer.subscription.created.connect.json"),
            expected
        );
        assert_eq!(facts("older/customer.subscription.created.json"), expected);
        assert_eq!(
            expected.missing(),
            vec![
                Lookup::CustomerEmail(CUS.into()),
                Lookup::ProductName(PROD.into())
            ]
        );
    }

    #[test]
    fn subscription_created_with_several_items_keeps_them_in_order() {
        let socks = "prod_QXhA7kZp2cVbNm";
        let facts = facts("older/customer.subscription.created.multi_item.json");
        assert_eq!(
            facts.items,
            vec![
                item(PROD, PRICE, Some("month")),
                item(socks, "price_1PgbS0B7WZ01zgkWt5Kx8VdQ", Some("month")),
            ]
        );
        assert_eq!(facts.amount, Some(3500));
        assert_eq!(facts.renewal_date, Some(1785574800));
        assert_eq!(
            facts.missing(),
            vec![
                Lookup::CustomerEmail(CUS.into()),
                Lookup::ProductName(PROD.into()),
                Lookup::ProductName(socks.into()),
            ]
        );
    }

    #[test]
    fn subscription_cancelled_current_and_older() {
        let expected = |reason: &str| TriggerFacts {
            customer: jenny_id_only(),
            items: vec![item(PROD, PRICE, Some("month"))],
            amount: Some(2000),
            currency: some("usd"),
            subscription_id: some(SUB),
            cancellation_reason: some(reason),
            ..new(
                TriggerKind::SubscriptionCancelled,
                &format!("subscription:{SUB}:cancelled"),
            )
        };
        assert_eq!(
            facts("stripe/events/customer.subscription.deleted.json"),
            expected("cancellation_requested")
        );
        assert_eq!(
            facts("older/customer.subscription.deleted.json"),
            expected("payment_failed")
        );
    }

    #[test]
    fn scheduled_cancellation_is_ignored() {
        let reason = reason_of(&event(
            "stripe/events/customer.subscription.updated.cancel_at_period_end.json",
        ));
        assert_eq!(
            reason,
            "customer.subscription.updated with a scheduled cancellation (cancel_at_period_end / \
             cancel_at): the subscription has not ended yet; customer.subscription.deleted will \
             follow"
        );
        let mut other_update =
            event("stripe/events/customer.subscription.updated.cancel_at_period_end.json");
        other_update["data"]["object"]["cancel_at_period_end"] = json!(false);
        other_update["data"]["object"]["cancel_at"] = Value::Null;
        assert_eq!(
            reason_of(&other_update),
            "customer.subscription.updated is not one of the 7 triggers"
        );
    }

    #[test]
    fn trial_ending_current_and_older() {
        let expected = TriggerFacts {
            customer: jenny_id_only(),
            items: vec![item(PROD, PRICE, Some("month"))],
            amount: Some(2000),
            currency: some("usd"),
            renewal_date: Some(1784106000),
            trial_end: Some(1784106000),
            subscription_id: some(SUB),
            ..new(
                TriggerKind::TrialEnding,
                &format!("subscription:{SUB}:trial_end:1784106000"),
            )
        };
        assert_eq!(
            facts("stripe/events/customer.subscription.trial_will_end.json"),
            expected
        );
        assert_eq!(
            facts("older/customer.subscription.trial_will_end.json"),
            expected
        );
    }

    #[test]
    fn payment_received_from_invoice_current_shape() {
        let expected = TriggerFacts {
            customer: jenny(),
            // Basil invoice lines name the price by id only, without its interval.
            items: vec![item(PROD, PRICE, None)],
            amount: Some(2000),
            currency: some("usd"),
            invoice_url: some(INVOICE_URL),
            invoice_pdf: Some(format!("{INVOICE_URL}/pdf?s=ap")),
            invoice_id: some(INV),
            subscription_id: some(SUB),
            ..new(TriggerKind::PaymentReceived, &format!("invoice:{INV}:paid"))
        };
        assert_eq!(facts("stripe/events/invoice.paid.json"), expected);
        assert_eq!(facts("stripe/events/invoice.paid.connect.json"), expected);
        assert_eq!(
            facts("stripe/events/invoice.payment_succeeded.json"),
            expected
        );
        assert_eq!(
            expected.missing(),
            vec![
                Lookup::Receipt {
                    invoice_id: INV.into(),
                    charge_id: None,
                    payment_intent_id: None,
                },
                Lookup::ProductName(PROD.into())
            ]
        );
    }

    #[test]
    fn payment_received_from_invoice_older_shape() {
        let older = facts("older/invoice.paid.json");
        assert_eq!(
            older,
            TriggerFacts {
                customer: jenny(),
                items: vec![item(PROD, PRICE, Some("month"))],
                amount: Some(2000),
                currency: some("usd"),
                invoice_url: some(INVOICE_URL),
                invoice_pdf: Some(format!("{INVOICE_URL}/pdf?s=ap")),
                invoice_id: some(INV),
                subscription_id: some(SUB),
                charge_id: some(INV_CHARGE),
                payment_intent_id: some(INV_PI),
                ..new(TriggerKind::PaymentReceived, &format!("invoice:{INV}:paid"))
            }
        );
        // The same payment seen through an endpoint of either version is one email.
        assert_eq!(
            older.business_key,
            facts("stripe/events/invoice.paid.json").business_key
        );
    }

    #[test]
    fn invoice_paid_and_payment_succeeded_share_the_key() {
        let paid = facts("stripe/events/invoice.paid.json");
        let succeeded = facts("stripe/events/invoice.payment_succeeded.json");
        assert_eq!(
            paid.business_key,
            "invoice:in_1Pgc6tB7WZ01zgkWu9fdqL6I:paid"
        );
        assert_eq!(paid.business_key, succeeded.business_key);
    }

    #[test]
    fn payment_received_in_yen() {
        let facts = facts("older/invoice.paid.jpy.json");
        assert_eq!(
            facts.business_key,
            "invoice:in_1PgdJ2B7WZ01zgkW7hQpX3aZ:paid"
        );
        assert_eq!(
            facts.customer,
            CustomerRef {
                id: some("cus_QXhT4kLw9nB2sE"),
                email: some("haruto.sato@example.com"),
                name: some("Haruto Sato"),
            }
        );
        assert_eq!(
            facts.items,
            vec![item(PROD, "price_1PgbJpB7WZ01zgkWq2Lr8YtN", Some("month"))]
        );
        assert_eq!(facts.subscription_id, some("sub_1PgdJ0B7WZ01zgkWc4Rt8LmN"));
        assert_eq!(facts.charge_id, some("ch_3PgdJ2B7WZ01zgkW0aXk5RzT"));
        assert_eq!(
            (facts.amount, facts.currency.as_deref()),
            (Some(2000), Some("jpy"))
        );
        assert_eq!(format_money(facts.amount.unwrap(), "jpy"), "¥2,000");
    }

    #[test]
    fn zero_amount_invoice_is_ignored() {
        let mut trial = event("stripe/events/invoice.paid.json");
        trial["data"]["object"]["amount_paid"] = json!(0);
        assert_eq!(
            reason_of(&trial),
            "invoice.paid with amount_paid 0 (e.g. $0 trial invoice)"
        );
        let mut trial = event("older/invoice.paid.json");
        trial["type"] = json!("invoice.payment_succeeded");
        trial["data"]["object"]["amount_paid"] = json!(0);
        assert_eq!(
            reason_of(&trial),
            "invoice.payment_succeeded with amount_paid 0 (e.g. $0 trial invoice)"
        );
    }

    #[test]
    fn payment_failed_current_shape() {
        let expected = TriggerFacts {
            customer: jenny(),
            items: vec![item(PROD, PRICE, None)],
            amount: Some(2000),
            currency: some("usd"),
            next_attempt_at: Some(1785837600),
            invoice_url: some(INVOICE_URL),
            invoice_pdf: Some(format!("{INVOICE_URL}/pdf?s=ap")),
            invoice_id: some(INV),
            subscription_id: some(SUB),
            ..new(
                TriggerKind::PaymentFailed,
                &format!("invoice:{INV}:failed:attempt_1"),
            )
        };
        assert_eq!(facts("stripe/events/invoice.payment_failed.json"), expected);
        // Neither the charge nor the payment intent is named: the invoice's payments lead there.
        assert_eq!(
            expected.missing(),
            vec![
                Lookup::FailureReason {
                    invoice_id: some(INV),
                    charge_id: None,
                    payment_intent_id: None,
                },
                Lookup::ProductName(PROD.into())
            ]
        );
    }

    #[test]
    fn payment_failed_older_shapes() {
        let by_id = facts("older/invoice.payment_failed.json");
        assert_eq!(
            by_id.business_key,
            format!("invoice:{INV}:failed:attempt_1")
        );
        assert_eq!(by_id.charge_id, some(INV_CHARGE));
        assert_eq!(by_id.payment_intent_id, some(INV_PI));
        assert_eq!(by_id.next_attempt_at, Some(1785837600));
        assert_eq!(by_id.failure_reason, None);
        assert_eq!(by_id.items, vec![item(PROD, PRICE, Some("month"))]);
        assert_eq!(
            by_id.missing()[0],
            Lookup::FailureReason {
                invoice_id: some(INV),
                charge_id: some(INV_CHARGE),
                payment_intent_id: some(INV_PI),
            }
        );

        let last_try = facts("older/invoice.payment_failed.expanded_charge.json");
        assert_eq!(
            last_try.business_key,
            format!("invoice:{INV}:failed:attempt_4")
        );
        assert_eq!(last_try.charge_id, some("ch_3PgcR4B7WZ01zgkW0xT7bLq2"));
        assert_eq!(last_try.failure_reason, some("Your card was declined."));
        // Stripe will not retry: the email must not promise another attempt.
        assert_eq!(last_try.next_attempt_at, None);
        assert_eq!(last_try.amount, Some(2000));
        assert!(!last_try
            .missing()
            .iter()
            .any(|l| matches!(l, Lookup::FailureReason { .. })));
    }

    #[test]
    fn control_characters_in_customer_data_are_stripped() {
        assert_eq!(
            clean_text("  Jenny\r\nBcc: x@evil.example\u{1b}[1;31m\tRosen\u{7f}\u{0}  "),
            "Jenny Bcc: x@evil.example Rosen"
        );
        assert_eq!(clean_text("a\u{2028}b\u{85}c\u{202E}d\u{2066}e"), "a b cde");
        // OSC (a window title, a hyperlink) ends at BEL or ESC \; a lone ESC just goes; a
        // broken CSI eats no text beyond its ASCII bytes.
        assert_eq!(
            clean_text("a\u{1b}]0;title\u{7}b\u{1b}]8;;http://x\u{1b}\\c\u{1b}d\u{1b}]open"),
            "abcd"
        );
        assert_eq!(clean_text("\u{1b}[ 山田"), "山田");
        // Ordinary text, non-Latin scripts and joined emoji pass as they are.
        for kept in ["Zoë Ångström", "محمد علي", "山田 太郎", "👩‍👩‍👧"] {
            assert_eq!(clean_text(kept), kept);
        }
        assert_eq!(clean(Some("\r\n\u{1b}".into())), None);

        let mut hostile = event("stripe/events/invoice.paid.json");
        let object = &mut hostile["data"]["object"];
        object["customer_name"] = json!("Jenny\r\nRosen\u{1b}]0;pwned\u{7}");
        object["customer_email"] = json!("jenny.rosen@example.com\r\nBcc: all@example.com");
        let facts = facts_of(&hostile);
        assert_eq!(facts.customer.name, some("Jenny Rosen"));
        assert_eq!(
            facts.customer.email,
            some("jenny.rosen@example.com Bcc: all@example.com")
        );
    }

    #[test]
    fn catalog_events_name_the_object() {
        let mut product = json!({"type": "product.updated", "created": 1786000000,
            "data": {"object": {"id": PROD, "object": "product", "name": "Tee club"}}});
        match classify(&product) {
            Classification::Catalog(change) => {
                assert_eq!(
                    (
                        change.kind,
                        change.id.as_str(),
                        change.deleted,
                        change.created
                    ),
                    (CatalogKind::Product, PROD, false, 1786000000)
                );
                assert_eq!(change.object["name"], "Tee club");
            }
            other => panic!("{other:?}"),
        }
        product["type"] = json!("product.deleted");
        assert!(matches!(
            classify(&product),
            Classification::Catalog(CatalogChange { deleted: true, .. })
        ));
        for event_type in ["price.updated", "plan.deleted", "price.created"] {
            let price = json!({"type": event_type,
                "data": {"object": {"id": PRICE, "object": event_type.split('.').next().unwrap()}}});
            assert!(
                matches!(
                    classify(&price),
                    Classification::Catalog(CatalogChange {
                        kind: CatalogKind::Price,
                        ..
                    })
                ),
                "{event_type}"
            );
        }
        let broken = json!({"type": "price.updated", "data": {"object": {"object": "price"}}});
        assert_eq!(
            reason_of(&broken),
            "malformed price.updated: data.object.id missing"
        );
        let other = json!({"type": "product.archived", "data": {"object": {"id": PROD}}});
        assert_eq!(
            reason_of(&other),
            "product.archived is not one of the 7 triggers"
        );
    }

    #[test]
    fn payment_failed_outside_automatic_subscription_billing_is_ignored() {
        let mut send_invoice = event("stripe/events/invoice.payment_failed.json");
        send_invoice["data"]["object"]["collection_method"] = json!("send_invoice");
        assert_eq!(
            reason_of(&send_invoice),
            "invoice.payment_failed of a send_invoice invoice: the customer pays it from the \
             hosted invoice page, no automatic payment failed"
        );
        let mut manual = event("older/invoice.payment_failed.json");
        manual["data"]["object"]["billing_reason"] = json!("manual");
        assert_eq!(
            reason_of(&manual),
            "invoice.payment_failed of a non-subscription invoice (billing_reason manual)"
        );
        for reason in SUBSCRIPTION_BILLING_REASONS {
            let mut failed = event("stripe/events/invoice.payment_failed.json");
            failed["data"]["object"]["billing_reason"] = json!(reason);
            assert_eq!(
                facts_of(&failed).kind,
                TriggerKind::PaymentFailed,
                "{reason}"
            );
        }
    }

    #[test]
    fn renewal_upcoming_current_and_older() {
        let expected = |items: Vec<ItemRef>| TriggerFacts {
            customer: jenny(),
            items,
            amount: Some(2000),
            currency: some("usd"),
            renewal_date: Some(1785574800),
            subscription_id: some(SUB),
            ..new(
                TriggerKind::RenewalUpcoming,
                &format!("subscription:{SUB}:renewal:1785574800"),
            )
        };
        assert_eq!(
            facts("stripe/events/invoice.upcoming.json"),
            expected(vec![item(PROD, PRICE, None)])
        );
        assert_eq!(
            facts("older/invoice.upcoming.json"),
            expected(vec![item(PROD, PRICE, Some("month"))])
        );
    }

    #[test]
    fn renewal_date_falls_back_to_the_new_period() {
        let mut upcoming = event("stripe/events/invoice.upcoming.json");
        upcoming["data"]["object"]["next_payment_attempt"] = Value::Null;
        upcoming["data"]["object"]["lines"]["data"][0]["period"]["start"] = json!(1785574900);
        assert_eq!(facts_of(&upcoming).renewal_date, Some(1785574900));
        upcoming["data"]["object"]["lines"] = Value::Null;
        assert_eq!(facts_of(&upcoming).renewal_date, Some(1785574800));
        upcoming["data"]["object"]["period_end"] = Value::Null;
        assert_eq!(
            reason_of(&upcoming),
            "malformed invoice.upcoming: data.object.next_payment_attempt missing"
        );
    }

    #[test]
    fn payment_received_from_charge_current_shape_needs_the_invoice_check() {
        let expected = TriggerFacts {
            customer: jenny(),
            amount: Some(2000),
            currency: some("usd"),
            receipt_url: some(RECEIPT_URL),
            charge_id: some(CHARGE),
            payment_intent_id: some(CHARGE_PI),
            invoice_link_unknown: true,
            ..new(
                TriggerKind::PaymentReceived,
                &format!("charge:{CHARGE}:paid"),
            )
        };
        assert_eq!(facts("stripe/events/charge.succeeded.json"), expected);
        assert_eq!(
            expected.missing(),
            vec![Lookup::InvoiceOfCharge {
                payment_intent_id: CHARGE_PI.into()
            }]
        );
        // A charge without PaymentIntent cannot have paid a modern invoice.
        let mut legacy = event("stripe/events/charge.succeeded.json");
        legacy["data"]["object"]["payment_intent"] = Value::Null;
        let legacy = facts_of(&legacy);
        assert!(!legacy.invoice_link_unknown);
        assert_eq!(legacy.missing(), vec![]);
    }

    #[test]
    fn payment_received_from_one_off_charge_older_shape() {
        let expected = TriggerFacts {
            customer: jenny(),
            amount: Some(2000),
            currency: some("usd"),
            receipt_url: some(RECEIPT_URL),
            charge_id: some(CHARGE),
            payment_intent_id: some(CHARGE_PI),
            ..new(
                TriggerKind::PaymentReceived,
                &format!("charge:{CHARGE}:paid"),
            )
        };
        let one_off = facts("older/charge.succeeded.one_off.json");
        assert_eq!(one_off, expected);
        assert_eq!(one_off.missing(), vec![]);
    }

    #[test]
    fn charge_of_an_invoice_is_left_to_invoice_paid() {
        assert_eq!(
            reason_of(&event("older/charge.succeeded.invoice.json")),
            "charge.succeeded of invoice in_1Pgc6tB7WZ01zgkWu9fdqL6I: invoice.paid covers it"
        );
    }

    #[test]
    fn uncaptured_charge_is_ignored() {
        let mut auth = event("older/charge.succeeded.one_off.json");
        auth["data"]["object"]["captured"] = json!(false);
        assert_eq!(
            reason_of(&auth),
            "charge.succeeded with captured false: an authorization only, no money received yet"
        );
    }

    #[test]
    fn payment_received_in_kuwaiti_dinar() {
        let facts = facts("older/charge.succeeded.kwd.json");
        assert_eq!(
            facts.business_key,
            "charge:ch_3PgdKwB7WZ01zgkW1c8Rk2Fa:paid"
        );
        assert_eq!(
            facts.customer,
            CustomerRef {
                id: some("cus_QXhK2mZtR8aW1c"),
                email: some("fatima.alsabah@example.com"),
                name: some("Fatima Al-Sabah"),
            }
        );
        assert_eq!(
            (facts.amount, facts.currency.as_deref()),
            (Some(1500), Some("kwd"))
        );
        assert_eq!(format_money(facts.amount.unwrap(), "kwd"), "KWD 1.500");
        assert_eq!(facts.payment_intent_id, some("pi_3PgdKwB7WZ01zgkW1vN4p6Qe"));
        assert!(!facts.invoice_link_unknown);
        assert_eq!(facts.missing(), vec![]);
    }

    #[test]
    fn refund_created_and_updated_share_the_key() {
        let expected = TriggerFacts {
            amount: Some(2000),
            currency: some("usd"),
            refund_amount: Some(2000),
            charge_id: some(CHARGE),
            payment_intent_id: some(CHARGE_PI),
            refund_id: some(REFUND),
            refund_invoice_unknown: true,
            ..new(TriggerKind::RefundCompleted, &format!("refund:{REFUND}"))
        };
        assert_eq!(facts("stripe/events/refund.created.json"), expected);
        assert_eq!(facts("stripe/events/refund.updated.json"), expected);
        // The refund names no customer and no product: the charge leads to both.
        assert_eq!(
            expected.missing(),
            vec![
                Lookup::Charge(CHARGE.into()),
                Lookup::InvoiceOfRefund {
                    invoice_id: None,
                    charge_id: some(CHARGE),
                    payment_intent_id: some(CHARGE_PI),
                }
            ]
        );
    }

    #[test]
    fn refund_with_an_expanded_charge_knows_its_invoice() {
        let mut refund = event("stripe/events/refund.created.json");
        let mut charge = event("older/charge.refunded.json")["data"]["object"].clone();
        charge["invoice"] = json!(INV);
        refund["data"]["object"]["charge"] = charge.clone();
        let facts = facts_of(&refund);
        assert_eq!(facts.invoice_id, some(INV));
        assert_eq!(facts.customer, jenny());
        assert_eq!(
            facts.missing(),
            vec![Lookup::InvoiceOfRefund {
                invoice_id: some(INV),
                charge_id: some(CHARGE),
                payment_intent_id: some(CHARGE_PI),
            }]
        );
        charge["invoice"] = Value::Null;
        refund["data"]["object"]["charge"] = charge;
        assert_eq!(facts_of(&refund).missing(), vec![]);
    }

    #[test]
    fn refund_with_a_customer_id_asks_for_the_customer() {
        let mut refund = event("stripe/events/refund.created.json");
        refund["data"]["object"]["customer"] = json!(CUS);
        assert_eq!(
            facts_of(&refund).missing()[0],
            Lookup::CustomerEmail(CUS.into())
        );
    }

    #[test]
    fn refund_not_yet_succeeded_is_ignored() {
        for (event_type, status) in [
            ("refund.created", "pending"),
            ("refund.updated", "failed"),
            ("refund.updated", "requires_action"),
            ("charge.refund.updated", "canceled"),
        ] {
            let mut refund = event("stripe/events/refund.created.json");
            refund["type"] = json!(event_type);
            refund["data"]["object"]["status"] = json!(status);
            assert_eq!(
                reason_of(&refund),
                format!("{event_type} with status {status}")
            );
        }
    }

    #[test]
    fn charge_refunded_current_shape_is_keyed_by_total_until_reconciled() {
        let refunded = facts("stripe/events/charge.refunded.json");
        assert_eq!(
            refunded,
            TriggerFacts {
                customer: jenny(),
                amount: Some(2000),
                currency: some("usd"),
                refund_amount: Some(2000),
                receipt_url: some(RECEIPT_URL),
                charge_id: some(CHARGE),
                payment_intent_id: some(CHARGE_PI),
                charge_amount_refunded: Some(2000),
                refund_invoice_unknown: true,
                ..new(
                    TriggerKind::RefundCompleted,
                    &format!("charge:{CHARGE}:refunded:2000")
                )
            }
        );
        // The payload is the charge: no need to read it again to reach its invoice.
        assert_eq!(
            refunded.missing(),
            vec![
                Lookup::InvoiceOfRefund {
                    invoice_id: None,
                    charge_id: None,
                    payment_intent_id: some(CHARGE_PI),
                },
                Lookup::RefundOfCharge {
                    charge_id: CHARGE.into(),
                    amount_refunded: 2000
                }
            ]
        );
        // The caller's reconciliation: `GET /v1/refunds?charge=…` returns the refund that
        // refund.created reported, and the re-keyed fact matches that event's key.
        let listed = [event("stripe/events/refund.created.json")["data"]["object"].clone()];
        let refund_id = refund_matching_total(&listed, 2000).unwrap();
        assert_eq!(
            refund_key(&refund_id),
            facts("stripe/events/refund.created.json").business_key
        );
    }

    #[test]
    fn charge_refunded_older_shape_names_its_refund() {
        let second = "re_1PgcA9B7WZ01zgkWm4Nx7QbE";
        let refunded = facts("older/charge.refunded.json");
        assert_eq!(
            refunded,
            TriggerFacts {
                customer: jenny(),
                // 1200 refunded after 500 before: this event is about the 700.
                amount: Some(700),
                currency: some("usd"),
                refund_amount: Some(700),
                receipt_url: some(RECEIPT_URL),
                charge_id: some(CHARGE),
                payment_intent_id: some(CHARGE_PI),
                refund_id: some(second),
                charge_amount_refunded: Some(1200),
                ..new(TriggerKind::RefundCompleted, &format!("refund:{second}"))
            }
        );
        // `invoice: null`: a one-off payment, no invoice to read products from.
        assert_eq!(refunded.missing(), vec![]);
        let mut of_invoice = event("older/charge.refunded.json");
        of_invoice["data"]["object"]["invoice"] = json!(INV);
        assert_eq!(
            facts_of(&of_invoice).missing(),
            vec![Lookup::InvoiceOfRefund {
                invoice_id: some(INV),
                charge_id: None,
                payment_intent_id: some(CHARGE_PI),
            }]
        );
        let updated = facts("older/charge.refund.updated.json");
        assert_eq!(updated.business_key, refunded.business_key);
        assert_eq!(updated.refund_amount, Some(700));
        assert_eq!(updated.missing()[0], Lookup::Charge(CHARGE.into()));
    }

    #[test]
    fn charge_refunded_amount_without_previous_attributes() {
        let mut older = event("older/charge.refunded.json");
        older["data"]
            .as_object_mut()
            .unwrap()
            .remove("previous_attributes");
        let facts = facts_of(&older);
        assert_eq!(facts.refund_id, some("re_1PgcA9B7WZ01zgkWm4Nx7QbE"));
        assert_eq!(facts.refund_amount, Some(700));

        let mut current = event("stripe/events/charge.refunded.json");
        current["data"]
            .as_object_mut()
            .unwrap()
            .remove("previous_attributes");
        assert_eq!(facts_of(&current).refund_amount, Some(2000));
    }

    #[test]
    fn charge_refunded_second_partial_refund_current_shape() {
        let mut second = event("stripe/events/charge.refunded.json");
        second["data"]["previous_attributes"]["amount_refunded"] = json!(500);
        second["data"]["object"]["refunded"] = json!(false);
        let facts = facts_of(&second);
        // The delta, not the cumulative total nor the charge amount.
        assert_eq!(facts.refund_amount, Some(1500));
        assert_eq!(facts.amount, Some(1500));
        assert_eq!(facts.business_key, format!("charge:{CHARGE}:refunded:2000"));
        assert_eq!(facts.charge_amount_refunded, Some(2000));
    }

    #[test]
    fn charge_refunded_with_a_pending_refund_is_ignored() {
        let mut pending = event("older/charge.refunded.json");
        pending["data"]["object"]["refunds"]["data"][0]["status"] = json!("pending");
        assert_eq!(
            reason_of(&pending),
            "charge.refunded whose refund has status pending; charge.refund.updated reports when \
             it succeeds"
        );
    }

    #[test]
    fn refund_matching_total_walks_refunds_oldest_first() {
        let charge = event("older/charge.refunded.json");
        let refunds = charge["data"]["object"]["refunds"]["data"]
            .as_array()
            .unwrap();
        assert_eq!(
            refund_matching_total(refunds, 500),
            some("re_1Pgc6zB7WZ01zgkWa1Bx3cQd")
        );
        assert_eq!(
            refund_matching_total(refunds, 1200),
            some("re_1PgcA9B7WZ01zgkWm4Nx7QbE")
        );
        assert_eq!(refund_matching_total(refunds, 700), None);
        let mut with_failed = refunds.clone();
        with_failed.insert(
            0,
            json!({"id": "re_failed", "amount": 300, "status": "failed",
                                     "created": 1786000000}),
        );
        assert_eq!(
            refund_matching_total(&with_failed, 1200),
            some("re_1PgcA9B7WZ01zgkWm4Nx7QbE")
        );
        assert_eq!(refund_matching_total(&[], 0), None);
    }

    #[test]
    fn expanded_customer_and_product_fill_facts_and_shrink_missing() {
        let mut sub = event("stripe/events/customer.subscription.created.json");
        sub["data"]["object"]["customer"] = json!({"id": CUS, "object": "customer", "email": "jenny.rosen@example.com",
                   "name": "Jenny Rosen"});
        sub["data"]["object"]["items"]["data"][0]["price"]["product"] =
            json!({"id": PROD, "object": "product", "name": "T-shirt"});
        let facts = facts_of(&sub);
        assert_eq!(facts.customer, jenny());
        assert_eq!(facts.items[0].product_name, some("T-shirt"));
        assert_eq!(facts.missing(), vec![]);
    }

    #[test]
    fn deauthorization_names_the_account() {
        assert_eq!(
            classify(&event(
                "stripe/events/account.application.deauthorized.json"
            )),
            Classification::Deauthorized {
                account: some("acct_1PgafTB7WZ01zgkW")
            }
        );
        let before_2017 = json!({"type": "account.application.deauthorized",
                                 "user_id": "acct_old", "data": {"object": {}}});
        assert_eq!(
            classify(&before_2017),
            Classification::Deauthorized {
                account: some("acct_old")
            }
        );
        let platform_own = json!({"type": "account.application.deauthorized"});
        assert_eq!(
            classify(&platform_own),
            Classification::Deauthorized { account: None }
        );
    }

    #[test]
    fn unrelated_events_are_ignored_with_their_type() {
        for event_type in [
            "payment_intent.succeeded",
            "refund.failed",
            "invoice.finalized",
            "customer.created",
            "",
        ] {
            let event = json!({"type": event_type, "data": {"object": {"id": "x"}}});
            assert_eq!(
                reason_of(&event),
                format!("{event_type} is not one of the 7 triggers")
            );
        }
    }

    #[test]
    fn malformed_payloads_are_ignored_with_the_missing_field() {
        let invoice_paid =
            |object: Value| json!({"type": "invoice.paid", "data": {"object": object}});
        let cases: Vec<(Value, &str)> = vec![
            (Value::Null, "malformed event: type missing or not a string"),
            (json!(42), "malformed event: type missing or not a string"),
            (
                json!("invoice.paid"),
                "malformed event: type missing or not a string",
            ),
            (
                json!([{"type": "invoice.paid"}]),
                "malformed event: type missing or not a string",
            ),
            (
                json!({"type": 5}),
                "malformed event: type missing or not a string",
            ),
            (
                json!({"type": "invoice.paid"}),
                "malformed invoice.paid: data.object missing or not an object",
            ),
            (
                json!({"type": "invoice.paid", "data": []}),
                "malformed invoice.paid: data.object missing or not an object",
            ),
            (
                invoice_paid(json!("in_1")),
                "malformed invoice.paid: data.object missing or not an object",
            ),
            (
                invoice_paid(json!({"object": "charge", "id": "ch_1"})),
                r#"malformed invoice.paid: data.object.object is "charge", expected "invoice""#,
            ),
            (
                invoice_paid(json!({})),
                "malformed invoice.paid: data.object.id missing",
            ),
            (
                invoice_paid(json!({"id": "in_1", "amount_paid": "2000"})),
                "malformed invoice.paid: data.object.amount_paid missing",
            ),
            (
                invoice_paid(json!({"id": 7, "amount_paid": 2000})),
                "malformed invoice.paid: data.object.id missing",
            ),
            (
                json!({"type": "invoice.payment_failed", "data": {"object": {"id": "in_1"}}}),
                "malformed invoice.payment_failed: data.object.collection_method missing",
            ),
            (
                json!({"type": "invoice.payment_failed", "data": {"object": {"id": "in_1",
                    "collection_method": "charge_automatically",
                    "billing_reason": "subscription_cycle"}}}),
                "malformed invoice.payment_failed: data.object.attempt_count missing",
            ),
            (
                json!({"type": "invoice.upcoming", "data": {"object": {"lines": "x"}}}),
                "malformed invoice.upcoming: data.object.subscription missing",
            ),
            (
                json!({"type": "customer.subscription.created", "data": {"object": {}}}),
                "malformed customer.subscription.created: data.object.id missing",
            ),
            (
                json!({"type": "customer.subscription.trial_will_end",
                       "data": {"object": {"id": "sub_1", "trial_end": null}}}),
                "malformed customer.subscription.trial_will_end: data.object.trial_end missing",
            ),
            (
                json!({"type": "customer.subscription.updated", "data": {"object": 3}}),
                "malformed customer.subscription.updated: data.object missing or not an object",
            ),
            (
                json!({"type": "charge.succeeded", "data": {"object": {"amount": 5}}}),
                "malformed charge.succeeded: data.object.id missing",
            ),
            (
                json!({"type": "charge.refunded", "data": {"object": {"id": "ch_1",
                    "refunds": {"data": "x"}}}}),
                "malformed charge.refunded: data.object.amount_refunded missing",
            ),
            (
                json!({"type": "refund.updated", "data": {"object": {"id": "re_1", "status": 1}}}),
                "malformed refund.updated: data.object.status missing",
            ),
            (
                json!({"type": "refund.created", "data": {"object": {"object": "refund"}}}),
                "malformed refund.created: data.object.id missing",
            ),
        ];
        for (event, reason) in cases {
            assert_eq!(reason_of(&event), reason, "{event}");
        }
    }

    #[test]
    fn wrong_types_anywhere_in_a_fixture_never_panic() {
        fn pointers(value: &Value, prefix: String, out: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    for (key, child) in map {
                        let escaped = key.replace('~', "~0").replace('/', "~1");
                        pointers(child, format!("{prefix}/{escaped}"), out);
                    }
                }
                Value::Array(items) => {
                    for (i, child) in items.iter().enumerate() {
                        pointers(child, format!("{prefix}/{i}"), out);
                    }
                }
                _ => {}
            }
            out.push(prefix);
        }
        let replacements = [
            Value::Null,
            json!("x"),
            json!(-1),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1.5),
            json!([]),
            json!({}),
            json!(true),
        ];
        let mut classified = 0;
        for path in [
            "stripe/events/charge.refunded.json",
            "stripe/events/charge.succeeded.json",
            "stripe/events/customer.subscription.trial_will_end.json",
            "stripe/events/customer.subscription.updated.cancel_at_period_end.json",
            "stripe/events/invoice.payment_failed.json",
            "stripe/events/invoice.upcoming.json",
            "stripe/events/refund.updated.json",
            "older/charge.refunded.json",
            "older/customer.subscription.created.multi_item.json",
            "older/invoice.payment_failed.expanded_charge.json",
        ] {
            let original = event(path);
            let mut paths = Vec::new();
            pointers(&original, String::new(), &mut paths);
            for pointer in paths.iter().filter(|p| !p.is_empty()) {
                for replacement in &replacements {
                    let mut broken = original.clone();
                    *broken.pointer_mut(pointer).unwrap() = replacement.clone();
                    if let Classification::Trigger(facts) = classify(&broken) {
                        facts.missing();
                    }
                    classified += 1;
                }
            }
        }
        assert!(classified > 10_000, "{classified}");
    }

    #[test]
    fn trigger_kind_ids_are_stable() {
        let ids: Vec<&str> = TriggerKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            ids,
            [
                "subscription_created",
                "subscription_cancelled",
                "payment_failed",
                "renewal_upcoming",
                "trial_ending",
                "payment_received",
                "refund_completed",
            ]
        );
        for kind in TriggerKind::ALL {
            assert_eq!(kind.as_str().parse::<TriggerKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
        }
        let err = "payment_succeeded".parse::<TriggerKind>().unwrap_err();
        assert_eq!(err, UnknownTrigger("payment_succeeded".into()));
        assert!(err.to_string().contains("use one of subscription_created"));
    }

    #[test]
    fn facts_round_trip_through_json() {
        let facts = facts("older/customer.subscription.created.multi_item.json");
        let stored = serde_json::to_string(&facts).unwrap();
        assert_eq!(
            serde_json::from_str::<TriggerFacts>(&stored).unwrap(),
            facts
        );
    }
}
