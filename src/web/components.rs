//! Small pieces pages are built from: form fields with label, help and error, the CSRF input,
//! status badges, timestamps, empty states. Each returns `Markup`; maud escapes every value.

use maud::{html, Markup};

use crate::Error;

/// The kinds of `<input>` our forms use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Text,
    Email,
    Password,
    Number,
    Url,
}

impl Input {
    fn as_str(self) -> &'static str {
        match self {
            Input::Text => "text",
            Input::Email => "email",
            Input::Password => "password",
            Input::Number => "number",
            Input::Url => "url",
        }
    }
}

/// One labelled form field. `error` is the failed save's error; it is shown here when it names
/// this field.
pub struct Field<'a> {
    pub label: &'a str,
    pub name: &'static str,
    pub input: Input,
    pub value: &'a str,
    pub help: Option<Markup>,
    pub required: bool,
    pub autocomplete: Option<&'a str>,
    pub placeholder: Option<&'a str>,
    /// Shown read-only with this reason (a value set by the environment or a flag).
    pub locked: Option<&'a str>,
}

impl<'a> Field<'a> {
    pub fn new(label: &'a str, name: &'static str, value: &'a str) -> Field<'a> {
        Field {
            label,
            name,
            input: Input::Text,
            value,
            help: None,
            required: false,
            autocomplete: None,
            placeholder: None,
            locked: None,
        }
    }

    pub fn input(mut self, input: Input) -> Self {
        self.input = input;
        self
    }

    pub fn help(mut self, help: Markup) -> Self {
        self.help = Some(help);
        self
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn autocomplete(mut self, value: &'a str) -> Self {
        self.autocomplete = Some(value);
        self
    }

    pub fn placeholder(mut self, value: &'a str) -> Self {
        self.placeholder = Some(value);
        self
    }

    pub fn locked(mut self, reason: Option<&'a str>) -> Self {
        self.locked = reason;
        self
    }

    pub fn render(&self, error: Option<&Error>) -> Markup {
        let id = format!("f-{}", self.name);
        let help_id = format!("{id}-help");
        let error_id = format!("{id}-error");
        let message = field_error(error, self.name);
        let described = match (&self.help, message.is_some(), self.locked) {
            (_, true, _) => Some(error_id.clone()),
            (Some(_), false, _) | (None, false, Some(_)) => Some(help_id.clone()),
            (None, false, None) => None,
        };
        html! {
            div.field.invalid[message.is_some()] {
                label for=(id) { (self.label) @if self.required { span.req aria-hidden="true" { " *" } } }
                input id=(id) name=(self.name) type=(self.input.as_str()) value=(self.value)
                    required[self.required] readonly[self.locked.is_some()]
                    autocomplete=[self.autocomplete] placeholder=[self.placeholder]
                    aria-invalid=[message.is_some().then_some("true")]
                    aria-describedby=[described];
                @if let Some(message) = message {
                    p.error id=(error_id) { (message) }
                }
                @if let Some(reason) = self.locked {
                    p.help id=(help_id) { "Read-only: " (reason) }
                } @else if let Some(help) = &self.help {
                    p.help id=(help_id) { (help) }
                }
            }
        }
    }
}

/// The error's message when it is about `field`.
pub fn field_error(error: Option<&Error>, field: &str) -> Option<String> {
    error
        .filter(|e| e.field() == Some(field))
        .map(Error::public_message)
}

/// A banner for a failed save whose error names no field on the form.
pub fn form_error(error: Option<&Error>, fields: &[&str]) -> Markup {
    html! {
        @if let Some(e) = error.filter(|e| e.field().is_none_or(|f| !fields.contains(&f))) {
            div.flash.error role="alert" { (e.public_message()) }
        }
    }
}

/// The hidden input every form that changes something carries.
pub fn csrf_input(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A coloured status word (sent, queued, retrying, failed, skipped, connected, …); the colour
/// comes from the `tone` class, the word itself says it to screen readers.
pub fn badge(text: &str, tone: Tone) -> Markup {
    html! { span class={ "badge " (tone.class()) } { (text) } }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Neutral,
    Warning,
    Bad,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Good => "good",
            Tone::Neutral => "neutral",
            Tone::Warning => "warning",
            Tone::Bad => "bad",
        }
    }
}

/// A moment as "3 min ago", with the exact UTC time on hover and in `datetime`.
pub fn timestamp(unix: i64, now: i64) -> Markup {
    let exact = jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| unix.to_string());
    let iso = jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default();
    html! { time datetime=(iso) title=(exact) { (relative(unix, now)) } }
}

/// "just now", "5 min ago", "3 h ago", "2 days ago", or "in 5 min" for the future.
pub fn relative(unix: i64, now: i64) -> String {
    let delta = now - unix;
    let (ahead, secs) = (delta < 0, delta.unsigned_abs());
    let text = match secs {
        0..=44 => return "just now".to_owned(),
        45..=3_599 => format!("{} min", secs.div_ceil(60).max(1)),
        3_600..=86_399 => format!("{} h", secs / 3_600),
        86_400..=172_799 => "1 day".to_owned(),
        _ => format!("{} days", secs / 86_400),
    };
    match ahead {
        true => format!("in {text}"),
        false => format!("{text} ago"),
    }
}

/// What an empty list says: what it is for and the next step.
pub fn empty_state(title: &str, text: Markup, action: Option<(&str, &str)>) -> Markup {
    html! {
        div.empty {
            h2 { (title) }
            p { (text) }
            @if let Some((href, label)) = action {
                p { a.button.primary href=(href) { (label) } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(1000, 1010), "just now");
        assert_eq!(relative(1000, 1000 + 300), "5 min ago");
        assert_eq!(relative(1000, 1000 + 7_300), "2 h ago");
        assert_eq!(relative(1000, 1000 + 86_400 * 3), "3 days ago");
        assert_eq!(relative(1000 + 600, 1000), "in 10 min");
    }

    #[test]
    fn a_field_shows_its_own_error_only() {
        let error = Error::invalid("name", "give it a <name>");
        let name = Field::new("Name", "name", "x")
            .render(Some(&error))
            .into_string();
        assert!(name.contains("give it a &lt;name&gt;") && name.contains("aria-invalid"));
        let other = Field::new("From", "from_address", "")
            .render(Some(&error))
            .into_string();
        assert!(!other.contains("give it a"));
    }
}
