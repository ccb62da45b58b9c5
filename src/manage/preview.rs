//! The template editor's preview and test email: unsaved template text rendered with the
//! trigger's sample event, or with one of the last real events of that trigger.
//!
//! A real event's facts are resolved once, by the pipeline's own `Preparer::resolve` (so with
//! the lookups the pipeline would make and no more, catalog first), and kept for the session
//! while the merchant edits: typing renders again from memory and never calls Stripe.
//!
//! The rendered HTML is kept briefly under a random token, because the editor shows it in an
//! `<iframe sandbox>` loaded from its own route (`security::email_frame`): an `srcdoc` frame
//! would inherit our pages' policy, which refuses the inline styles emails are made of. Both
//! memories are small and bounded: a few entries per session, a few dozen sessions, short
//! lifetimes; a token is good only for the session that made it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::app::App;
use crate::db::deliveries::LogFilter;
use crate::db::events;
use crate::db::integrations::Integration;
use crate::db::templates::{Template, TemplateInput};
use crate::manage::deliveries::{test_relay, test_reply, TestEmail};
use crate::manage::users::random_hex;
use crate::outbox::smtp::{send_now, OutgoingEmail};
use crate::pipeline::prepare::Outcome;
use crate::templates::context::{sample, EmailFacts};
use crate::templates::render::{TemplateError, TemplateSource};
use crate::trigger::{clean_text, TriggerKind};
use crate::Error;

/// Rendered emails kept per session, and for how long: the editor asks for the newest.
const FRAMES_PER_SESSION: usize = 6;
const FRAME_TTL: Duration = Duration::from_secs(10 * 60);
/// Resolved real events kept per session, and for how long: an editing session's worth.
const FACTS_PER_SESSION: usize = 4;
const FACTS_TTL: Duration = Duration::from_secs(30 * 60);
/// Sessions with something kept; the one unused longest is dropped first.
const MAX_SESSIONS: usize = 32;
/// How many recent deliveries of a trigger are looked through for events to offer, and how
/// many events are offered.
const SCANNED: usize = 60;
const OFFERED: usize = 8;

/// Which facts a preview is rendered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum With {
    /// The trigger's sample event (`templates::context::sample`).
    Sample,
    /// A stored event, by its row id.
    Event(i64),
}

impl With {
    /// `sample` or an event's row id, as the editor's list sends it.
    pub fn parse(value: &str) -> Result<With, Error> {
        match value.trim() {
            "" | "sample" => Ok(With::Sample),
            id => id.parse().map(With::Event).map_err(|_| {
                Error::invalid("event", "pick the sample or one of the events in the list")
            }),
        }
    }

    pub fn as_value(self) -> String {
        match self {
            With::Sample => "sample".to_owned(),
            With::Event(id) => id.to_string(),
        }
    }
}

/// A preview: the email's parts, and the token its HTML is kept under for the frame.
#[derive(Debug, Clone)]
pub struct Preview {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub token: String,
    /// What the email would go without, and why (a real event's lookups that could not be made).
    pub notes: Vec<String>,
}

/// An event the editor offers to preview with: one of the last of its trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventChoice {
    pub event_id: i64,
    pub stripe_event_id: String,
    pub integration_id: String,
    pub created_at: i64,
    pub recipient: Option<String>,
}

/// What the editor keeps between requests, per session.
#[derive(Default)]
pub struct Previews {
    sessions: Mutex<HashMap<String, Kept>>,
    /// Held while a real event is resolved, so two previews in flight for the same event (a
    /// fast typist) resolve it once: the second finds the first's facts.
    resolving: tokio::sync::Mutex<()>,
}

struct Kept {
    used: Instant,
    facts: VecDeque<(FactsKey, Instant, Resolved)>,
    frames: VecDeque<(String, Instant, Arc<str>)>,
}

/// A real event resolved for a template scope (the scope picks the item whose plan is read).
type FactsKey = (i64, Option<String>, Option<String>, Option<String>);

#[derive(Clone)]
struct Resolved {
    facts: EmailFacts,
    integration: Integration,
    notes: Vec<String>,
}

impl Previews {
    fn with_session<T>(&self, session: &str, work: impl FnOnce(&mut Kept) -> T) -> T {
        let mut sessions = self.sessions.lock().expect("previews lock");
        if !sessions.contains_key(session) && sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, kept)| kept.used)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        let kept = sessions.entry(session.to_owned()).or_insert_with(|| Kept {
            used: Instant::now(),
            facts: VecDeque::new(),
            frames: VecDeque::new(),
        });
        let now = Instant::now();
        kept.used = now;
        kept.facts
            .retain(|(_, at, _)| now.duration_since(*at) < FACTS_TTL);
        kept.frames
            .retain(|(_, at, _)| now.duration_since(*at) < FRAME_TTL);
        work(kept)
    }

    fn facts(&self, session: &str, key: &FactsKey) -> Option<Resolved> {
        self.with_session(session, |kept| {
            kept.facts
                .iter()
                .find(|(k, ..)| k == key)
                .map(|(.., resolved)| resolved.clone())
        })
    }

    fn keep_facts(&self, session: &str, key: FactsKey, resolved: Resolved) {
        self.with_session(session, |kept| {
            kept.facts.retain(|(k, ..)| *k != key);
            if kept.facts.len() >= FACTS_PER_SESSION {
                kept.facts.pop_front();
            }
            kept.facts.push_back((key, Instant::now(), resolved));
        })
    }

    fn keep_frame(&self, session: &str, token: String, html: Arc<str>) {
        self.with_session(session, |kept| {
            if kept.frames.len() >= FRAMES_PER_SESSION {
                kept.frames.pop_front();
            }
            kept.frames.push_back((token, Instant::now(), html));
        })
    }

    /// The HTML kept under `token` for `session`; None when it is another session's, expired
    /// or never was.
    pub fn frame(&self, session: &str, token: &str) -> Option<Arc<str>> {
        self.with_session(session, |kept| {
            kept.frames
                .iter()
                .find(|(t, ..)| t == token)
                .map(|(.., html)| html.clone())
        })
    }
}

/// Renders `draft` (a template as typed, not saved) with the facts `with` names and keeps its
/// HTML for the frame. The draft is first checked as saving would check it (an MJML body
/// compiled): a part that does not compile or render is `Error::Invalid` naming it (`subject`,
/// `body`, `text`) with its line. The sample speaks for the draft's integration (its name).
pub async fn render(
    app: &App,
    session: &str,
    draft: &TemplateInput,
    with: With,
) -> Result<Preview, Error> {
    let (source, resolved) = compile_and_resolve(app, session, draft, with).await?;
    let rendered = app
        .preparer
        .renderer
        .render(None, &source, draft.trigger, &resolved.facts)
        .map_err(invalid)?;
    let token = random_hex()?;
    let html: Arc<str> = Arc::from(rendered.html.as_str());
    app.previews.keep_frame(session, token.clone(), html);
    Ok(Preview {
        subject: clean_text(&rendered.subject),
        text: rendered.text,
        html: rendered.html,
        token,
        notes: resolved.notes,
    })
}

/// The draft as it would render (MJML compiled), and the facts `with` names.
async fn compile_and_resolve(
    app: &App,
    session: &str,
    draft: &TemplateInput,
    with: With,
) -> Result<(TemplateSource, Resolved), Error> {
    let checked = super::templates::check(draft)?;
    let resolved = facts(app, session, draft, &checked.source, with).await?;
    Ok((checked.source, resolved))
}

/// Renders `draft` as `render` does and sends it to `to` through the SMTP settings in effect,
/// from the integration's sender (the event's, else the draft's). Nothing is recorded in the log.
pub async fn send_test(
    app: &App,
    session: &str,
    draft: &TemplateInput,
    with: With,
    to: &str,
) -> Result<TestEmail, Error> {
    let (smtp, to) = test_relay(app, to)?;
    let (source, resolved) = compile_and_resolve(app, session, draft, with).await?;
    let rendered = app
        .preparer
        .renderer
        .render(None, &source, draft.trigger, &resolved.facts)
        .map_err(invalid)?;
    let subject = clean_text(&rendered.subject);
    let email = OutgoingEmail {
        delivery_id: 0,
        created_at: 0,
        to: &to,
        to_name: None,
        from_address: resolved.integration.from_address.as_deref(),
        subject: &subject,
        html: &rendered.html,
        text: &rendered.text,
    };
    Ok(test_reply(send_now(&smtp, &email).await))
}

/// The last events of `trigger` that produced a delivery (emailed, skipped or failed), newest
/// first: of `integration` when given, and of `product` when the template is for one.
pub async fn recent_events(
    app: &App,
    trigger: TriggerKind,
    integration: Option<&str>,
    product: Option<&str>,
) -> Result<Vec<EventChoice>, Error> {
    let filter = LogFilter {
        trigger: Some(trigger),
        product_id: product.map(str::to_owned),
        limit: SCANNED,
        ..LogFilter::default()
    };
    let found = super::deliveries::search(app, filter).await?;
    let mut offered: Vec<EventChoice> = Vec::new();
    for d in found {
        let Some(event_id) = d.event_id else { continue };
        if integration.is_some_and(|i| i != d.integration_id)
            || offered.iter().any(|o| o.event_id == event_id)
        {
            continue;
        }
        offered.push(EventChoice {
            event_id,
            stripe_event_id: d.stripe_event_id,
            integration_id: d.integration_id,
            created_at: d.created_at,
            recipient: d.recipient,
        });
        if offered.len() == OFFERED {
            break;
        }
    }
    Ok(offered)
}

/// The facts `with` names: the sample, or a real event resolved once per session and scope.
async fn facts(
    app: &App,
    session: &str,
    draft: &TemplateInput,
    source: &TemplateSource,
    with: With,
) -> Result<Resolved, Error> {
    let event_id = match with {
        With::Sample => {
            let integration = match &draft.integration_id {
                Some(id) => super::integrations::get(app, id).await?,
                None => super::templates::stand_in(),
            };
            let mut facts = sample(draft.trigger);
            facts.merchant_name = integration.name.clone();
            return Ok(Resolved {
                facts,
                integration,
                notes: Vec::new(),
            });
        }
        With::Event(id) => id,
    };
    let key = (
        event_id,
        draft.integration_id.clone(),
        draft.product_id.clone(),
        draft.plan_id.clone(),
    );
    if let Some(resolved) = app.previews.facts(session, &key) {
        return Ok(resolved);
    }
    let _one_at_a_time = app.previews.resolving.lock().await;
    if let Some(resolved) = app.previews.facts(session, &key) {
        return Ok(resolved);
    }
    let event = app
        .db(move |c| events::get_by_id(c, event_id))
        .await?
        .ok_or_else(|| Error::NotFound {
            what: "event",
            id: event_id.to_string(),
        })?;
    if let Some(notice) = event.damage_notice() {
        return Err(Error::invalid(
            "event",
            format!(
                "event {} cannot be previewed with: {notice}",
                event.stripe_event_id
            ),
        ));
    }
    let integration = super::integrations::get(app, &event.integration_id).await?;
    // The draft stands in as the only template, so the pipeline picks the event's item that
    // this template's scope would answer for.
    let stand_in = [Template {
        id: 0,
        integration_id: draft.integration_id.clone(),
        trigger: draft.trigger,
        product_id: draft.product_id.clone(),
        plan_id: draft.plan_id.clone(),
        format: draft.format,
        mjml: None,
        source: source.clone(),
        enabled: true,
        builtin: false,
        version: 0,
        updated_at: 0,
    }];
    let resolved = match app
        .preparer
        .resolve(&integration, &stand_in, Some(event.id), &event.payload)
        .await
    {
        Ok(resolved) => Resolved {
            facts: resolved.email,
            integration: integration.clone(),
            notes: resolved.notes,
        },
        Err(outcome) => return Err(unusable(&event.stripe_event_id, outcome)),
    };
    app.previews.keep_facts(session, key, resolved.clone());
    Ok(resolved)
}

/// Why a real event cannot be previewed with, in the merchant's words.
fn unusable(stripe_event_id: &str, outcome: Outcome) -> Error {
    let why = match outcome {
        Outcome::Delivery(d) => d.note.unwrap_or_else(|| "it would send nothing".to_owned()),
        Outcome::Ignore(reason) | Outcome::Disconnect(reason) => reason,
        Outcome::Retry(reason) => format!("{reason}; try again in a moment"),
    };
    Error::invalid(
        "event",
        format!("event {stripe_event_id} cannot be previewed with: {why}"),
    )
}

/// A part that does not render, as the field the editor marks.
fn invalid(e: TemplateError) -> Error {
    let field = match e.part {
        "subject" => "subject",
        "text body" => "text",
        _ => "body",
    };
    Error::invalid(field, e.to_string())
}
