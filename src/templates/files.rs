//! Templates as files, one per template, for `template export` / `template import` and the web
//! UI's export and import: a TOML file that reads well in a code review (multi-line HTML stays
//! multi-line). The body is `html = …` or `mjml = …` (the MJML as written); `integration` is
//! there only for an integration's own template, so files from before either existed still
//! import, as shared HTML templates.
//!
//! Export and import touch only regular files, never through a symbolic link: they may run as
//! root or as the service user in a folder someone else can write to, and a planted link would
//! make an export overwrite, or an import read, a file of the link's choosing; a FIFO or a device
//! would hang the command.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::body::Format;
use crate::db::templates::{Template, TemplateInput};
use crate::trigger::TriggerKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    pub trigger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mjml: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

impl TemplateFile {
    /// The file of a stored template: its body as written (the MJML, not what it compiled to).
    pub fn of(t: &Template) -> Self {
        let (html, mjml) = match t.format {
            Format::Html => (Some(t.source.html.clone()), None),
            Format::Mjml => (None, Some(t.body().to_owned())),
        };
        TemplateFile {
            integration: t.integration_id.clone(),
            trigger: t.trigger.as_str().to_owned(),
            product: t.product_id.clone(),
            plan: t.plan_id.clone(),
            enabled: t.enabled,
            subject: t.source.subject.clone(),
            html,
            mjml,
            text: t.source.text.clone(),
        }
    }

    /// The template this file describes, to be saved (added, or replacing its scope's).
    pub fn input(&self) -> Result<TemplateInput, String> {
        let trigger: TriggerKind = self.trigger.parse().map_err(|e| format!("{e}"))?;
        let (format, body) = match (&self.html, &self.mjml) {
            (Some(html), None) => (Format::Html, html.clone()),
            (None, Some(mjml)) => (Format::Mjml, mjml.clone()),
            (Some(_), Some(_)) => return Err("has both `html` and `mjml`: keep one".into()),
            (None, None) => return Err("has no body: add `html = …` or `mjml = …`".into()),
        };
        Ok(TemplateInput {
            id: None,
            integration_id: self.integration.clone(),
            trigger,
            product_id: self.product.clone(),
            plan_id: self.plan.clone(),
            subject: self.subject.clone(),
            format,
            body,
            text: self.text.clone(),
            enabled: self.enabled,
        })
    }

    /// `payment_failed.any-product.any-plan.toml`, `payment_failed.prod_X.price_Y.toml`, and
    /// `int_Z.payment_failed.….toml` for an integration's own: unique per scope, so an export
    /// into a git checkout shows each template's history.
    pub fn file_name(&self) -> String {
        let part = |v: &Option<String>, any: &str| {
            v.as_deref().map(sanitize).unwrap_or_else(|| any.to_owned())
        };
        let integration = self
            .integration
            .as_deref()
            .map(|i| format!("{}.", sanitize(i)))
            .unwrap_or_default();
        format!(
            "{integration}{}.{}.{}.toml",
            sanitize(&self.trigger),
            part(&self.product, "any-product"),
            part(&self.plan, "any-plan")
        )
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a template serializes")
    }

    pub fn from_toml(text: &str) -> Result<TemplateFile, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

/// Reads a template file for import; anything but a regular file is refused.
pub fn read_regular(path: &Path) -> io::Result<String> {
    let mut file = open_regular(path, OpenOptions::new().read(true))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// Writes an exported template, creating the file or replacing the content of a regular file;
/// a symbolic link or anything else at `path` is refused.
pub fn write_regular(path: &Path, text: &str) -> io::Result<()> {
    let mut file = open_regular(path, OpenOptions::new().write(true).create(true))?;
    file.set_len(0)?;
    file.write_all(text.as_bytes())
}

/// Opens `path` only if it is a regular file (or, when creating, absent). The check before
/// opening gives the clear message; `O_NOFOLLOW` and the check of what was opened close the
/// race with a link or FIFO put there in between, and `O_NONBLOCK` keeps that FIFO from
/// blocking the open.
fn open_regular(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(not_regular("a symbolic link")),
        Ok(meta) if !meta.is_file() => return Err(not_regular("not a regular file")),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let file = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => not_regular("a symbolic link"),
            Some(libc::ENXIO) => not_regular("not a regular file"),
            _ => e,
        })?;
    if !file.metadata()?.is_file() {
        return Err(not_regular("not a regular file"));
    }
    Ok(file)
}

fn not_regular(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {what}: templates are exported to and imported from regular files only"),
    )
}

/// Stripe ids are `[A-Za-z0-9_]`; anything else is replaced so a file name cannot climb out of
/// the export folder.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TemplateFile {
        TemplateFile {
            integration: None,
            trigger: "payment_failed".into(),
            product: Some("prod_1".into()),
            plan: None,
            enabled: false,
            subject: "Oops \"{{ name }}\"".into(),
            html: Some("<p>a</p>\n<p>b</p>\n".into()),
            mjml: None,
            text: None,
        }
    }

    #[test]
    fn round_trips_and_keeps_html_multiline() {
        let file = sample();
        let text = file.to_toml();
        assert!(text.contains("<p>a</p>\n<p>b</p>"), "{text}");
        assert!(!text.contains("integration"), "{text}");
        assert_eq!(TemplateFile::from_toml(&text).unwrap(), file);
        assert_eq!(file.file_name(), "payment_failed.prod_1.any-plan.toml");
        let odd = TemplateFile {
            product: Some("../../etc".into()),
            ..sample()
        };
        assert_eq!(odd.file_name(), "payment_failed.______etc.any-plan.toml");
        let own = TemplateFile {
            integration: Some("int_0123".into()),
            ..sample()
        };
        assert_eq!(
            own.file_name(),
            "int_0123.payment_failed.prod_1.any-plan.toml"
        );
        assert!(TemplateFile::from_toml(
            "trigger = \"x\"\nsubject = \"s\"\nhtml = \"h\"\ncolour = 1"
        )
        .unwrap_err()
        .contains("colour"));
    }

    #[test]
    fn an_old_file_imports_as_a_shared_html_template_and_mjml_is_kept_as_written() {
        let old = "trigger = \"payment_failed\"\nsubject = \"s\"\nhtml = \"<p>h</p>\"\n";
        let input = TemplateFile::from_toml(old).unwrap().input().unwrap();
        assert_eq!(
            (
                input.integration_id,
                input.format,
                input.body.as_str(),
                input.enabled
            ),
            (None, Format::Html, "<p>h</p>", true)
        );
        let mjml = "integration = \"int_1\"\ntrigger = \"payment_failed\"\nsubject = \"s\"\n\
                    mjml = \"<mjml></mjml>\"\n";
        let input = TemplateFile::from_toml(mjml).unwrap().input().unwrap();
        assert_eq!(input.format, Format::Mjml);
        assert_eq!(input.integration_id.as_deref(), Some("int_1"));
        let both = TemplateFile {
            mjml: Some("<mjml/>".into()),
            ..sample()
        };
        assert!(both.input().unwrap_err().contains("keep one"));
        let neither = TemplateFile {
            html: None,
            ..sample()
        };
        assert!(neither.input().unwrap_err().contains("no body"));
    }
}
