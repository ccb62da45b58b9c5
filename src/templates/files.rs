//! Templates as files, one per template, for `template export` / `template import`: a TOML
//! file that reads well in a code review (multi-line HTML stays multi-line).
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

use super::render::TemplateSource;
use crate::trigger::TriggerKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateFile {
    pub trigger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    pub subject: String,
    pub html: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

impl TemplateFile {
    pub fn new(
        trigger: TriggerKind,
        product: Option<String>,
        plan: Option<String>,
        enabled: bool,
        source: &TemplateSource,
    ) -> Self {
        TemplateFile {
            trigger: trigger.as_str().to_owned(),
            product,
            plan,
            enabled,
            subject: source.subject.clone(),
            html: source.html.clone(),
            text: source.text.clone(),
        }
    }

    /// `payment_failed.any-product.any-plan.toml`, `payment_failed.prod_X.price_Y.toml`: unique
    /// per scope, so an export into a git checkout shows each template's history.
    pub fn file_name(&self) -> String {
        let part = |v: &Option<String>, any: &str| {
            v.as_deref().map(sanitize).unwrap_or_else(|| any.to_owned())
        };
        format!(
            "{}.{}.{}.toml",
            self.trigger,
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

    pub fn source(&self) -> TemplateSource {
        TemplateSource {
            subject: self.subject.clone(),
            html: self.html.clone(),
            text: self.text.clone(),
        }
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

    #[test]
    fn round_trips_and_keeps_html_multiline() {
        let file = TemplateFile::new(
            TriggerKind::PaymentFailed,
            Some("prod_1".into()),
            None,
            false,
            &TemplateSource {
                subject: "Oops \"{{ name }}\"".into(),
                html: "<p>a</p>\n<p>b</p>\n".into(),
                text: None,
            },
        );
        let text = file.to_toml();
        assert!(text.contains("<p>a</p>\n<p>b</p>"), "{text}");
        assert_eq!(TemplateFile::from_toml(&text).unwrap(), file);
        assert_eq!(file.file_name(), "payment_failed.prod_1.any-plan.toml");
        let odd = TemplateFile {
            product: Some("../../etc".into()),
            ..file
        };
        assert_eq!(odd.file_name(), "payment_failed.______etc.any-plan.toml");
        assert!(TemplateFile::from_toml(
            "trigger = \"x\"\nsubject = \"s\"\nhtml = \"h\"\ncolour = 1"
        )
        .unwrap_err()
        .contains("colour"));
    }
}
