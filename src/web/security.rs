//! Headers every answer carries. Our pages load scripts and styles only from our own origin
//! (no inline script or style, so an injected tag does nothing), cannot be framed, and do not
//! leak their URLs (which hold integration ids) to other sites. A merchant's email preview,
//! which needs inline styles, is served by its own route with its own policy (part 2).

use poem::http::header;
use poem::middleware::SetHeader;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    frame-src 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn headers() -> SetHeader {
    SetHeader::new()
        .overriding(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .overriding(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .overriding(header::X_FRAME_OPTIONS, "DENY")
        .overriding(header::REFERRER_POLICY, "same-origin")
}
