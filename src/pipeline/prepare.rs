//! One stored event → what to do about it: classify it, fetch what the payload lacks (catalog
//! cache first, then the Stripe API, and only then), choose the template, render the email.
//! Nothing is committed here except catalog names; the processor records the outcome.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::db::deliveries::{NewDelivery, Status};
use crate::db::integrations::Integration;
use crate::db::{self, catalog, templates, Pool};
use crate::stripe::api::{Credentials, StripeClient, StripeError};
use crate::templates::choose::{choose, ItemScope};
use crate::templates::context::EmailFacts;
use crate::templates::money::format_money;
use crate::templates::render::Renderer;
use crate::trigger::{
    classify, refund_key, refund_matching_total, Classification, Lookup, TriggerFacts,
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
}

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
        let event: Value = match serde_json::from_str(payload) {
            Ok(v) => v,
            Err(e) => return Outcome::Ignore(format!("payload is not JSON: {e}")),
        };
        let mut facts = match classify(&event) {
            Classification::Ignored { reason } => return Outcome::Ignore(reason),
            Classification::Deauthorized { account } => return deauthorized(integration, account),
            Classification::Trigger(facts) => *facts,
        };
        let mut delivery = NewDelivery {
            integration_id: integration.id.clone(),
            event_id,
            stripe_event_id: event["id"].as_str().unwrap_or_default().to_owned(),
            business_key: facts.business_key.clone(),
            trigger: facts.kind.as_str().to_owned(),
            ..NewDelivery::default()
        };
        let not_sent = |mut d: NewDelivery, status: Status, note: String| {
            d.status = status;
            d.note = Some(note);
            Outcome::Delivery(Box::new(d))
        };
        if integration.status == "disconnected" {
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
        match lookups.complete(&mut facts).await {
            Ok(Some(reason)) => return Outcome::Ignore(reason),
            Ok(None) => {}
            Err(LookupError::Transient(reason)) => return Outcome::Retry(reason),
            Err(LookupError::Permanent(reason)) => {
                return not_sent(delivery, Status::Failed, reason)
            }
        }
        delivery.business_key = facts.business_key.clone();

        let Some(recipient) = facts
            .customer
            .email
            .as_deref()
            .map(|e| e.trim().to_lowercase())
            .filter(|e| e.contains('@'))
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
        let candidates: Vec<&templates::Template> =
            templates.iter().filter(|t| t.trigger == kind).collect();
        let scopes: Vec<ItemScope> = facts
            .items
            .iter()
            .map(|i| ItemScope {
                product_id: i.product_id.as_deref(),
                plan_id: i.price_id.as_deref(),
            })
            .collect();
        let Some((template, item_index)) = choose(&candidates, &scopes) else {
            let first = facts.items.first();
            let scope = templates::scope_text(
                kind,
                first.and_then(|i| i.product_id.as_deref()),
                first.and_then(|i| i.price_id.as_deref()),
            );
            return not_sent(
                delivery,
                Status::Skipped,
                format!("no template for {scope}"),
            );
        };
        let item = item_index.map(|i| facts.items[i].clone());
        delivery.template_id = Some(template.id);
        delivery.product_id = item.as_ref().and_then(|i| i.product_id.clone());
        delivery.plan_id = item.as_ref().and_then(|i| i.price_id.clone());

        let plan = match &item {
            Some(i) => match lookups
                .plan(i.price_id.as_deref(), i.product_id.as_deref())
                .await
            {
                Ok(plan) => plan,
                Err(LookupError::Transient(reason)) => return Outcome::Retry(reason),
                Err(LookupError::Permanent(reason)) => {
                    return not_sent(delivery, Status::Failed, reason)
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
            plan_name: plan.as_ref().map(|p| p.name.clone()),
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
        match self
            .renderer
            .render(Some(template.id), &template.source, kind, &email)
        {
            Ok(rendered) => {
                delivery.subject = Some(rendered.subject);
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
                not_sent(delivery, Status::Failed, note)
            }
        }
    }
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
        Some(Credentials {
            api_key: self.integration.api_key.as_deref()?,
            account: self.integration.stripe_account.as_deref(),
        })
    }

    fn no_key(&self, what: &str) -> LookupError {
        LookupError::Permanent(format!(
            "{what}, and integration {} has no Stripe API key to look it up: add one with \
             `mailmycustomer integration add --api-key rk_…` (a restricted key with read access)",
            self.integration.name
        ))
    }

    /// Completes `facts` in place. `Ok(Some(reason))`: the event turns out not to need an email.
    async fn complete(&self, facts: &mut TriggerFacts) -> Result<Option<String>, LookupError> {
        let stripe = &self.preparer.stripe;
        for lookup in facts.missing() {
            match lookup {
                Lookup::ProductName(product) => {
                    if let Some(name) = self.product_name(&product).await? {
                        for item in facts
                            .items
                            .iter_mut()
                            .filter(|i| i.product_id.as_deref() == Some(&product))
                        {
                            item.product_name = Some(name.clone());
                        }
                    }
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
            }
        }
        Ok(None)
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
    /// the product was deleted: the email is still worth sending without it.
    async fn product_name(&self, id: &str) -> Result<Option<String>, LookupError> {
        if let Some(Known::Product(name)) = self.preparer.known(&self.integration.id, id) {
            return Ok(name);
        }
        let name = self.fetch_product_name(id).await?;
        self.preparer
            .remember(&self.integration.id, id, Known::Product(name.clone()));
        Ok(name)
    }

    async fn fetch_product_name(&self, id: &str) -> Result<Option<String>, LookupError> {
        let pool = &self.preparer.pool;
        let (integration, product) = (self.integration.id.clone(), id.to_owned());
        if let Some(name) = db::call(pool, move |c| {
            catalog::product_name(c, &integration, &product)
        })
        .await?
        {
            return Ok(Some(name));
        }
        let Some(creds) = self.credentials() else {
            return Ok(None);
        };
        let product = match self.preparer.stripe.product(&creds, id).await {
            Ok(p) => p,
            Err(StripeError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (integration, name) = (self.integration.id.clone(), product.name.clone());
        db::call(pool, move |c| {
            catalog::put_product(c, &integration, &product.id, &product.name)
        })
        .await?;
        Ok(Some(name))
    }

    /// A plan (price): the catalog, else Stripe (then cached). Its name is the price's nickname,
    /// else its amount and interval ("$20.00 / month").
    async fn plan(
        &self,
        price: Option<&str>,
        product: Option<&str>,
    ) -> Result<Option<catalog::Plan>, LookupError> {
        let Some(price) = price else { return Ok(None) };
        if let Some(Known::Plan(plan)) = self.preparer.known(&self.integration.id, price) {
            return Ok(plan);
        }
        let plan = self.fetch_plan(price, product).await?;
        self.preparer
            .remember(&self.integration.id, price, Known::Plan(plan.clone()));
        Ok(plan)
    }

    async fn fetch_plan(
        &self,
        price: &str,
        product: Option<&str>,
    ) -> Result<Option<catalog::Plan>, LookupError> {
        let pool = &self.preparer.pool;
        let (integration, id) = (self.integration.id.clone(), price.to_owned());
        if let Some(plan) = db::call(pool, move |c| catalog::plan(c, &integration, &id)).await? {
            return Ok(Some(plan));
        }
        let Some(creds) = self.credentials() else {
            return Ok(None);
        };
        let fetched = match self.preparer.stripe.price(&creds, price).await {
            Ok(p) => p,
            Err(StripeError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let name = fetched
            .nickname
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| {
                let amount = fetched
                    .unit_amount
                    .map(|a| format_money(a, &fetched.currency));
                match (amount, &fetched.interval) {
                    (Some(a), Some(i)) => format!("{a} / {i}"),
                    (Some(a), None) => a,
                    (None, _) => fetched.id.clone(),
                }
            });
        let plan = catalog::Plan {
            id: fetched.id.clone(),
            product_id: Some(fetched.product_id.clone()).or(product.map(str::to_owned)),
            name,
            interval: fetched.interval.clone(),
        };
        let (integration, stored) = (self.integration.id.clone(), plan.clone());
        db::call(pool, move |c| catalog::put_plan(c, &integration, &stored)).await?;
        Ok(Some(plan))
    }
}
