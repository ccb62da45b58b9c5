//! Headers every answer carries. Our pages load scripts and styles only from our own origin
//! (no inline script or style, so an injected tag does nothing), cannot be framed, and do not
//! leak their URLs (which hold integration ids) to other sites.
//!
//! A merchant's email (a template's preview, a delivery as sent) needs inline styles and remote
//! images, so it is answered by [`email_frame`] with a policy of its own: no script at all,
//! sandboxed, framed only by our own pages. The middleware adds the page policy only to an
//! answer that does not bring one.

use poem::http::header;
use poem::{Endpoint, IntoResponse, Request, Response};

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    frame-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The policy of a merchant's email shown in an `<iframe sandbox>`: styles inline or from
/// anywhere, images from anywhere (emails link theirs), never a script, a form or a plugin.
/// `sandbox` applies even when the frame's URL is opened on its own.
pub const EMAIL_FRAME_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline' https: http:; \
    img-src https: http: data: cid:; font-src https: http: data:; form-action 'none'; \
    frame-ancestors 'self'; base-uri 'none'; sandbox";

/// Wraps every route: the page headers, keeping a policy the answer set itself.
pub async fn headers<E: Endpoint>(ep: E, req: Request) -> poem::Result<Response> {
    // With Connect configured, forms may also lead to Stripe's authorize page (`manage::oauth`).
    let policy = req
        .data::<std::sync::Arc<crate::app::App>>()
        .and_then(|app| crate::manage::oauth::form_target(&app.config()))
        .map(|origin| {
            CONTENT_SECURITY_POLICY.replace(
                "form-action 'self'",
                &format!("form-action 'self' {origin}"),
            )
        })
        .and_then(|policy| header::HeaderValue::from_str(&policy).ok())
        .unwrap_or(header::HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    let mut response = ep.call(req).await?.into_response();
    let headers = response.headers_mut();
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
        headers.insert(
            header::X_FRAME_OPTIONS,
            header::HeaderValue::from_static("DENY"),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    Ok(response)
}

/// A merchant's rendered email as a document for an `<iframe sandbox>` on our own pages.
pub fn email_frame(html: String) -> Response {
    Response::builder()
        .content_type("text/html; charset=utf-8")
        .header(header::CONTENT_SECURITY_POLICY, EMAIL_FRAME_POLICY)
        .header(header::X_FRAME_OPTIONS, "SAMEORIGIN")
        .header(header::CACHE_CONTROL, "no-store")
        .body(html)
}
