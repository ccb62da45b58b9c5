//! One stored event → what to do about it: classify it, fetch what the payload lacks (catalog
//! cache first, then the Stripe API, and only then), choose the template, render the email.
//! Nothing is committed here except catalog names (looked up, or reported by `product.*` /
//! `price.*` events); the processor records the outcome.
//!
//! A lookup that fails for a while (network, 5xx, rate limit) postpones the event; one that
//! cannot succeed (a missing permission, no API key) fails the email with the fix, except the
//! decline reason of a failed payment: an email without it still tells the customer what to do,
//! so it goes without, and the delivery's note says why.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::db::deliveries::{NewDelivery, Reason, Status};
use crate::db::integrations::{Integration, Status as IntegrationStatus};
use crate::db::{self, catalog, templates, Pool};
use crate::stripe::api::{self, Credentials, StripeClient, StripeError};
use crate::stripe::event::{text, Charge, Invoice, InvoiceLink};
use crate::templates::choose::{choose, ItemScope, Occasion};
use crate::templates::context::EmailFacts;
use crate::templates::money::format_money;
use crate::templates::render::Renderer;
use crate::trigger::{
    classify, clean, clean_text, refund_key, refund_matching_total, CatalogChange, CatalogKind,
    Classification, Lookup, TriggerFacts,
};

/// What preparing needs; shared by the processor and `mailmycustomer preview`.
pub struct Preparer {
    pub pool: Pool,
    pub stripe: StripeClient,
    pub renderer: Renderer,
    /// Product and plan names already read from the catalog or Stripe, so a batch of events for
    /// the same products costs no database hop per event. Names are few; this stays small.
    known: Mutex<HashMap<(String, String), Known>>,
}

#[derive(Clone)]
enum Known {
    Product(Option<String>),
    Plan(Option<catalog::Plan>),
    /// Neither the catalog nor Stripe (no key to ask with) could say, at this moment: asked
    /// again after `UNANSWERED_FOR` or once the integration has a key, not for every event
    /// that names it.
    Unanswered(std::time::Instant),
}

/// How long a product or plan nobody could name stays unnamed before it is looked up again
/// (a key added, or the catalog filled by another process, shows within this).
const UNANSWERED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

impl Preparer {
    pub fn new(pool: Pool, stripe: StripeClient) -> Preparer {
        Preparer {
            pool,
            stripe,
            renderer: Renderer::default(),
            known: Mutex::new(HashMap::new()),
        }
    }

    fn known(&self, integration: &str, id: &str) -> Option<Known> {
        let known = self.known.lock().expect("catalog memo");
        known.get(&(integration.to_owned(), id.to_owned())).cloned()
    }

    fn remember(&self, integration: &str, id: &str, value: Known) {
        let mut known = self.known.lock().expect("catalog memo");
        known.insert((integration.to_owned(), id.to_owned()), value);
    }

    pub fn forget(&self, integration: &str, id: &str) {
        let mut known = self.known.lock().expect("catalog memo");
        known.remove(&(integration.to_owned(), id.to_owned()));
    }

    /// A `product.*` / `price.*` event: the catalog and the memo take the new name, or forget a
    /// deleted object. The event itself sends nothing, so it is recorded as ignored, with what
    /// changed as the reason.
    async fn catalog_change(&self, integration: &Integration, change: CatalogChange) -> Outcome {
        let id = change.id.clone();
        let what = match change.kind {
            CatalogKind::Product => "product",
            CatalogKind::Price => "price",
        };
        let integration_id = integration.id.clone();
        if change.deleted {
            let (owner, gone) = (integration_id.clone(), id.clone());
            if let Err(e) = db::call(&self.pool, move |c| catalog::forget(c, &owner, &gone)).await {
                return Outcome::Retry(format!("database: {e}"));
            }
            self.forget(&integration_id, &id);
            return Outcome::Ignore(format!(
                "{what} {id} was deleted in Stripe; its cached name is forgotten"
            ));
        }
        let (owner, as_of) = (integration_id.clone(), change.created);
        let (known, name, written) = match change.kind {
            CatalogKind::Product => {
                let product = match api::Product::from_json(&change.object) {
                    Ok(product) => product,
                    Err(e) => return Outcome::Ignore(format!("{what} event not understood: {e}")),
                };
                let name = clean_text(&product.name);
                if name.is_empty() {
                    return Outcome::Ignore(format!("{what} {id} has no printable name"));
                }
                let stored = name.clone();
                let written = db::call(&self.pool, move |c| {
                    catalog::put_product(c, &owner, &product.id, &stored, as_of)
                })
                .await;
                (Known::Product(Some(name.clone())), name, written)
            }
            CatalogKind::Price => {
                let plan = match api::Price::from_json(&change.object) {
                    Ok(price) => plan_of_price(&price, None),
                    Err(e) => return Outcome::Ignore(format!("{what} event not understood: {e}")),
                };
                let stored = plan.clone();
                let written = db::call(&self.pool, move |c| {
                    catalog::put_plan(c, &owner, &stored, as_of)
                })
                .await;
                (Known::Plan(Some(plan.clone())), plan.name, written)
            }
        };
        match written {
            Ok(true) => {
                self.remember(&integration_id, &id, known);
                Outcome::Ignore(format!(
                    "{what} {id} is now named {name:?}; the catalog is updated"
                ))
            }
            Ok(false) => Outcome::Ignore(format!(
                "{what} {id}: this event is older than the name the catalog holds, which is kept"
            )),
            Err(e) => Outcome::Retry(format!("database: {e}")),
        }
    }
}

/// What to do with an event.
#[derive(Debug)]
pub enum Outcome {
    /// A delivery row: `Queued` (an email to send), `Skipped` or `Failed` (why not, for the log).
    Delivery(Box<NewDelivery>),
    /// Not one of the 7 triggers, or covered by another event; the reason is kept on the event.
    Ignore(String),
    /// A temporary failure (Stripe API down, rate limited); try the event again later.
    Retry(String),
    /// `account.application.deauthorized` for this integration's account.
    Disconnect(String),
}

enum LookupError {
    Transient(String),
    Permanent(String),
    /// Permanent too: only the Stripe API can tell, and the integration has no key.
    NoKey(String),
}

impl LookupError {
    /// The same failure, saying what was being looked up.
    fn context(self, what: &str) -> LookupError {
        match self {
            LookupError::Transient(m) => LookupError::Transient(format!("{what}: {m}")),
            LookupError::Permanent(m) => LookupError::Permanent(format!("{what}: {m}")),
            LookupError::NoKey(m) => LookupError::NoKey(format!("{what}: {m}")),
        }
    }
}

impl From<StripeError> for LookupError {
    fn from(e: StripeError) -> Self {
        if e.is_transient() {
            LookupError::Transient(format!("Stripe API: {e}"))
        } else {
            LookupError::Permanent(format!("Stripe API: {e}"))
        }
    }
}

impl From<crate::Error> for LookupError {
    fn from(e: crate::Error) -> Self {
        LookupError::Transient(format!("database: {e}"))
    }
}

impl Preparer {
    /// `templates` is every template (the processor reads them once per batch).
    pub async fn prepare(
        &self,
        integration: &Integration,
        templates: &[templates::Template],
        event_id: Option<i64>,
        payload: &str,
    ) -> Outcome {
        let Resolved {
            mut delivery,
            template,
            email,
            notes,
        } = match self
            .resolve(integration, templates, event_id, payload)
            .await
        {
            Ok(resolved) => resolved,
            Err(outcome) => return outcome,
        };
        let kind = delivery.trigger;
        match self
            .renderer
            .render(Some(template.id), &template.source, kind, &email)
        {
            Ok(rendered) => {
                // A subject is a header: one line, whatever the template or the facts held.
                delivery.subject = Some(clean_text(&rendered.subject));
                if !notes.is_empty() {
                    delivery.note = Some(notes.join("; "));
                }
                delivery.html = Some(rendered.html);
                delivery.text = Some(rendered.text);
                delivery.status = Status::Queued;
                Outcome::Delivery(Box::new(delivery))
            }
            Err(e) => {
                let note = format!(
                    "template {} ({}) could not be rendered: {e}",
                    template.id,
                    template.scope()
                );
                delivery.status = Status::Failed;
                delivery.note = Some(note);
                Outcome::Delivery(Box::new(delivery))
            }
        }
    }

    /// Everything `prepare` does short of rendering: classify, look up what the payload lacks,
    /// choose the template among `templates`, resolve its item's plan. The editor's preview
    /// renders unsaved text with these facts, resolved once. `Err` is the outcome when the
    /// event sends nothing (ignored, postponed, skipped or failed).
    pub async fn resolve<'t>(
        &self,
        integration: &Integration,
        templates: &'t [templates::Template],
        event_id: Option<i64>,
        payload: &str,
    ) -> Result<Resolved<'t>, Outcome> {
        let event: Value = match serde_json::from_str(payload) {
            Ok(v) => v,
            Err(e) => return Err(Outcome::Ignore(format!("payload is not JSON: {e}"))),
        };
        let mut facts = match classify(&event) {
            Classification::Ignored { reason } => return Err(Outcome::Ignore(reason)),
            Classification::Deauthorized { account } => {
                return Err(deauthorized(integration, account))
            }
            Classification::Catalog(change) => {
                return Err(self.catalog_change(integration, change).await)
            }
            Classification::Trigger(facts) => *facts,
        };
        let mut delivery = NewDelivery {
            event_id,
            ..NewDelivery::new(
                integration.id.clone(),
                event["id"].as_str().unwrap_or_default(),
                facts.business_key.clone(),
                facts.kind,
            )
        };
        let not_sent = |mut d: NewDelivery, status: Status, note: String| {
            d.status = status;
            d.note = Some(note);
            Err(Outcome::Delivery(Box::new(d)))
        };
        if integration.status == IntegrationStatus::Disconnected {
            return not_sent(
                delivery,
                Status::Skipped,
                "the integration is disconnected from Stripe".into(),
            );
        }

        let lookups = Lookups {
            preparer: self,
            integration,
        };
        let mut notes = Vec::new();
        match lookups.complete(&mut facts, &mut notes).await {
            Ok(Some(reason)) => return Err(Outcome::Ignore(reason)),
            Ok(None) => {}
            Err(LookupError::Transient(reason)) => return Err(Outcome::Retry(reason)),
            Err(LookupError::Permanent(reason)) => {
                return not_sent(delivery, Status::Failed, reason)
            }
            Err(LookupError::NoKey(reason)) => {
                delivery.reason = Some(Reason::NoApiKey);
                return not_sent(delivery, Status::Failed, reason);
            }
        }
        // What the lookups added is customer data too.
        facts.sanitize();
        delivery.business_key = facts.business_key.clone();

        // An address that held a line break or a tab kept a space when cleaned: not an address.
        let Some(recipient) = facts
            .customer
            .email
            .as_deref()
            .map(str::to_lowercase)
            .filter(|e| e.contains('@') && !e.contains(char::is_whitespace))
        else {
            let who = facts.customer.id.as_deref().unwrap_or("unknown customer");
            return not_sent(
                delivery,
                Status::Failed,
                format!("no email address for {who}"),
            );
        };
        delivery.recipient = Some(recipient.clone());
        delivery.recipient_name = facts.customer.name.clone();

        let kind = facts.kind;
        let scopes: Vec<ItemScope> = facts
            .items
            .iter()
            .map(|i| ItemScope {
                product_id: i.product_id.as_deref(),
                plan_id: i.price_id.as_deref(),
            })
            .collect();
        let Some((template, item_index)) = choose(
            templates,
            Occasion {
                integration_id: &integration.id,
                trigger: kind,
            },
            &scopes,
        ) else {
            let first = facts.items.first();
            let scope = templates::scope_text(
                kind,
                first.and_then(|i| i.product_id.as_deref()),
                first.and_then(|i| i.price_id.as_deref()),
            );
            delivery.reason = Some(Reason::NoTemplate);
            return not_sent(
                delivery,
                Status::Skipped,
                format!("no template for {scope}"),
            );
        };
        let item = item_index.map(|i| facts.items[i].clone());
        delivery.template_id = Some(template.id);
        delivery.template_version = Some(template.version);
        delivery.from_address = integration.from_address.clone();
        delivery.product_id = item.as_ref().and_then(|i| i.product_id.clone());
        delivery.plan_id = item.as_ref().and_then(|i| i.price_id.clone());

        let plan = match &item {
            Some(i) => match lookups
                .plan(i.price_id.as_deref(), i.product_id.as_deref())
                .await
            {
                Ok(plan) => plan,
                Err(LookupError::Transient(reason)) => return Err(Outcome::Retry(reason)),
                Err(LookupError::Permanent(reason)) => {
                    return not_sent(delivery, Status::Failed, reason)
                }
                Err(LookupError::NoKey(reason)) => {
                    delivery.reason = Some(Reason::NoApiKey);
                    return not_sent(delivery, Status::Failed, reason);
                }
            },
            None => None,
        };
        let email = EmailFacts {
            customer_name: facts.customer.name.clone(),
            customer_email: Some(recipient),
            product_id: delivery.product_id.clone(),
            product_name: item.as_ref().and_then(|i| i.product_name.clone()),
            plan_id: delivery.plan_id.clone(),
            plan_name: clean(plan.as_ref().map(|p| p.name.clone())),
            plan_interval: plan
                .as_ref()
                .and_then(|p| p.interval.clone())
                .or_else(|| item.as_ref().and_then(|i| i.interval.clone())),
            amount: facts.amount,
            currency: facts.currency.clone(),
            refund_amount: facts.refund_amount,
            failure_reason: facts.failure_reason.clone(),
            next_attempt_at: facts.next_attempt_at,
            renewal_date: facts.renewal_date,
            trial_end: facts.trial_end,
            invoice_url: facts.invoice_url.clone(),
            invoice_pdf: facts.invoice_pdf.clone(),
            receipt_url: facts.receipt_url.clone(),
            merchant_name: integration.name.clone(),
            event_created: event["created"].as_i64().unwrap_or(0),
        };
        Ok(Resolved {
            delivery,
            template,
            email,
            notes,
        })
    }
}

/// An event resolved for its template: the delivery row so far, the template chosen, and the
/// facts the email shows.
pub struct Resolved<'t> {
    pub delivery: NewDelivery,
    pub template: &'t templates::Template,
    pub email: EmailFacts,
    /// What the email goes without, and why (the delivery's note).
    pub notes: Vec<String>,
}

fn deauthorized(integration: &Integration, account: Option<String>) -> Outcome {
    match (account.as_deref(), integration.stripe_account.as_deref()) {
        (Some(a), Some(mine)) if a == mine => Outcome::Disconnect(format!(
            "Stripe account {a} revoked access; emails for it stop"
        )),
        _ => Outcome::Ignore(format!(
            "deauthorization of {} is not this integration's account",
            account.as_deref().unwrap_or("an unnamed account")
        )),
    }
}

/// Fills in what the payload lacks, asking the catalog cache before Stripe.
struct Lookups<'a> {
    preparer: &'a Preparer,
    integration: &'a Integration,
}

impl Lookups<'_> {
    fn credentials(&self) -> Option<Credentials<'_>> {
        Credentials::of(self.integration)
    }

    fn no_key(&self, what: &str) -> LookupError {
        LookupError::NoKey(format!(
            "{what}, and this integration ({}) has no Stripe API key to look it up: add one on \
             its page (Integrations), a restricted key (rk_…) with read access",
            self.integration.name
        ))
    }

    /// Completes `facts` in place. `Ok(Some(reason))`: the event turns out not to need an email.
    /// `notes` collects what the email goes without, and why, for the delivery log.
    async fn complete(
        &self,
        facts: &mut TriggerFacts,
        notes: &mut Vec<String>,
    ) -> Result<Option<String>, LookupError> {
        let stripe = &self.preparer.stripe;
        let mut named = Vec::new();
        let mut charge_read = false;
        for lookup in facts.missing() {
            match lookup {
                Lookup::ProductName(product) => {
                    self.fill_product_name(facts, &product).await?;
                    named.push(product);
                }
                Lookup::CustomerEmail(customer) => {
                    let creds = self.credentials().ok_or_else(|| {
                        self.no_key(&format!(
                            "the event carries no email address for {customer}"
                        ))
                    })?;
                    self.fill_customer(facts, &customer, &creds).await?;
                }
                Lookup::Charge(charge_id) => {
                    let creds = self.credentials().ok_or_else(|| {
                        self.no_key(&format!("the event names only charge {charge_id}"))
                    })?;
                    let charge = stripe.charge(&creds, &charge_id).await?;
                    charge_read = true;
                    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
                    facts.customer.email = text(&charge["billing_details"]["email"])
                        .or_else(|| text(&charge["receipt_email"]));
                    facts.customer.name = facts
                        .customer
                        .name
                        .take()
                        .or_else(|| text(&charge["billing_details"]["name"]));
                    facts.receipt_url = facts
                        .receipt_url
                        .take()
                        .or_else(|| text(&charge["receipt_url"]));
                    note_invoice_of_charge(facts, Charge(&charge));
                    let customer =
                        text(&charge["customer"]).or_else(|| text(&charge["customer"]["id"]));
                    facts.customer.id = facts.customer.id.take().or(customer.clone());
                    if facts.customer.email.is_none() {
                        if let Some(customer) = customer {
                            self.fill_customer(facts, &customer, &creds).await?;
                        }
                    }
                }
                Lookup::InvoiceOfCharge { payment_intent_id } => {
                    let Some(creds) = self.credentials() else {
                        return Ok(Some(format!(
                            "cannot tell whether {payment_intent_id} paid an invoice without an API key; \
                             invoice.paid covers invoice payments"
                        )));
                    };
                    if let Some(invoice) = stripe
                        .invoice_of_payment_intent(&creds, &payment_intent_id)
                        .await?
                    {
                        return Ok(Some(format!(
                            "the charge paid invoice {invoice}; invoice.paid covers it"
                        )));
                    }
                    facts.invoice_link_unknown = false;
                }
                Lookup::RefundOfCharge {
                    charge_id,
                    amount_refunded,
                } => {
                    // Without a key the provisional business key stays: this charge.refunded is
                    // then the only refund event that can email, as refund.* events carry no email.
                    if let Some(creds) = self.credentials() {
                        let refunds = stripe.refunds_of_charge(&creds, &charge_id).await?;
                        if let Some(refund) = refund_matching_total(&refunds, amount_refunded) {
                            facts.business_key = refund_key(&refund);
                            facts.refund_id = Some(refund);
                        }
                    }
                }
                Lookup::InvoiceOfRefund { charge_id, .. } => {
                    let charge_id = charge_id.filter(|_| !charge_read);
                    self.fill_refunded_items(facts, charge_id).await?;
                }
                Lookup::FailureReason { .. } => {
                    // Without a key there is nothing to ask, as for product names.
                    let Some(creds) = self.credentials() else {
                        continue;
                    };
                    let found = self
                        .attempt_fact(facts, &creds, |c| c.failure_message(), decline_message)
                        .await;
                    if let Some(reason) =
                        nice_to_have(found, "the decline reason", self.integration, notes)?
                    {
                        facts.failure_reason = Some(reason);
                    }
                }
                Lookup::Receipt { .. } => {
                    let Some(creds) = self.credentials() else {
                        continue;
                    };
                    let found = self
                        .attempt_fact(facts, &creds, |c| c.receipt_url(), paid_receipt)
                        .await;
                    if let Some(url) =
                        nice_to_have(found, "the receipt link", self.integration, notes)?
                    {
                        facts.receipt_url = Some(url);
                    }
                }
            }
        }
        // Items found by a lookup (a refund's invoice lines) need their names too.
        for lookup in facts.missing() {
            if let Lookup::ProductName(product) = lookup {
                if !named.contains(&product) {
                    self.fill_product_name(facts, &product).await?;
                    named.push(product);
                }
            }
        }
        Ok(None)
    }

    async fn fill_product_name(
        &self,
        facts: &mut TriggerFacts,
        product: &str,
    ) -> Result<(), LookupError> {
        if let Some(name) = self.product_name(product).await? {
            for item in facts
                .items
                .iter_mut()
                .filter(|i| i.product_id.as_deref() == Some(product))
            {
                item.product_name = Some(name.clone());
            }
        }
        Ok(())
    }

    /// A refund's products and plans: the lines of the invoice its charge paid. `charge_id` is
    /// the charge to read when neither the payload nor an earlier lookup said which invoice it
    /// paid. A charge that paid no invoice (or no key to ask with) keeps "any product".
    async fn fill_refunded_items(
        &self,
        facts: &mut TriggerFacts,
        charge_id: Option<String>,
    ) -> Result<(), LookupError> {
        let Some(creds) = self.credentials() else {
            return Ok(());
        };
        let stripe = &self.preparer.stripe;
        let context = |what: String| {
            move |e: StripeError| {
                LookupError::from(e).context(&format!("finding the product of the refund: {what}"))
            }
        };
        if facts.invoice_id.is_none() {
            if let Some(charge_id) = charge_id {
                let charge = found(stripe.charge(&creds, &charge_id).await)
                    .map_err(context(format!("reading charge {charge_id}")))?;
                if let Some(charge) = charge {
                    note_invoice_of_charge(facts, Charge(&charge));
                }
            }
        }
        if !facts.refund_invoice_unknown {
            return Ok(());
        }
        facts.refund_invoice_unknown = false;
        if facts.invoice_id.is_none() {
            if let Some(intent) = facts.payment_intent_id.clone() {
                let invoice = found(stripe.invoice_of_payment_intent(&creds, &intent).await)
                    .map_err(context(format!("the invoice payment of {intent}")))?;
                facts.invoice_id = invoice.flatten();
            }
        }
        let Some(invoice_id) = facts.invoice_id.clone() else {
            return Ok(());
        };
        let invoice = found(stripe.invoice(&creds, &invoice_id).await)
            .map_err(context(format!("reading invoice {invoice_id}")))?;
        if let Some(invoice) = invoice {
            facts.items = Invoice(&invoice).items();
        }
        Ok(())
    }

    /// A fact of an invoice's payment attempt: `from_charge` reads it from the charge (older
    /// invoices name theirs), else `from_intent` from the payment intent, fetched with its latest
    /// charge expanded. Invoices since API 2025-03-31 name neither, so their invoice payment is
    /// asked which payment intent (or, for old payments, charge) was tried.
    async fn attempt_fact(
        &self,
        facts: &TriggerFacts,
        creds: &Credentials<'_>,
        from_charge: fn(&Charge<'_>) -> Option<String>,
        from_intent: fn(&Value) -> Option<String>,
    ) -> Result<Option<String>, LookupError> {
        let stripe = &self.preparer.stripe;
        let mut intent = facts.payment_intent_id.clone();
        let mut charge = facts.charge_id.clone();
        if intent.is_none() && charge.is_none() {
            if let Some(invoice) = &facts.invoice_id {
                let payment = found(stripe.payment_of_invoice(creds, invoice).await)?;
                if let Some(payment) = payment.flatten() {
                    intent = payment.payment_intent;
                    charge = payment.charge;
                }
            }
        }
        if let Some(charge) = charge {
            if let Some(charge) = found(stripe.charge(creds, &charge).await)? {
                let charge = Charge(&charge);
                if let Some(fact) = from_charge(&charge) {
                    return Ok(Some(fact));
                }
                intent = intent.or_else(|| charge.payment_intent_id());
            }
        }
        let Some(intent) = intent else {
            return Ok(None);
        };
        let Some(intent) = found(stripe.payment_intent(creds, &intent).await)? else {
            return Ok(None);
        };
        Ok(from_intent(&intent))
    }

    async fn fill_customer(
        &self,
        facts: &mut TriggerFacts,
        id: &str,
        creds: &Credentials<'_>,
    ) -> Result<(), LookupError> {
        let customer = self.preparer.stripe.customer(creds, id).await?;
        if customer.deleted {
            return Err(LookupError::Permanent(format!(
                "customer {id} was deleted in Stripe"
            )));
        }
        facts.customer.email = customer.email.filter(|e| !e.is_empty());
        facts.customer.name = facts.customer.name.take().or(customer.name);
        Ok(())
    }

    /// A product's name: the catalog, else Stripe (then cached). None when there is no key or
    /// the product was deleted: the email is still worth sending without it. Only an answer is
    /// remembered, so a name missed for want of a key is asked again once a key is added.
    async fn product_name(&self, id: &str) -> Result<Option<String>, LookupError> {
        match self.preparer.known(&self.integration.id, id) {
            Some(Known::Product(name)) => return Ok(name),
            Some(Known::Unanswered(at))
                if at.elapsed() < UNANSWERED_FOR && self.credentials().is_none() =>
            {
                return Ok(None)
            }
            _ => {}
        }
        let Some(name) = self.fetch_product_name(id).await? else {
            let now = std::time::Instant::now();
            self.preparer
                .remember(&self.integration.id, id, Known::Unanswered(now));
            return Ok(None);
        };
        self.preparer
            .remember(&self.integration.id, id, Known::Product(name.clone()));
        Ok(name)
    }

    /// `None`: no answer (no key to ask with); `Some(None)`: Stripe says it is gone.
    async fn fetch_product_name(&self, id: &str) -> Result<Option<Option<String>>, LookupError> {
        let pool = &self.preparer.pool;
        let (integration, product) = (self.integration.id.clone(), id.to_owned());
        if let Some(name) = db::call(pool, move |c| {
            catalog::product_name(c, &integration, &product)
        })
        .await?
        {
            return Ok(Some(Some(name)));
        }
        let Some(creds) = self.credentials() else {
            return Ok(None);
        };
        let product = match found(self.preparer.stripe.product(&creds, id).await)? {
            Some(p) => p,
            None => return Ok(Some(None)),
        };
        let (integration, name) = (self.integration.id.clone(), clean_text(&product.name));
        let stored = name.clone();
        db::call(pool, move |c| {
            catalog::put_product(c, &integration, &product.id, &stored, db::now_unix())
        })
        .await?;
        Ok(Some(Some(name)))
    }

    /// A plan (price): the catalog, else Stripe (then cached). Its name is the price's nickname,
    /// else its amount and interval ("$20.00 / month"). Remembered like product names.
    async fn plan(
        &self,
        price: Option<&str>,
        product: Option<&str>,
    ) -> Result<Option<catalog::Plan>, LookupError> {
        let Some(price) = price else { return Ok(None) };
        match self.preparer.known(&self.integration.id, price) {
            Some(Known::Plan(plan)) => return Ok(plan),
            Some(Known::Unanswered(at))
                if at.elapsed() < UNANSWERED_FOR && self.credentials().is_none() =>
            {
                return Ok(None)
            }
            _ => {}
        }
        let Some(plan) = self.fetch_plan(price, product).await? else {
            let now = std::time::Instant::now();
            self.preparer
                .remember(&self.integration.id, price, Known::Unanswered(now));
            return Ok(None);
        };
        self.preparer
            .remember(&self.integration.id, price, Known::Plan(plan.clone()));
        Ok(plan)
    }

    /// `None`: no answer (no key to ask with); `Some(None)`: Stripe says it is gone.
    async fn fetch_plan(
        &self,
        price: &str,
        product: Option<&str>,
    ) -> Result<Option<Option<catalog::Plan>>, LookupError> {
        let pool = &self.preparer.pool;
        let (integration, id) = (self.integration.id.clone(), price.to_owned());
        if let Some(plan) = db::call(pool, move |c| catalog::plan(c, &integration, &id)).await? {
            return Ok(Some(Some(plan)));
        }
        let Some(creds) = self.credentials() else {
            return Ok(None);
        };
        let fetched = match found(self.preparer.stripe.price(&creds, price).await)? {
            Some(p) => p,
            None => return Ok(Some(None)),
        };
        let plan = plan_of_price(&fetched, product);
        let (integration, stored) = (self.integration.id.clone(), plan.clone());
        db::call(pool, move |c| {
            catalog::put_plan(c, &integration, &stored, db::now_unix())
        })
        .await?;
        Ok(Some(Some(plan)))
    }
}

/// What a charge says about the invoice it paid, for a refund of it: the invoice (API versions
/// before 2025-03-31.basil name it), no invoice at all (`invoice: null`), or nothing, when only
/// its payment intent can lead there.
fn note_invoice_of_charge(facts: &mut TriggerFacts, charge: Charge<'_>) {
    if !facts.refund_invoice_unknown {
        return;
    }
    match charge.invoice_link() {
        InvoiceLink::Invoice(invoice) => facts.invoice_id = Some(invoice),
        InvoiceLink::NoInvoice => facts.refund_invoice_unknown = false,
        InvoiceLink::NotInPayload => {}
    }
    if facts.payment_intent_id.is_none() {
        facts.payment_intent_id = charge.payment_intent_id();
    }
}

/// The payment intent's decline message, else its latest charge's.
fn decline_message(intent: &Value) -> Option<String> {
    text(intent.pointer("/last_payment_error/message"))
        .or_else(|| text(intent.pointer("/latest_charge/failure_message")))
}

/// The receipt of the charge that paid, when the payment intent succeeded.
fn paid_receipt(intent: &Value) -> Option<String> {
    if intent.get("status").and_then(Value::as_str) != Some("succeeded") {
        return None;
    }
    text(intent.pointer("/latest_charge/receipt_url"))
}

/// A fact the email can do without (the decline reason, the receipt link): a failure that may
/// pass postpones the event as any lookup does, one that cannot (a missing permission) lets the
/// email go without it, warns in the server log and says why in `notes` (the delivery's note
/// while it waits to be sent).
fn nice_to_have(
    found: Result<Option<String>, LookupError>,
    what: &str,
    integration: &Integration,
    notes: &mut Vec<String>,
) -> Result<Option<String>, LookupError> {
    match found {
        Ok(fact) => Ok(fact),
        Err(LookupError::Permanent(why) | LookupError::NoKey(why)) => {
            tracing::warn!(
                integration = %integration.id,
                error = %why,
                "{what} cannot be looked up; the email goes without it",
            );
            notes.push(format!("sent without {what}: {why}"));
            Ok(None)
        }
        Err(transient) => Err(transient),
    }
}

/// `Ok(None)` for an object Stripe does not have (deleted, or never existed for this key).
fn found<T>(result: Result<T, StripeError>) -> Result<Option<T>, StripeError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(StripeError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A plan as the catalog keeps it: named by the price's nickname, else its amount and interval
/// ("$20.00 / month").
pub fn plan_of_price(price: &api::Price, product: Option<&str>) -> catalog::Plan {
    let name = clean(price.nickname.clone()).unwrap_or_else(|| {
        let amount = price.unit_amount.map(|a| format_money(a, &price.currency));
        match (amount, &price.interval) {
            (Some(a), Some(i)) => format!("{a} / {i}"),
            (Some(a), None) => a,
            (None, _) => price.id.clone(),
        }
    });
    catalog::Plan {
        id: price.id.clone(),
        product_id: Some(price.product_id.clone()).or(product.map(str::to_owned)),
        name,
        interval: price.interval.clone(),
    }
}
