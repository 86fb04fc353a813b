//! What every control-API handler shares, the API's and the web page's
//! alike: the state ([`ApiState`]: the node, who may connect, the waiters),
//! the cookie check, the refusal type ([`ApiError`]) and a waiter's place.
//! [`super::control`] serves and routes; [`super::web`] serves the page;
//! both take these from here, so neither imports the other.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::api::{ErrorCode, ErrorReply};
use super::handle::NodeHandle;
use super::waiters::{ClientId, WaiterPermit, Waiters};
use super::RuntimeError;

/// Name of the browser cookie that carries the control cookie, before the
/// port: browsers keep cookies per host, not per port, so two nodes on
/// 127.0.0.1 need two names.
pub const TOKEN_COOKIE: &str = "skyhop_token_";

/// Who may use the API and from where, as the guard checks it.
#[derive(Debug)]
pub(super) struct Access {
    /// On TCP: the cookie and the bound port; on a Unix socket: `None`
    /// (the file's mode is the check).
    pub(super) tcp: Option<(String, u16)>,
}

/// What every handler can reach.
#[derive(Clone)]
pub(super) struct ApiState {
    /// The node.
    pub(super) handle: NodeHandle,
    /// The guard's rules.
    pub(super) access: Arc<Access>,
    /// The long-polls, pings and streams open.
    pub(super) waiters: Arc<Waiters>,
}

impl ApiState {
    /// Whether `token` is this listener's cookie (a Unix socket has none
    /// and accepts any: its file mode is the check).
    pub(super) fn accepts_token(&self, token: &str) -> bool {
        match &self.access.tcp {
            Some((cookie, _)) => same_secret(token, cookie),
            None => true,
        }
    }

    /// The name of the browser cookie for this listener.
    pub(super) fn token_cookie_name(&self) -> String {
        let port = self.access.tcp.as_ref().map_or(0, |(_, port)| *port);
        format!("{TOKEN_COOKIE}{port}")
    }
}

/// A refusal: its code and a message for a person.
#[derive(Debug)]
pub(super) struct ApiError {
    /// What went wrong, for a program.
    pub(super) code: ErrorCode,
    /// What went wrong, for a person.
    message: String,
}

impl ApiError {
    /// A refusal with `code`.
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorReply {
            code: self.code,
            error: self.message,
        };
        (status, Json(body)).into_response()
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> ApiError {
        let code = match &e {
            e if e.is_bad_request() => ErrorCode::BadRequest,
            RuntimeError::NoHistory => ErrorCode::NoHistory,
            RuntimeError::History(_) => ErrorCode::HistoryFailed,
            _ => ErrorCode::Unavailable,
        };
        ApiError::new(code, e.to_string())
    }
}

/// Compares two secrets in time independent of where they differ.
pub(super) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A waiter's place for `client`, or 429.
pub(super) fn waiter_permit(
    waiters: &Arc<Waiters>,
    client: ClientId,
) -> Result<WaiterPermit, ApiError> {
    waiters
        .try_acquire(client)
        .map_err(|e| ApiError::new(ErrorCode::TooManyWaiters, e.to_string()))
}
