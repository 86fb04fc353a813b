//! The web page the control API serves: plain HTML, JS and CSS embedded in
//! the binary (`web/`), a chat client and a live view of the node, fed by
//! the same typed endpoints as the CLI plus one server-sent event stream
//! ([`stream`]). A conversation opens with what `GET /history` kept of it
//! and the contact list includes `GET /contacts`.
//!
//! # Implementation notes
//! - A browser cannot reach a Unix socket, so the page is for loopback TCP
//!   (`skyhop run --control 127.0.0.1:PORT`): `GET /login?token=COOKIE`
//!   checks the cookie and hands it to the browser as an `HttpOnly`,
//!   `SameSite=Strict` cookie named after the port (browsers keep cookies
//!   per host, not per port), then redirects to `/`; the guard accepts it
//!   from then on. A foreign site can neither read it nor send it.
//! - The page puts every text from the network into the DOM with
//!   `textContent`, never as HTML, and a strict Content-Security-Policy
//!   allows only its own script and style.
//! - The stream holds one of the control API's waiter permits while open.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use futures::Stream;

use super::api::{self, ErrorCode};
use super::api_state::{waiter_permit, ApiError, ApiState};
use super::waiters::ClientId;

/// Where the browser trades the cookie for a browser cookie.
pub const LOGIN_PATH: &str = "/login";
/// The page's script.
pub const SCRIPT_PATH: &str = "/app.js";
/// The page's style sheet.
pub const STYLE_PATH: &str = "/style.css";
/// How often the stream sends a fresh status when nothing happens.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// Events sent at most per stream message batch.
const EVENTS_PER_BATCH: usize = 256;

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const STYLE_CSS: &str = include_str!("web/style.css");
/// Only the page's own script and style; no framing by other sites.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
                   form-action 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /`: the page.
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /app.js`.
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /style.css`.
pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// `GET /login?token=COOKIE`: sets the browser cookie and goes to the page.
pub(super) async fn login(
    State(s): State<ApiState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    // The cookie is hex: nothing to percent-decode.
    let token = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .unwrap_or("");
    let hex = !token.is_empty() && token.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex || !s.accepts_token(token) {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "wrong token: use the cookie in <data-dir>/control.cookie",
        ));
    }
    let mut r = Redirect::to("/").into_response();
    // Hex only, checked above: safe inside the header.
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/",
        s.token_cookie_name(),
        token
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// `GET /stream`: server-sent events: `log` for each event of the node's
/// log (a [`api::LoggedEvent`]) and `status` (a [`api::Status`]) at once,
/// after events and every [`STATUS_EVERY`].
pub(super) async fn stream(
    State(s): State<ApiState>,
    Extension(client): Extension<ClientId>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let permit = waiter_permit(&s.waiters, client)?;
    let handle = s.handle.clone();
    let since = handle.events().newest();
    let stream = futures::stream::unfold(
        (handle, since, permit, true),
        |(handle, since, permit, first)| async move {
            let list = if first {
                Vec::new()
            } else {
                handle.events().wait_since(since, STATUS_EVERY).await
            };
            let mut batch: Vec<SseEvent> = Vec::new();
            let mut next = since;
            for (cursor, e) in list.iter().take(EVENTS_PER_BATCH) {
                next = *cursor;
                let logged = api::LoggedEvent {
                    cursor: *cursor,
                    event: api::Event::from(e),
                };
                if let Ok(ev) = SseEvent::default().event("log").json_data(&logged) {
                    batch.push(ev);
                }
            }
            // A stopped node ends the stream.
            let report = handle.status().await.ok()?;
            if let Ok(ev) = SseEvent::default()
                .event("status")
                .json_data(api::Status::from(&report))
            {
                batch.push(ev);
            }
            let items = futures::stream::iter(batch.into_iter().map(Ok));
            Some((items, (handle, next, permit, false)))
        },
    );
    use futures::StreamExt;
    Ok(Sse::new(stream.flatten()).keep_alive(KeepAlive::default()))
}
