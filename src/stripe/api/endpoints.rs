//! What connecting a Stripe account with an API key asks of Stripe: whose account the key opens
//! (`GET /v1/account`), whether it may read everything the pipeline reads (one `limit=1` read of
//! each resource, collecting every refusal rather than stopping at the first), and the webhook
//! endpoint the program makes for itself (`/v1/webhook_endpoints`: create, list, retrieve,
//! delete).
//!
//! The endpoint is created with exactly the events the triggers and the catalog need
//! (`trigger::SUBSCRIBED_EVENTS`) and pinned to the API version the parser is tested against
//! (`stripe::PINNED_API_VERSION`), so the events it sends keep one shape whatever the account's
//! default version becomes.

use serde_json::Value;

use super::{check_id, missing_permission, required_id, Credentials, StripeClient, StripeError};
use crate::secret::Secret;
use crate::stripe::event::text;

/// Stripe's limit on webhook endpoints per account (and mode).
pub const ENDPOINT_LIMIT: usize = 16;

/// The metadata key that names the integration an endpoint was made for.
pub const METADATA_KEY: &str = "mailmycustomer_integration";

/// What a restricted key grants on one resource, in the words of the Dashboard's key editor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "Read",
            Access::Write => "Write",
        }
    }
}

/// One permission the program needs, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// The API collection (`customers`), as the probe reads it.
    pub collection: &'static str,
    /// The resource as the Dashboard's restricted-key editor names it.
    pub label: &'static str,
    pub access: Access,
    pub why: &'static str,
}

impl Permission {
    /// "Read on Customers".
    pub fn grant(&self) -> String {
        format!("{} on {}", self.access.as_str(), self.label)
    }
}

/// Every permission a restricted key needs, the write first: what the Add page lists and what
/// `missing_permissions` checks (the write is proven by creating the endpoint).
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        collection: "webhook_endpoints",
        label: "Webhook endpoints",
        access: Access::Write,
        why: "to create the endpoint Stripe sends this account's events to, and to delete it \
              when you change the key or disconnect",
    },
    Permission {
        collection: "customers",
        label: "Customers",
        access: Access::Read,
        why: "subscription and refund events do not carry the customer's email address",
    },
    Permission {
        collection: "products",
        label: "Products",
        access: Access::Read,
        why: "to name the product in emails and pick the template made for it",
    },
    Permission {
        collection: "prices",
        label: "Prices",
        access: Access::Read,
        why: "to name the plan in emails and pick the template made for it",
    },
    Permission {
        collection: "charges",
        label: "Charges",
        access: Access::Read,
        why: "for the receipt link and the charge a refund belongs to",
    },
    Permission {
        collection: "invoices",
        label: "Invoices",
        access: Access::Read,
        why: "for the invoice a payment or a refund belongs to",
    },
    Permission {
        collection: "invoice_payments",
        label: "Invoice payments",
        access: Access::Read,
        why: "since API 2025-03-31 only these link a payment to its invoice",
    },
    Permission {
        collection: "payment_intents",
        label: "PaymentIntents",
        access: Access::Read,
        why: "for the reason a payment failed",
    },
    Permission {
        collection: "refunds",
        label: "Refunds",
        access: Access::Read,
        why: "for the refunds of a charge",
    },
    Permission {
        collection: "events",
        label: "Events",
        access: Access::Read,
        why: "to catch up on events missed while this server was down",
    },
];

/// Whose account a key opens, as `GET /v1/account` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// `acct_…`
    pub id: String,
    /// The Dashboard's display name, else the business name, else the account's email.
    pub name: Option<String>,
}

/// A refusal the probe met: the permission and Stripe's own name for it (`rak_customer_read`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub permission: &'static Permission,
    pub stripe_name: Option<String>,
}

/// A webhook endpoint as Stripe describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// `we_…`
    pub id: String,
    pub url: String,
    /// `enabled`, or `disabled` (by Stripe after failing deliveries, or by the merchant).
    pub status: String,
    pub api_version: Option<String>,
    pub enabled_events: Vec<String>,
    /// The integration id in its metadata, when this program made it.
    pub integration: Option<String>,
    /// The signing secret: only in the answer to the create.
    pub secret: Option<Secret>,
}

/// Whether a key is for live mode (`sk_live_…`, `rk_live_…`); test keys are `…_test_…`.
pub fn is_live_key(key: &str) -> bool {
    key.starts_with("sk_live_") || key.starts_with("rk_live_")
}

impl StripeClient {
    /// `GET /v1/account`: the account the key belongs to.
    ///
    /// A restricted key may be refused the account itself: Stripe asks for an account
    /// permission (`rak_accounts_kyc_basic_read`) the program needs nowhere else, so it is not
    /// on the list of what to grant. Such a refusal still names the account ("… on account
    /// 'acct_…'"), which is all connecting needs: the account is then known by its id alone.
    pub async fn account(&self, creds: &Credentials<'_>) -> Result<Account, StripeError> {
        let url = self.url(&["account"])?;
        match self.send(creds, url, "account").await {
            Ok(value) => Account::from_json(&value),
            Err(StripeError::PermissionDenied {
                account: Some(id), ..
            }) => Ok(Account { id, name: None }),
            Err(e) => Err(e),
        }
    }

    /// Reads one object of each collection in `PERMISSIONS` that the key must read, and returns
    /// every one Stripe refused (empty: the key may read all). Any other failure (a rejected
    /// key, Stripe unreachable) ends the probe with that error.
    pub async fn missing_permissions(
        &self,
        creds: &Credentials<'_>,
    ) -> Result<Vec<Missing>, StripeError> {
        let mut missing = Vec::new();
        // One after the other: ten small reads, far below the rate limit, and the first
        // rejected key stops them all.
        for permission in PERMISSIONS.iter().filter(|p| p.access == Access::Read) {
            let mut url = self.url(&[permission.collection])?;
            url.query_pairs_mut().append_pair("limit", "1");
            match self.send(creds, url, permission.collection).await {
                Ok(_) => {}
                Err(StripeError::PermissionDenied { message, .. }) => missing.push(Missing {
                    permission,
                    stripe_name: missing_permission(&message).map(str::to_owned),
                }),
                Err(other) => return Err(other),
            }
        }
        Ok(missing)
    }

    /// `POST /v1/webhook_endpoints` at `url` for integration `integration` (its id): the
    /// subscribed events, the pinned API version, a description naming this program and the
    /// integration (`name`), and the integration id in the metadata. The answer carries the
    /// signing secret, which Stripe never shows again.
    pub async fn create_webhook_endpoint(
        &self,
        creds: &Credentials<'_>,
        url: &str,
        integration: &str,
        name: &str,
    ) -> Result<WebhookEndpoint, StripeError> {
        let description = format!(
            "MailMyCustomer: emails your customers about these events (integration “{name}”, \
             {integration}). Made by MailMyCustomer; change or remove it there, not here."
        );
        let metadata = format!("metadata[{METADATA_KEY}]");
        let mut form: Vec<(&str, &str)> = vec![
            ("url", url),
            ("api_version", crate::stripe::PINNED_API_VERSION),
            ("description", &description),
            (metadata.as_str(), integration),
        ];
        form.extend(
            crate::trigger::SUBSCRIBED_EVENTS
                .iter()
                .map(|event| ("enabled_events[]", *event)),
        );
        let answer = self.post(creds, &["webhook_endpoints"], &form).await?;
        let endpoint = WebhookEndpoint::from_json(&answer)?;
        if endpoint.secret.is_none() {
            return Err(StripeError::Invalid {
                message: format!(
                    "Stripe created webhook endpoint {} without a signing secret",
                    endpoint.id
                ),
            });
        }
        Ok(endpoint)
    }

    /// Every webhook endpoint of the account (`GET /v1/webhook_endpoints`, all pages).
    pub async fn webhook_endpoints(
        &self,
        creds: &Credentials<'_>,
    ) -> Result<Vec<WebhookEndpoint>, StripeError> {
        self.list_all(creds, "webhook_endpoints")
            .await?
            .iter()
            .map(WebhookEndpoint::from_json)
            .collect()
    }

    /// `GET /v1/webhook_endpoints/{id}`.
    pub async fn webhook_endpoint(
        &self,
        creds: &Credentials<'_>,
        id: &str,
    ) -> Result<WebhookEndpoint, StripeError> {
        WebhookEndpoint::from_json(&self.object(creds, "webhook_endpoints", id).await?)
    }

    /// `DELETE /v1/webhook_endpoints/{id}`. An endpoint that is gone already is taken as
    /// deleted: the outcome asked for holds.
    pub async fn delete_webhook_endpoint(
        &self,
        creds: &Credentials<'_>,
        id: &str,
    ) -> Result<(), StripeError> {
        check_id(id)?;
        match self.delete(creds, &["webhook_endpoints", id]).await {
            Ok(_) | Err(StripeError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Account {
    pub fn from_json(value: &Value) -> Result<Account, StripeError> {
        let name = text(value.pointer("/settings/dashboard/display_name"))
            .or_else(|| text(value.pointer("/business_profile/name")))
            .or_else(|| text(value.get("email")))
            .filter(|n| !n.trim().is_empty());
        Ok(Account {
            id: required_id(value, "account")?,
            name,
        })
    }
}

impl WebhookEndpoint {
    pub fn from_json(value: &Value) -> Result<WebhookEndpoint, StripeError> {
        let id = required_id(value, "webhook endpoint")?;
        let url = text(value.get("url")).ok_or_else(|| StripeError::Invalid {
            message: format!("webhook endpoint {id} has no url"),
        })?;
        Ok(WebhookEndpoint {
            url,
            status: text(value.get("status")).unwrap_or_else(|| "enabled".to_owned()),
            api_version: text(value.get("api_version")),
            enabled_events: value
                .get("enabled_events")
                .and_then(Value::as_array)
                .map(|all| all.iter().filter_map(|e| text(Some(e))).collect())
                .unwrap_or_default(),
            integration: text(value.pointer(&format!("/metadata/{METADATA_KEY}"))),
            secret: text(value.get("secret")).map(Secret::new),
            id,
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_refused_account_read_still_names_the_account() {
        let said = "The provided key 'rk_test_****1234' does not have the required permissions \
                    for this endpoint on account 'acct_1RosenGoods'. Having the \
                    'rak_accounts_kyc_basic_read' permission would allow this request to \
                    continue.";
        assert_eq!(
            super::super::account_named_in(said).as_deref(),
            Some("acct_1RosenGoods")
        );
        for odd in [
            "no account here",
            "on account 'acct_'",
            "on account 'acct_x\" onerror'",
        ] {
            assert_eq!(super::super::account_named_in(odd), None, "{odd}");
        }
    }

    use super::*;
    use serde_json::json;

    fn resource(name: &str) -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/stripe/fixtures3.json"
        );
        let all: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        all["resources"][name].clone()
    }

    #[test]
    fn the_account_is_named_by_its_display_name_else_business_name_else_email() {
        let mut account = resource("account");
        let named = |a: &Value| Account::from_json(a).unwrap().name;
        // The fixture has neither name, only an email.
        assert_eq!(named(&account).as_deref(), Some("site@stripe.com"));
        account["business_profile"]["name"] = "Rosen Goods Ltd".into();
        assert_eq!(named(&account).as_deref(), Some("Rosen Goods Ltd"));
        account["settings"]["dashboard"]["display_name"] = "Rosen Goods".into();
        assert_eq!(named(&account).as_deref(), Some("Rosen Goods"));
        assert_eq!(
            Account::from_json(&account).unwrap().id,
            "acct_1PgafTB7WZ01zgkW"
        );
        let bare = Account::from_json(&json!({"id": "acct_1", "email": " "})).unwrap();
        assert_eq!(bare.name, None);
        assert!(Account::from_json(&json!({"email": "x@y"})).is_err());
    }

    #[test]
    fn live_keys_are_told_from_test_keys_by_their_prefix() {
        for live in ["sk_live_51abc", "rk_live_51abc"] {
            assert!(is_live_key(live), "{live}");
        }
        for test in ["sk_test_51abc", "rk_test_51abc", "pk_live_51abc", "live"] {
            assert!(!is_live_key(test), "{test}");
        }
    }

    #[test]
    fn an_endpoint_is_read_from_stripes_shape_with_its_secret_only_when_given() {
        let fixture = resource("webhook_endpoint");
        let endpoint = WebhookEndpoint::from_json(&fixture).unwrap();
        assert_eq!(endpoint.id, "we_1Pgc6yB7WZ01zgkWzAudq4eU");
        assert_eq!(endpoint.status, "enabled");
        assert_eq!(
            endpoint.enabled_events,
            ["charge.failed", "charge.succeeded"]
        );
        assert_eq!((endpoint.secret, endpoint.integration), (None, None));

        let mut created = fixture.clone();
        created["secret"] = "whsec_created_once".into();
        created["metadata"] = json!({ METADATA_KEY: "int_0123456789abcdef" });
        created["status"] = "disabled".into();
        let endpoint = WebhookEndpoint::from_json(&created).unwrap();
        assert_eq!(endpoint.secret.unwrap().expose(), "whsec_created_once");
        assert_eq!(
            endpoint.integration.as_deref(),
            Some("int_0123456789abcdef")
        );
        assert_eq!(endpoint.status, "disabled");
    }

    #[test]
    fn every_permission_names_a_reason_and_only_webhooks_need_write() {
        for p in PERMISSIONS {
            assert!(!p.why.is_empty(), "{p:?}");
            assert_eq!(
                p.access == Access::Write,
                p.collection == "webhook_endpoints",
                "{p:?}"
            );
        }
        assert_eq!(PERMISSIONS[1].grant(), "Read on Customers");
    }
}
