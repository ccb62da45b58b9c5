//! A template's body as the merchant writes it: HTML, or MJML compiled to HTML with `mrml`.
//! MJML is compiled once, when the template is saved; the HTML is what renders per email, so
//! sending never pays for MJML.
//!
//! Template expressions survive compiling where MJML keeps text: inside the content of an
//! element that holds HTML or text (`mj-text`, `mj-raw`, `mj-button`, …) and inside attribute
//! values. Between MJML tags, text is structure to mrml and a `{% if %}` there would be lost or
//! refused, so it is caught before compiling and the merchant told where to put it.

use std::fmt;

use mrml::prelude::parser::Error as ParseError;
use mrml::prelude::render::RenderOptions;

/// The language a template's body is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Html,
    Mjml,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Mjml => "mjml",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "html" => Ok(Format::Html),
            "mjml" => Ok(Format::Mjml),
            other => Err(format!("unknown body format {other:?}: use html or mjml")),
        }
    }
}

/// Why an MJML body cannot be compiled, with the line of the body at fault when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MjmlError {
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for MjmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "MJML, line {line}: {}", self.message),
            None => write!(f, "MJML: {}", self.message),
        }
    }
}

/// Elements whose content mrml keeps as HTML or text: what a template expression may sit in.
const CONTENT_ELEMENTS: [&str; 11] = [
    "mj-text",
    "mj-raw",
    "mj-button",
    "mj-table",
    "mj-navbar-link",
    "mj-accordion-title",
    "mj-accordion-text",
    "mj-social-element",
    "mj-title",
    "mj-preview",
    "mj-style",
];

/// The HTML an MJML body compiles to. No loader is configured, so an `mj-include` reads
/// nothing; no web fonts are added unless the MJML asks for them with `mj-font`, so an email
/// does not call out to a font host by default.
pub fn compile_mjml(mjml: &str) -> Result<String, MjmlError> {
    check_expressions(mjml)?;
    let parsed = mrml::parse(mjml).map_err(|e| parse_error(mjml, &e))?;
    let options = RenderOptions {
        fonts: Default::default(),
        ..RenderOptions::default()
    };
    parsed.element.render(&options).map_err(|e| MjmlError {
        line: None,
        message: e.to_string(),
    })
}

fn parse_error(mjml: &str, err: &ParseError) -> MjmlError {
    let span = match err {
        ParseError::UnexpectedElement { position, .. }
        | ParseError::UnexpectedToken { position, .. }
        | ParseError::MissingAttribute { position, .. }
        | ParseError::InvalidAttribute { position, .. }
        | ParseError::InvalidFormat { position, .. }
        | ParseError::IncludeLoaderError { position, .. } => Some(position.start),
        _ => None,
    };
    let message = match err {
        ParseError::UnexpectedElement { .. } => {
            "an element that is not allowed here (check the MJML nesting: mjml > mj-body > \
             mj-section > mj-column > mj-text)"
                .to_owned()
        }
        ParseError::UnexpectedToken { .. } => "unexpected text or markup here".to_owned(),
        ParseError::MissingAttribute { name, .. } => format!("this element needs {name:?}"),
        ParseError::InvalidAttribute { .. } => "an attribute that cannot be read".to_owned(),
        ParseError::InvalidFormat { .. } => "a value in the wrong format".to_owned(),
        ParseError::EndOfStream { .. } => "the MJML ends before every element is closed".to_owned(),
        ParseError::NoRootNode => "no <mjml> element: the body must start with <mjml>".to_owned(),
        ParseError::IncludeLoaderError { .. } => {
            "mj-include is not supported: paste the included MJML in".to_owned()
        }
        ParseError::ParserError { source, .. } => format!("not well-formed: {source}"),
        other => other.to_string(),
    };
    MjmlError {
        line: span.map(|at| line_of(mjml, at)),
        message,
    }
}

/// The 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Refuses a template tag, expression or comment that sits between MJML tags, where compiling
/// would lose it, naming its line and where it belongs instead.
fn check_expressions(mjml: &str) -> Result<(), MjmlError> {
    let bytes = mjml.as_bytes();
    let lower = mjml.to_ascii_lowercase();
    let mut i = 0;
    while i < bytes.len() {
        if lower[i..].starts_with("<!--") {
            i = lower[i..]
                .find("-->")
                .map_or(bytes.len(), |end| i + end + 3);
        } else if bytes[i] == b'<' {
            let end = tag_end(bytes, i);
            let tag = &lower[i + 1..end.saturating_sub(1).max(i + 1)];
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let self_closing = tag.trim_end().ends_with('/');
            i = end;
            if CONTENT_ELEMENTS.contains(&name.as_str()) && !self_closing {
                let close = format!("</{name}");
                i = lower[i..].find(&close).map_or(bytes.len(), |at| i + at);
            }
        } else if bytes[i] == b'{' && matches!(bytes.get(i + 1), Some(b'%' | b'{' | b'#')) {
            let what = match bytes[i + 1] {
                b'%' => "a {% … %} block",
                b'{' => "a {{ … }} expression",
                _ => "a {# … #} comment",
            };
            return Err(MjmlError {
                line: Some(line_of(mjml, i)),
                message: format!(
                    "{what} between MJML tags would be lost when the MJML is compiled; put it \
                     inside an <mj-text> (around text), or wrap it in an <mj-raw> to act on \
                     whole sections: <mj-raw>{{% if … %}}</mj-raw> … <mj-raw>{{% endif %}}</mj-raw>"
                ),
            });
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// The index just past the `>` closing the tag that opens at `start`, quotes respected (an
/// attribute value may hold a `>` or a template expression).
fn tag_end(bytes: &[u8], start: usize) -> usize {
    let mut quote = None;
    for (at, &b) in bytes.iter().enumerate().skip(start + 1) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return at + 1,
            None => {}
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"<mjml>
  <mj-body>
    <mj-section>
      <mj-column>
        <mj-text>Hello {{ customer.name }}{% if amount %}, {{ amount }}{% endif %}</mj-text>
        <mj-button href="{{ invoice.url }}">Pay</mj-button>
      </mj-column>
    </mj-section>
    <mj-raw>{% if product.name %}</mj-raw>
    <mj-section><mj-column><mj-text>{{ product.name }}</mj-text></mj-column></mj-section>
    <mj-raw>{% endif %}</mj-raw>
  </mj-body>
</mjml>"#;

    #[test]
    fn expressions_in_text_attributes_and_raw_pass_through() {
        let html = compile_mjml(OK).unwrap();
        for kept in [
            "Hello {{ customer.name }}",
            "{% if amount %}, {{ amount }}{% endif %}",
            "href=\"{{ invoice.url }}\"",
            "{% if product.name %}",
            "{% endif %}",
        ] {
            assert!(html.contains(kept), "{kept} lost in:\n{html}");
        }
        assert!(html.contains("<!doctype html>") || html.contains("<!DOCTYPE html>"));
        assert!(!html.contains("fonts.googleapis"), "no web font by default");
    }

    #[test]
    fn a_block_between_tags_is_refused_with_its_line_and_where_to_put_it() {
        let mjml = "<mjml>\n<mj-body>\n<mj-section>\n{% if x %}\n<mj-column></mj-column>\n\
                    {% endif %}\n</mj-section>\n</mj-body>\n</mjml>";
        let err = compile_mjml(mjml).unwrap_err();
        assert_eq!(err.line, Some(4));
        assert!(err.message.contains("mj-text"), "{err}");
        assert!(err.message.contains("mj-raw"), "{err}");
        assert!(err.to_string().starts_with("MJML, line 4: a {% … %} block"));
    }

    #[test]
    fn broken_mjml_names_its_line() {
        let err =
            compile_mjml("<mjml>\n<mj-body>\n<mj-section>\n<mj-text>x</mj-text>\n").unwrap_err();
        assert!(
            err.line.is_some() || err.message.contains("closed"),
            "{err}"
        );
        let err = compile_mjml("<p>not mjml</p>").unwrap_err();
        assert!(!err.message.is_empty());
    }

    #[test]
    fn formats_parse_and_print() {
        assert_eq!("MJML".parse::<Format>(), Ok(Format::Mjml));
        assert_eq!("html".parse::<Format>(), Ok(Format::Html));
        assert!("md".parse::<Format>().unwrap_err().contains("html or mjml"));
        assert_eq!(Format::Mjml.to_string(), "mjml");
    }
}
