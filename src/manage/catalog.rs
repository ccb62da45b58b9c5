//! The catalog per integration: the products and plans (prices) whose names the emails and the
//! template pages show, as cached from Stripe, and a refresh that reads them all again.
//!
//! `refresh` is what a merchant's **Refresh from Stripe** does and what connecting an account
//! does first: it lists every product and price (archived ones too: subscriptions made before
//! still bill with them), stores them, and says what changed. Nothing is deleted: a product
//! Stripe no longer lists is reported, and keeps its name for the log and its templates.

use std::collections::{HashMap, HashSet};

use crate::app::App;
use crate::db::catalog::{self, Plan, Product, StoredPlan};
use crate::db::integrations::Integration;
use crate::manage::{integrations, templates};
use crate::pipeline::prepare::plan_of_price;
use crate::stripe::api::{Credentials, StripeError};
use crate::trigger::clean_text;
use crate::Error;

/// Products on one page of `show`.
pub const PAGE_SIZE: usize = 100;
/// Plans without a product in the catalog shown at most, on the first page.
const UNATTACHED_SHOWN: usize = 100;

/// One page of an integration's catalog.
#[derive(Debug, Clone)]
pub struct CatalogPage {
    pub integration: Integration,
    /// How many products and plans the catalog holds in all.
    pub product_count: i64,
    pub plan_count: i64,
    pub products: Vec<ProductEntry>,
    /// Plans whose product the catalog lacks (first page only).
    pub unattached: Vec<PlanEntry>,
    /// The product to continue after, when there are more.
    pub next: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ProductEntry {
    pub product: Product,
    pub plans: Vec<PlanEntry>,
    /// Templates made for this product (any of its plans, or all of them).
    pub templates: usize,
}

#[derive(Debug, Clone)]
pub struct PlanEntry {
    pub plan: StoredPlan,
    /// Templates made for exactly this plan.
    pub templates: usize,
}

/// One page of `integration`'s products by name with their plans, starting after the product
/// `after` (the previous page's `next`).
pub async fn show(app: &App, integration: &str, after: Option<&str>) -> Result<CatalogPage, Error> {
    let found = integrations::get(app, integration).await?;
    let (id, after_id) = (found.id.clone(), after.map(str::to_owned));
    let (products, plans, unattached, counts) = app
        .db(move |c| {
            let after = match after_id {
                Some(after) => match catalog::product(c, &id, &after)? {
                    Some(product) => Some(product),
                    None => {
                        return Err(Error::NotFound {
                            what: "product",
                            id: after,
                        })
                    }
                },
                None => None,
            };
            let cursor = after.as_ref().map(|p| (p.name.as_str(), p.id.as_str()));
            let products = catalog::products_page(c, &id, cursor, PAGE_SIZE + 1)?;
            let ids: Vec<String> = products.iter().map(|p| p.id.clone()).collect();
            let plans = catalog::plans_of(c, &id, &ids)?;
            let unattached = match after {
                None => catalog::plans_without_product(c, &id, UNATTACHED_SHOWN)?,
                Some(_) => Vec::new(),
            };
            Ok((products, plans, unattached, catalog::counts(c, &id)?))
        })
        .await?;
    let mut products = products;
    let next = match products.len() > PAGE_SIZE {
        true => {
            products.truncate(PAGE_SIZE);
            products.last().map(|p| p.id.clone())
        }
        false => None,
    };

    let (for_product, for_plan) = template_counts(app, integration).await?;
    let entry = |plan: StoredPlan| PlanEntry {
        templates: for_plan.get(&plan.plan.id).copied().unwrap_or(0),
        plan,
    };
    let mut by_product: HashMap<String, Vec<PlanEntry>> = HashMap::new();
    for plan in plans {
        let product = plan.plan.product_id.clone().unwrap_or_default();
        by_product.entry(product).or_default().push(entry(plan));
    }
    Ok(CatalogPage {
        integration: found,
        product_count: counts.0,
        plan_count: counts.1,
        products: products
            .into_iter()
            .map(|product| ProductEntry {
                plans: by_product.remove(&product.id).unwrap_or_default(),
                templates: for_product.get(&product.id).copied().unwrap_or(0),
                product,
            })
            .collect(),
        unattached: unattached.into_iter().map(entry).collect(),
        next,
    })
}

/// How many templates that can answer this integration's events (its own and the shared
/// ones) are made for each product and for each plan.
async fn template_counts(
    app: &App,
    integration: &str,
) -> Result<(HashMap<String, usize>, HashMap<String, usize>), Error> {
    let mut for_product = HashMap::new();
    let mut for_plan = HashMap::new();
    for template in templates::list_for(app, integration).await? {
        if let Some(product) = template.product_id {
            *for_product.entry(product).or_default() += 1;
        }
        if let Some(plan) = template.plan_id {
            *for_plan.entry(plan).or_default() += 1;
        }
    }
    Ok((for_product, for_plan))
}

/// What a refresh found, for products and for plans apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refreshed {
    pub products: Changes,
    pub plans: Changes,
}

/// How the names Stripe lists now compare with the catalog's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Listed by Stripe, not in the catalog before: (id, name).
    pub added: Vec<(String, String)>,
    pub renamed: Vec<Renamed>,
    pub unchanged: usize,
    /// In the catalog, no longer listed by Stripe (deleted there): (id, name). Kept.
    pub gone: Vec<(String, String)>,
    /// How many of those Stripe lists are archived (kept, since subscriptions may use them).
    pub archived: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renamed {
    pub id: String,
    pub old: String,
    pub new: String,
}

impl Changes {
    /// How many Stripe listed.
    pub fn listed(&self) -> usize {
        self.added.len() + self.renamed.len() + self.unchanged
    }

    fn compare(before: &HashMap<String, String>, now: &[(String, String)]) -> Changes {
        let mut changes = Changes::default();
        for (id, name) in now {
            match before.get(id) {
                None => changes.added.push((id.clone(), name.clone())),
                Some(old) if old != name => changes.renamed.push(Renamed {
                    id: id.clone(),
                    old: old.clone(),
                    new: name.clone(),
                }),
                Some(_) => changes.unchanged += 1,
            }
        }
        let listed: HashSet<&String> = now.iter().map(|(id, _)| id).collect();
        changes.gone = before
            .iter()
            .filter(|(id, _)| !listed.contains(id))
            .map(|(id, name)| (id.clone(), name.clone()))
            .collect();
        changes.gone.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        changes
    }
}

/// Names shown in a summary before "and N more".
const NAMES_SHOWN: usize = 5;

impl Refreshed {
    /// One paragraph for a flash message or a terminal: "Read 250 products and 250 plans from
    /// Stripe: 2 added, 1 renamed (Gold → Gold plus), 497 unchanged."
    pub fn summary(&self) -> String {
        let (p, q) = (&self.products, &self.plans);
        let mut text = format!(
            "Read {} and {} from Stripe: ",
            count(p.listed(), "product", "products"),
            count(q.listed(), "plan", "plans")
        );
        let mut parts = Vec::new();
        let added = p.added.len() + q.added.len();
        if added > 0 {
            parts.push(format!("{added} added"));
        }
        let renamed: Vec<&Renamed> = p.renamed.iter().chain(&q.renamed).collect();
        if !renamed.is_empty() {
            let names = listing(renamed.iter().map(|r| format!("{} → {}", r.old, r.new)));
            parts.push(format!("{} renamed ({names})", renamed.len()));
        }
        parts.push(format!("{} unchanged", p.unchanged + q.unchanged));
        text.push_str(&parts.join(", "));
        text.push('.');
        let gone: Vec<&(String, String)> = p.gone.iter().chain(&q.gone).collect();
        if !gone.is_empty() {
            let names = listing(gone.iter().map(|(_, name)| name.clone()));
            text.push_str(&format!(
                " {} no longer on Stripe ({names}): kept, for the log and the templates made \
                 for {}.",
                gone.len(),
                if gone.len() == 1 { "it" } else { "them" }
            ));
        }
        let archived = p.archived + q.archived;
        if archived > 0 {
            text.push_str(&format!(
                " {archived} archived on Stripe: kept, as earlier subscriptions still use {}.",
                if archived == 1 { "it" } else { "them" }
            ));
        }
        text
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

/// "a, b, c" with at most `NAMES_SHOWN` names, then "and N more".
fn listing(names: impl Iterator<Item = String>) -> String {
    let names: Vec<String> = names.collect();
    let shown = names[..names.len().min(NAMES_SHOWN)].join(", ");
    match names.len().saturating_sub(NAMES_SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Reads every product and price of `integration` from Stripe again, stores their names and
/// returns what changed. Needs the integration's API key; a key Stripe refuses, or one without
/// the permission to read products or prices, is `Error::Invalid` naming the fix.
pub async fn refresh(app: &App, integration: &str) -> Result<Refreshed, Error> {
    let found = integrations::get(app, integration).await?;
    let Some(creds) = Credentials::of(&found) else {
        return Err(Error::invalid(
            "stripe",
            format!(
                "“{}” has no Stripe API key to read its products and prices with: add an API key \
                 on the integration's page (Integrations), a restricted key (rk_…) with Read on \
                 Products and Prices",
                found.name
            ),
        ));
    };
    // Names are stored as known when the reading began: an event about a product that Stripe
    // sends while the pages are read is newer, and wins.
    let as_of = crate::db::now_unix();
    let stripe = app.stripe();
    let products = stripe.products(&creds).await.map_err(from_stripe)?;
    let prices = stripe.prices(&creds).await.map_err(from_stripe)?;

    let archived_products = products.iter().filter(|p| !p.active).count();
    let archived_plans = prices.iter().filter(|p| !p.active).count();
    let products: Vec<(String, String)> = products
        .into_iter()
        .map(|listed| {
            let name = clean_text(&listed.object.name);
            let name = if name.is_empty() {
                listed.object.id.clone()
            } else {
                name
            };
            (listed.object.id, name)
        })
        .collect();
    let plans: Vec<Plan> = prices
        .iter()
        .map(|listed| plan_of_price(&listed.object, None))
        .collect();

    let id = found.id.clone();
    let (stored_products, stored_plans) = (products.clone(), plans.clone());
    let (before_products, before_plans) = app
        .db(move |c| {
            let before = catalog::names(c, &id)?;
            catalog::store(c, &id, &stored_products, &stored_plans, as_of)?;
            Ok(before)
        })
        .await?;
    let plan_names: Vec<(String, String)> =
        plans.into_iter().map(|plan| (plan.id, plan.name)).collect();
    let refreshed = Refreshed {
        products: Changes {
            archived: archived_products,
            ..Changes::compare(&before_products, &products)
        },
        plans: Changes {
            archived: archived_plans,
            ..Changes::compare(&before_plans, &plan_names)
        },
    };
    // The preparer's memo may hold an old name, or "gone" for an id Stripe lists again.
    for (id, _) in products.iter().chain(&plan_names) {
        app.preparer.forget(&found.id, id);
    }
    tracing::info!(
        integration = %found.id,
        products = refreshed.products.listed(),
        plans = refreshed.plans.listed(),
        "catalog refreshed from Stripe"
    );
    Ok(refreshed)
}

/// A refusal from Stripe as a person-fixable error: the message names the key's problem (a
/// missing permission, a revoked key) or says to try again.
fn from_stripe(error: StripeError) -> Error {
    match error {
        StripeError::PermissionDenied { message, .. } | StripeError::InvalidKey { message } => {
            Error::invalid("stripe", message)
        }
        e if e.is_transient() => Error::invalid(
            "stripe",
            format!("could not read the catalog from Stripe: {e}; try again in a minute"),
        ),
        e => Error::invalid(
            "stripe",
            format!("could not read the catalog from Stripe: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(id, name)| (id.to_string(), name.to_string()))
            .collect()
    }

    fn listed(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(id, name)| (id.to_string(), name.to_string()))
            .collect()
    }

    #[test]
    fn changes_tell_added_renamed_unchanged_and_gone_apart() {
        let before = names(&[("a", "Gold"), ("b", "Silver"), ("c", "Old thing")]);
        let now = listed(&[("a", "Gold plus"), ("b", "Silver"), ("d", "Bronze")]);
        let changes = Changes::compare(&before, &now);
        assert_eq!(changes.added, listed(&[("d", "Bronze")]));
        assert_eq!(
            changes.renamed,
            [Renamed {
                id: "a".into(),
                old: "Gold".into(),
                new: "Gold plus".into()
            }]
        );
        assert_eq!(changes.unchanged, 1);
        assert_eq!(changes.gone, listed(&[("c", "Old thing")]));
        assert_eq!(changes.listed(), 3);
    }

    #[test]
    fn the_summary_names_renames_and_what_is_gone() {
        let refreshed = Refreshed {
            products: Changes {
                added: listed(&[("d", "Bronze"), ("e", "Iron")]),
                renamed: vec![Renamed {
                    id: "a".into(),
                    old: "Gold".into(),
                    new: "Gold plus".into(),
                }],
                unchanged: 247,
                gone: listed(&[("c", "Old thing")]),
                archived: 0,
            },
            plans: Changes {
                unchanged: 250,
                archived: 3,
                ..Changes::default()
            },
        };
        assert_eq!(
            refreshed.summary(),
            "Read 250 products and 250 plans from Stripe: 2 added, 1 renamed (Gold → Gold plus), \
             497 unchanged. 1 no longer on Stripe (Old thing): kept, for the log and the \
             templates made for it. 3 archived on Stripe: kept, as earlier subscriptions still \
             use them."
        );
        assert_eq!(
            Refreshed::default().summary(),
            "Read 0 products and 0 plans from Stripe: 0 unchanged."
        );
    }

    #[test]
    fn long_listings_are_cut() {
        let names = (1..=8).map(|n| format!("P{n}"));
        assert_eq!(listing(names), "P1, P2, P3, P4, P5 and 3 more");
    }
}
