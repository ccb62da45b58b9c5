//! Templates as the CLI's TOML files: `GET /templates/{id}/export` downloads one (the file
//! `mailmycustomer template export` writes for it), `POST /templates/import` takes uploaded
//! files (multipart) and saves them all or, when any is wrong, none, re-showing the templates
//! page with 422 and every problem named by its file.

use std::sync::Arc;

use poem::http::header;
use poem::web::cookie::CookieJar;
use poem::web::{Data, Multipart, Path};
use poem::{handler, IntoResponse, Response};

use super::matrix::{answer, load};
use super::{done, failed, matrix_path};
use crate::app::App;
use crate::manage::templates;
use crate::templates::files::TemplateFile;
use crate::web::auth::{SignedIn, CSRF_FIELD};
use crate::Error;

#[handler]
pub async fn export(
    Data(app): Data<&Arc<App>>,
    signed_in: SignedIn,
    Path(id): Path<i64>,
) -> Response {
    match templates::get(app, id).await {
        Ok(t) => {
            let file = TemplateFile::of(&t);
            // file_name() keeps to [A-Za-z0-9_.-], so it needs no quoting beyond the quotes.
            let disposition = format!("attachment; filename=\"{}\"", file.file_name());
            file.to_toml()
                .with_content_type("application/toml; charset=utf-8")
                .with_header(header::CONTENT_DISPOSITION, disposition)
                .into_response()
        }
        Err(e) => failed(&e, signed_in.session()),
    }
}

#[handler]
pub async fn import(
    Data(app): Data<&Arc<App>>,
    jar: &CookieJar,
    signed_in: SignedIn,
    multipart: Multipart,
) -> Response {
    let session = signed_in.session();
    let (files, integration) = match read_upload(multipart).await {
        Ok(read) => read,
        Err(e) => return rejected(app, session, e).await,
    };
    match templates::import(app, files, integration.as_deref()).await {
        Ok(n) => done(
            jar,
            &matrix_path(integration.as_deref()),
            format!("Imported {n} template{}.", if n == 1 { "" } else { "s" }),
        ),
        Err(e) => rejected(app, session, e).await,
    }
}

/// The uploaded files as (name, text), and the integration to save them for (empty: as the
/// files say).
async fn read_upload(
    mut multipart: Multipart,
) -> Result<(Vec<(String, String)>, Option<String>), Error> {
    fn unreadable(e: impl std::fmt::Display) -> Error {
        Error::invalid("files", format!("the upload could not be read: {e}"))
    }
    let mut files = Vec::new();
    let mut integration = None;
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        match field.name() {
            Some("files") => {
                let name = field.file_name().unwrap_or("upload").to_owned();
                let bytes = field.bytes().await.map_err(unreadable)?;
                if name.is_empty() && bytes.is_empty() {
                    continue;
                }
                let text = String::from_utf8(bytes)
                    .map_err(|_| Error::invalid("files", format!("{name}: is not UTF-8 text")))?;
                files.push((name, text));
            }
            Some("integration") => {
                let id = field.text().await.map_err(unreadable)?;
                integration = Some(id.trim().to_owned()).filter(|id| !id.is_empty());
            }
            Some(CSRF_FIELD) | None | Some(_) => {}
        }
    }
    if files.is_empty() {
        return Err(Error::invalid(
            "files",
            "choose one or more .toml files to import",
        ));
    }
    Ok((files, integration))
}

/// The templates page again, the import's problem shown at its form (422), or the error page
/// when it is not about the files.
async fn rejected(app: &App, session: crate::web::layout::Session<'_>, e: Error) -> Response {
    if e.field().is_none() {
        return failed(&e, session);
    }
    match load(app, None).await {
        Ok(loaded) => answer(session, None, &loaded, Some(&e), e.status()),
        Err(other) => failed(&other, session),
    }
}
