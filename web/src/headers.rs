//! The security headers on every response (pages, API, static files, errors): a
//! Content-Security-Policy that runs only scripts served from `/static` (no inline
//! script, handler or `javascript:` URL; the templates carry none, a test checks), no
//! framing by other sites, no MIME sniffing and no full URLs in the `Referer` sent
//! elsewhere.

use axum::http::{header, HeaderValue};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

/// Everything from this origin only; scripts and styles from files only (the pages use
/// no inline `<script>`, event handler or `style=` attribute, and htmx is told not to
/// inject its indicator `<style>` by the `htmx-config` meta tag in `base.html`); no
/// plugins; no `<base>` rewriting; forms post only here; no framing (clickjacking).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// `router` with the headers added to each response that does not set them itself.
pub fn with_security_headers(router: Router) -> Router {
    let headers = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        // `frame-ancestors` for browsers that predate it.
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Links to other sites (a DAG's docs, an alert target) get no path or query.
        (header::REFERRER_POLICY, "same-origin"),
    ];
    headers.into_iter().fold(router, |router, (name, value)| {
        router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ))
    })
}
