//! The control API server: axum on hyper, serving the requests and replies of
//! [`super::api`] to the front's commands, scripts and the web page. By
//! default it listens on a Unix socket in the data dir (mode 0600 in a 0700
//! directory: only the node's owner can connect); loopback TCP is opt-in and
//! then every request must carry the cookie written to the data dir
//! (bitcoind's model). README.md ("Control API") lists the endpoints.
//!
//! # Implementation notes
//! - Every request passes [`guard`] first: on TCP the `Host` must be this
//!   loopback address and an `Origin`, when sent, this same origin (a DNS
//!   rebinding page or a foreign site is refused before anything else);
//!   then the cookie, as `Authorization: Bearer` or the page's
//!   `skyhop_token` cookie, compared in constant time; a `POST` needs
//!   `Content-Length` and `Content-Type: application/json` (a browser's
//!   form or `text/plain` post cannot reach a handler).
//! - Bounds: connections served at once, the time to send a request head,
//!   its size and the body's; one request per connection. Long-polls,
//!   pings and event streams hold a place of their own ([`super::waiters`]:
//!   in all and per client), so that waiters can never take the slots
//!   `/status` or `/send` need: past the limit they get 429.
//! - Every refusal is an [`ErrorReply`] with an [`ErrorCode`], axum's own
//!   rejections included.
//!
//! [`ErrorReply`]: super::api::ErrorReply
//! [`ErrorCode`]: super::api::ErrorCode

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use super::api::{
    self, ContactsRequest, ErrorCode, EventsRequest, HistoryRequest, PingReply, PingRequest,
    Request as _, RttStats, SendReply, SendRequest, TraceReply, TraceRequest, EVENTS_PATH,
    METRICS_PATH, PEERS_PATH, PING_PATH, SEND_PATH, STATUS_PATH, TRACE_PATH,
};
use super::api_state::{same_secret, waiter_permit, Access, ApiError, ApiState, TOKEN_COOKIE};
use super::handle::{NodeHandle, TraceOutcome};
use super::waiters::{ClientId, Waiters};
use super::{web, RuntimeError};

/// Largest request line plus headers.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body.
pub const MAX_BODY: usize = 16 * 1024;
/// Control connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one probe of a ping may take.
const PING_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Where the control API listens.
#[derive(Clone, Debug)]
pub enum ControlListen {
    /// A Unix socket at this path (made mode 0600).
    Unix(PathBuf),
    /// Loopback TCP; every request must carry `cookie`.
    Tcp {
        /// The address (loopback only; port 0 = any).
        addr: SocketAddr,
        /// The secret clients send.
        cookie: String,
    },
}

/// Where the control API was bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlBound {
    /// The Unix socket's path.
    Unix(PathBuf),
    /// The TCP address.
    Tcp(SocketAddr),
}

impl std::fmt::Display for ControlBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlBound::Unix(path) => write!(f, "unix:{}", path.display()),
            ControlBound::Tcp(addr) => write!(f, "http://{addr}"),
        }
    }
}

/// Binds the control API and serves it in a spawned task. Returns where it
/// was bound.
pub async fn serve(
    handle: NodeHandle,
    listen: ControlListen,
) -> Result<(ControlBound, JoinHandle<()>), RuntimeError> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let waiters = Arc::new(Waiters::default());
    match listen {
        ControlListen::Unix(path) => {
            let listener = bind_unix(&path)?;
            let app = router(ApiState {
                handle,
                access: Arc::new(Access { tcp: None }),
                waiters,
            });
            let task = tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((socket, _)) => {
                            let client = socket
                                .peer_cred()
                                .ok()
                                .and_then(|c| c.pid())
                                .map_or(ClientId::UnknownProcess, ClientId::Process);
                            spawn_connection(&slots, &app, socket, client)
                        }
                        Err(e) => accept_failed(e).await,
                    }
                }
            });
            Ok((ControlBound::Unix(path), task))
        }
        ControlListen::Tcp { addr, cookie } => {
            if !addr.ip().is_loopback() {
                return Err(RuntimeError::ControlNotLoopback { addr });
            }
            let control = |source| RuntimeError::Control { addr, source };
            let listener = TcpListener::bind(addr).await.map_err(control)?;
            let bound = listener.local_addr().map_err(control)?;
            let app = router(ApiState {
                handle,
                access: Arc::new(Access {
                    tcp: Some((cookie, bound.port())),
                }),
                waiters,
            });
            let task = tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((socket, _)) => {
                            let _ = socket.set_nodelay(true);
                            spawn_connection(&slots, &app, socket, ClientId::Tcp)
                        }
                        Err(e) => accept_failed(e).await,
                    }
                }
            });
            Ok((ControlBound::Tcp(bound), task))
        }
    }
}

/// Binds the Unix socket at `path` (replacing a stale one) with mode 0600.
fn bind_unix(path: &std::path::Path) -> Result<UnixListener, RuntimeError> {
    let failed = |source| RuntimeError::ControlSocket {
        path: path.into(),
        source,
    };
    // A socket left by a crashed node would make bind fail; the data dir is
    // the node's own, so what sits at this path is ours to replace.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(failed)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    Ok(listener)
}

async fn accept_failed(e: std::io::Error) {
    // Out of file descriptors, say: wait instead of spinning.
    tracing::warn!("control API accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Serves one connection of `client` if a slot is free (else drops it: the
/// client retries), with bounded head size and read time, one request only.
fn spawn_connection<S>(slots: &Arc<Semaphore>, app: &Router, socket: S, client: ClientId)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(permit) = slots.clone().try_acquire_owned() else {
        return;
    };
    // Handlers that wait learn who asks from the request's extensions.
    let service = TowerToHyperService::new(app.clone().map_request(
        move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(client);
            req
        },
    ));
    tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(READ_TIMEOUT)
            .max_buf_size(MAX_HEAD)
            .keep_alive(false)
            .serve_connection(TokioIo::new(socket), service)
            .await;
        drop(permit);
    });
}

/// The routes, behind the guard.
fn router(state: ApiState) -> Router {
    Router::new()
        .route(STATUS_PATH, get(status))
        .route(PEERS_PATH, get(peers))
        .route(EVENTS_PATH, get(events))
        .route(HistoryRequest::PATH, get(history))
        .route(ContactsRequest::PATH, get(contacts))
        .route(api::WHO_PATH, get(who))
        .route(METRICS_PATH, get(metrics))
        .route(SEND_PATH, post(send))
        .route(TRACE_PATH, post(trace))
        .route(PING_PATH, post(ping))
        .route(api::RESOLVE_PATH, post(resolve))
        .route(api::REPIN_PATH, post(repin))
        .route("/", get(web::index))
        .route(web::SCRIPT_PATH, get(web::script))
        .route(web::STYLE_PATH, get(web::style))
        .route(web::LOGIN_PATH, get(web::login))
        // Browsers ask for it unasked; no icon is no error.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route(api::STREAM_PATH, get(web::stream))
        .fallback(|req: Request| async move {
            ApiError::new(
                ErrorCode::NotFound,
                format!("no endpoint {}", req.uri().path()),
            )
        })
        .method_not_allowed_fallback(|req: Request| async move {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{} is not allowed on {}", req.method(), req.uri().path()),
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// A JSON body whose rejections are [`ApiError`]s.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let path = req.uri().path().to_string();
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => {
                let code = match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
                    _ => ErrorCode::BadRequest,
                };
                Err(ApiError::new(
                    code,
                    format!("bad body for {path}: {}", rejection.body_text()),
                ))
            }
        }
    }
}

/// Checks every request before it reaches a handler; see the module notes.
async fn guard(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if let Err(e) = check_request(&state.access, req.method(), req.uri(), req.headers()) {
        return e.into_response();
    }
    next.run(req).await
}

/// The guard's rules, apart from the request body.
fn check_request(
    access: &Access,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if let Some((cookie, port)) = &access.tcp {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !is_loopback_host(host, *port) {
            return Err(ApiError::new(
                ErrorCode::ForbiddenOrigin,
                format!("Host {host:?} is not this node's loopback address"),
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let same = origin
                .strip_prefix("http://")
                .is_some_and(|o| is_loopback_host(o, *port));
            if !same {
                return Err(ApiError::new(
                    ErrorCode::ForbiddenOrigin,
                    format!("Origin {origin:?} may not use this node's control API"),
                ));
            }
        }
        let is_login = method == Method::GET && uri.path() == web::LOGIN_PATH;
        if !is_login && !carries_cookie(headers, cookie, *port) {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                format!(
                    "send the cookie from <data-dir>/{} as `Authorization: Bearer COOKIE` \
                     (a browser: open {}?token=COOKIE)",
                    super::storage::COOKIE_FILE,
                    web::LOGIN_PATH
                ),
            ));
        }
    }
    if method == Method::POST {
        if headers.get(header::CONTENT_LENGTH).is_none() {
            return Err(ApiError::new(
                ErrorCode::LengthRequired,
                "POST needs a Content-Length header",
            ));
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().map(str::trim) == Some("application/json"));
        if !json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "POST bodies must be Content-Type: application/json",
            ));
        }
    }
    Ok(())
}

/// Whether `host` (a `Host` header, or an origin without its scheme) names
/// this node's loopback listener: `127.0.0.1`, `localhost` or `[::1]` with
/// the bound port. Any other name may be an attacker's DNS pointing here.
fn is_loopback_host(host: &str, port: u16) -> bool {
    let Some((name, p)) = host.rsplit_once(':') else {
        return false;
    };
    p.parse() == Ok(port) && matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

/// Whether the request carries `cookie`, as a bearer token or as the web
/// page's cookie for this `port`.
fn carries_cookie(headers: &HeaderMap, cookie: &str, port: u16) -> bool {
    let name = format!("{TOKEN_COOKIE}{port}");
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same_secret(t.trim(), cookie));
    let from_page = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .any(|(k, v)| k == name && same_secret(v, cookie));
    bearer || from_page
}

async fn status(State(s): State<ApiState>) -> Result<Json<api::Status>, ApiError> {
    Ok(Json(api::Status::from(&s.handle.status().await?)))
}

async fn peers(State(s): State<ApiState>) -> Result<Json<api::KnownPeers>, ApiError> {
    Ok(Json(s.handle.peers().await?))
}

/// `GET /history`: a page of the node's chat history.
async fn history(
    State(s): State<ApiState>,
    RawQuery(query): RawQuery,
) -> Result<Json<api::HistoryPage>, ApiError> {
    let request = HistoryRequest::parse(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e))?;
    let peer = match &request.peer {
        Some(text) => Some(s.handle.resolve(text).await?),
        None => None,
    };
    Ok(Json(s.handle.history(peer, request.limit()).await?))
}

/// `GET /contacts`: the contacts and their presence.
async fn contacts(State(s): State<ApiState>) -> Result<Json<api::Contacts>, ApiError> {
    Ok(Json(api::Contacts {
        contacts: s.handle.contacts().await?,
    }))
}

async fn who(State(s): State<ApiState>) -> Result<Json<api::Who>, ApiError> {
    Ok(Json(s.handle.who().await?))
}

async fn metrics(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let text = s.handle.metrics_text().await?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}

async fn send(
    State(s): State<ApiState>,
    JsonBody(body): JsonBody<SendRequest>,
) -> Result<Json<SendReply>, ApiError> {
    let to = s.handle.resolve(&body.to).await?;
    let outcome = s.handle.send_chat(to, body.text).await?;
    Ok(Json(SendReply { to, outcome }))
}

async fn resolve(
    State(s): State<ApiState>,
    JsonBody(body): JsonBody<api::ResolveRequest>,
) -> Result<Json<api::Resolution>, ApiError> {
    let r = s.handle.resolve_name(&body.to).await?;
    Ok(Json(api::Resolution::new(body.to.trim(), r.id, r.conflict)))
}

async fn repin(
    State(s): State<ApiState>,
    JsonBody(body): JsonBody<api::RepinRequest>,
) -> Result<Json<api::Repinned>, ApiError> {
    let id = s.handle.repin(&body.name).await?;
    Ok(Json(api::Repinned {
        name: body.name,
        id,
    }))
}

async fn trace(
    State(s): State<ApiState>,
    JsonBody(body): JsonBody<TraceRequest>,
) -> Result<Json<TraceReply>, ApiError> {
    let to = s.handle.resolve(&body.to).await?;
    let outcome = s.handle.trace(to).await?;
    Ok(Json(TraceReply { to, outcome }))
}

/// `POST /ping`: `count` trace probes, one every `interval_ms`, each given
/// [`PING_PROBE_TIMEOUT`]; the round trips, loss and percentiles.
async fn ping(
    State(s): State<ApiState>,
    Extension(client): Extension<ClientId>,
    JsonBody(body): JsonBody<PingRequest>,
) -> Result<Json<PingReply>, ApiError> {
    body.check()
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e))?;
    let _permit = waiter_permit(&s.waiters, client)?;
    let to = s.handle.resolve(&body.to).await?;
    let interval = Duration::from_millis(body.interval_ms);
    let mut rtts_ms = Vec::new();
    let mut hops = None;
    let mut last_failure = None;
    for i in 0..body.count {
        let started = tokio::time::Instant::now();
        let outcome = tokio::time::timeout(PING_PROBE_TIMEOUT, s.handle.trace(to))
            .await
            .unwrap_or_else(|_| Ok(TraceOutcome::Failed("no answer in time".into())))?;
        match outcome {
            TraceOutcome::Completed { path, rtt } => {
                hops = Some(path.len().saturating_sub(1));
                rtts_ms.push(Some(rtt as f64 / 1000.0));
            }
            TraceOutcome::Failed(reason) => {
                last_failure = Some(reason);
                rtts_ms.push(None);
            }
        }
        if i + 1 < body.count {
            tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
        }
    }
    let came_back: Vec<f64> = rtts_ms.iter().flatten().copied().collect();
    let received = came_back.len() as u32;
    Ok(Json(PingReply {
        to,
        sent: body.count,
        received,
        loss_pct: 100.0 * f64::from(body.count - received) / f64::from(body.count),
        rtts_ms,
        hops,
        last_failure,
        stats: RttStats::of(&came_back),
    }))
}

async fn events(
    State(s): State<ApiState>,
    Extension(client): Extension<ClientId>,
    RawQuery(query): RawQuery,
) -> Result<Json<api::Events>, ApiError> {
    let request = EventsRequest::parse(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e))?;
    let _permit = if request.wait().is_zero() {
        None
    } else {
        Some(waiter_permit(&s.waiters, client)?)
    };
    let since = request.since;
    let list = s.handle.events().wait_since(since, request.wait()).await;
    Ok(Json(api::Events::from_log(
        &list,
        since,
        s.handle.events().newest(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    fn tcp() -> Access {
        Access {
            tcp: Some(("s3cret".into(), 7000)),
        }
    }

    fn code(r: Result<(), ApiError>) -> Option<ErrorCode> {
        r.err().map(|e| e.code)
    }

    /// On TCP: a foreign Host (DNS rebinding) or Origin is refused before
    /// the cookie is even looked at; no cookie is 401; the right cookie,
    /// as a bearer token or the page's cookie, passes.
    #[test]
    fn tcp_guard_refuses_foreign_hosts_and_origins_and_wants_the_cookie() {
        let get = Method::GET;
        let uri: axum::http::Uri = "/status".parse().expect("uri");
        let bearer = (header::AUTHORIZATION, "Bearer s3cret");
        let ok_host = (header::HOST, "127.0.0.1:7000");
        let check =
            |h: &[(header::HeaderName, &str)]| check_request(&tcp(), &get, &uri, &headers(h));
        assert_eq!(code(check(&[ok_host.clone(), bearer.clone()])), None);
        assert_eq!(
            code(check(&[(header::HOST, "localhost:7000"), bearer.clone()])),
            None
        );
        assert_eq!(
            code(check(&[
                (header::HOST, "evil.example:7000"),
                bearer.clone()
            ])),
            Some(ErrorCode::ForbiddenOrigin)
        );
        assert_eq!(
            code(check(&[(header::HOST, "127.0.0.1:7001"), bearer.clone()])),
            Some(ErrorCode::ForbiddenOrigin)
        );
        assert_eq!(
            code(check(&[
                ok_host.clone(),
                (header::ORIGIN, "http://evil.example"),
                bearer.clone()
            ])),
            Some(ErrorCode::ForbiddenOrigin)
        );
        assert_eq!(
            code(check(&[
                ok_host.clone(),
                (header::ORIGIN, "http://127.0.0.1:7000"),
                bearer.clone()
            ])),
            None
        );
        assert_eq!(
            code(check(std::slice::from_ref(&ok_host))),
            Some(ErrorCode::Unauthorized)
        );
        assert_eq!(
            code(check(&[
                ok_host.clone(),
                (header::AUTHORIZATION, "Bearer s3cre")
            ])),
            Some(ErrorCode::Unauthorized)
        );
        assert_eq!(
            code(check(&[
                ok_host.clone(),
                (header::COOKIE, "a=b; skyhop_token_7000=s3cret")
            ])),
            None
        );
        assert_eq!(
            code(check(&[
                ok_host,
                (header::COOKIE, "skyhop_token_7001=s3cret")
            ])),
            Some(ErrorCode::Unauthorized),
            "another port's browser cookie"
        );
    }

    /// A POST needs Content-Length and a JSON content type: a browser's
    /// `text/plain` or form post never reaches a handler.
    #[test]
    fn posts_need_a_length_and_a_json_content_type() {
        let unix = Access { tcp: None };
        let uri: axum::http::Uri = "/send".parse().expect("uri");
        let post = |h: &[(header::HeaderName, &str)]| {
            check_request(&unix, &Method::POST, &uri, &headers(h))
        };
        assert_eq!(
            code(post(&[(header::CONTENT_TYPE, "application/json")])),
            Some(ErrorCode::LengthRequired)
        );
        assert_eq!(
            code(post(&[
                (header::CONTENT_LENGTH, "2"),
                (header::CONTENT_TYPE, "text/plain")
            ])),
            Some(ErrorCode::UnsupportedMediaType)
        );
        assert_eq!(
            code(post(&[
                (header::CONTENT_LENGTH, "2"),
                (header::CONTENT_TYPE, "application/json; charset=utf-8")
            ])),
            None
        );
    }
}
