//! GraphQL over WebSocket at `GET /graphql` (`Upgrade: websocket`): the
//! [`graphql-transport-ws`](https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md)
//! protocol, and the legacy `graphql-ws` one of `subscriptions-transport-ws`.
//!
//! - The client names itself in the `connection_init` payload:
//!   `{"authorization": "Bearer <token>"}` or `{"x-iofold-admin-secret": "<secret>"}` (keys
//!   in any case, also inside a `headers` object), checked like the HTTP headers. Missing or
//!   bad credentials close the connection with `4403 Forbidden`; no `connection_init` within
//!   the request deadline closes it with `4408`.
//! - Every operation (`subscribe`, legacy `start`) runs as a task of its own with the
//!   caller's access; its results are `next` (legacy `data`) messages, then `complete`. An
//!   operation refused before it ran, or a subscription that ends in error (a row not found,
//!   a subscriber that fell behind), is one `error` message. At most
//!   `MAX_SUBSCRIPTIONS_PER_CONNECTION` run at once: one more is an `error` with
//!   `TOO_MANY_SUBSCRIPTIONS`.
//! - A subscription runs through the server's subscription hub
//!   ([`crate::graphql::shared_subscriptions`]): its execution is shared with every
//!   subscriber (of any connection) of the same operation under the same access, so an
//!   event is read once for all of them. Each keeps its own operation here: its place under
//!   the limit, its `complete`, its outgoing queue.
//! - Protocol violations close the connection with the protocol's codes: `4400` (invalid
//!   message), `4401` (operation before the acknowledgement), `4409` (an id already running),
//!   `4429` (a second `connection_init`), `1001` when the server shuts down, `1011` when
//!   authentication fails inside the server. An upgrade that offers only other subprotocols
//!   is refused (HTTP 400); one that offers none speaks `graphql-transport-ws`.
//! - The server pings every `WS_PING_INTERVAL_MS` (`ping`; legacy `ka`) and answers the
//!   client's `ping` with `pong`.
//! - **The caller is kept current** ([`Session`]): the `connection_init` credentials are
//!   checked again, with the caller's memberships and roles, exactly as an HTTP request's
//!   ([`crate::auth::check_credential`]), at the start of every operation (a burst of them
//!   shares one check), when the event bus announces a change of the caller's credentials
//!   or memberships (from any instance), when the token expires, and every
//!   [`RECHECK_EVERY`] besides. A credential that is gone (revoked, expired, its user
//!   deleted) closes the connection with `4403`; a changed role or membership applies to
//!   the next operations and to the running subscriptions
//!   ([`crate::graphql::access::LiveAccess`]).
//!
//! Outgoing messages go through one bounded queue: a client that does not read makes its
//! operations wait, and their subscriptions then fall behind the event bus and are dropped,
//! so a slow client never makes the server buffer without limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::Instrument;

use super::guard::{self, OperationSlot, Transport};
use super::{finish_errors, AppState, Refusal};
use crate::auth::{check_credential, ADMIN_SECRET_HEADER};
use crate::db::sql_types::Timestamp;
use crate::error::{AppError, AppResult};
use crate::events::Event;
use crate::graphql::access::{Access, LiveAccess};
use crate::graphql::shared_subscriptions::{Operation, Payload, Start, Update};
use crate::graphql::{access_of_credential, with_subscription_data};
use crate::observability::RequestId;

/// The subprotocols, preferred first.
const PROTOCOLS: [&str; 2] = ["graphql-transport-ws", "graphql-ws"];

/// Outgoing messages queued per connection before operations wait.
const OUTGOING_QUEUE: usize = 64;

/// How long a closing connection waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How often an open connection of a user re-checks its caller when nothing announced a
/// change: the safety net for changes the event bus did not carry (a token revoked with the
/// command line on SQLite, an edit of the database by hand). Announced changes and expiry
/// take effect at once.
pub const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// The close reason when the credential is gone.
const CREDENTIAL_GONE: &str = "Forbidden: the credential was revoked or has expired";

/// The two protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws` (the graphql-ws library).
    TransportWs,
    /// The legacy `graphql-ws` (subscriptions-transport-ws).
    Legacy,
}

impl Protocol {
    fn of(name: &str) -> Option<Protocol> {
        match name {
            "graphql-transport-ws" => Some(Protocol::TransportWs),
            "graphql-ws" => Some(Protocol::Legacy),
            _ => None,
        }
    }

    fn next_type(self) -> &'static str {
        match self {
            Protocol::TransportWs => "next",
            Protocol::Legacy => "data",
        }
    }

    fn keep_alive(self) -> Value {
        match self {
            Protocol::TransportWs => json!({"type": "ping"}),
            Protocol::Legacy => json!({"type": "ka"}),
        }
    }
}

/// Whether a request asks for a WebSocket.
pub fn is_upgrade(parts: &Parts) -> bool {
    parts
        .headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")))
}

/// Accepts a WebSocket upgrade of `GET /graphql` and serves the connection.
pub async fn upgrade(state: AppState, id: RequestId, mut parts: Parts) -> Response {
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let message = format!("not a valid WebSocket upgrade: {}", rejection.body_text());
            return Refusal::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message).into_response(&state, &id);
        }
    };
    let offered = upgrade.requested_protocols().count();
    let upgrade = upgrade.protocols(PROTOCOLS).max_message_size(state.config.limits.max_body_bytes);
    let protocol = match upgrade.selected_protocol().and_then(|p| p.to_str().ok()).and_then(Protocol::of) {
        Some(protocol) => protocol,
        // A client that names no subprotocol speaks the current one.
        None if offered == 0 => Protocol::TransportWs,
        None => {
            let message = "unsupported WebSocket subprotocol: use graphql-transport-ws (or the legacy graphql-ws)";
            return Refusal::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message).into_response(&state, &id);
        }
    };
    // Counted among the unauthenticated WebSockets until `connection_init` is accepted.
    let client = parts.extensions.get::<super::conn::ClientAddr>().map(|c| c.0);
    let unauthenticated = match state.connections.unauthenticated_websockets.acquire(client) {
        Ok(slot) => slot,
        Err(full) => {
            let message = super::conn::too_many_message(full);
            return Refusal::new(full.status(), "TOO_MANY_CONNECTIONS", message).into_response(&state, &id);
        }
    };
    let span = tracing::info_span!("websocket", id = %id.as_str(), protocol = ?protocol);
    upgrade
        .on_upgrade(move |socket| {
            let (mut connection, queue) = Connection::new(state, id, protocol);
            connection.unauthenticated = Some(unauthenticated);
            connection.run(queue, socket).instrument(span)
        })
        .into_response()
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}

/// What an operation's task reports: its id, its generation (a reused id is a new
/// operation) and one message.
struct Outgoing {
    id: String,
    generation: u64,
    frame: Frame,
}

enum Frame {
    /// A result, as JSON text.
    Next(Arc<str>),
    /// The operation failed as a whole (refused, or its subscription ended in error).
    Error(Vec<Value>),
    /// The operation is over.
    Complete,
}

/// What handling a client message leads to.
enum Step {
    Continue,
    Close(u16, String),
}

struct Running {
    generation: u64,
    task: tokio::task::AbortHandle,
}

/// One connection.
struct Connection {
    state: AppState,
    request_id: RequestId,
    protocol: Protocol,
    /// The caller, once `connection_init` was accepted.
    session: Option<Arc<Session>>,
    /// The task that keeps a user's session current.
    keeper: Option<tokio::task::AbortHandle>,
    /// Whether `connection_init` arrived.
    initialised: bool,
    operations: HashMap<String, Running>,
    generation: u64,
    outgoing: mpsc::Sender<Outgoing>,
    /// Messages to write, in order.
    pending: Vec<Message>,
    /// The connection's place among the unauthenticated WebSockets, until
    /// `connection_init` is accepted.
    unauthenticated: Option<super::conn::Slot>,
}

impl Connection {
    /// A connection, and the queue its operations report to.
    fn new(state: AppState, request_id: RequestId, protocol: Protocol) -> (Self, mpsc::Receiver<Outgoing>) {
        let (outgoing, queue) = mpsc::channel(OUTGOING_QUEUE);
        let connection = Connection {
            state,
            request_id,
            protocol,
            session: None,
            keeper: None,
            initialised: false,
            operations: HashMap::new(),
            generation: 0,
            outgoing,
            pending: Vec::new(),
            unauthenticated: None,
        };
        (connection, queue)
    }

    /// Serves the connection until either side closes it.
    async fn run(mut self, mut queue: mpsc::Receiver<Outgoing>, socket: WebSocket) {
        let _live = self.state.events.connection();
        let opened = Instant::now();
        let (mut sink, mut source) = socket.split();
        let init_deadline = tokio::time::sleep(self.state.config.limits.request_timeout);
        let mut init_deadline = std::pin::pin!(init_deadline);
        let ping_every = self.state.config.subscriptions.ping_interval;
        let mut ping = tokio::time::interval(ping_every.unwrap_or(Duration::from_secs(3600)));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        let mut shutdown = self.state.shutdown.subscribe();
        // The caller's access, once authenticated: the connection closes when it is gone.
        let mut authority: Option<watch::Receiver<Option<Arc<Access>>>> = None;
        tracing::debug!("websocket opened");
        let closing = loop {
            let step = tokio::select! {
                message = source.next() => match message {
                    Some(Ok(Message::Text(text))) => self.handle(text.as_str()).await,
                    Some(Ok(Message::Binary(bytes))) => match std::str::from_utf8(&bytes) {
                        Ok(text) => self.handle(text).await,
                        Err(_) => invalid(),
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Continue,
                    Some(Ok(Message::Close(_))) => {
                        // Answer the client's close frame (RFC 6455 §5.5.1: the WebSocket layer
                        // queued the echo; closing the sink sends it), so it sees a clean close.
                        let _ = sink.close().await;
                        break None;
                    }
                    Some(Err(_)) | None => break None,
                },
                Some(outgoing) = queue.recv() => self.deliver(outgoing),
                _ = &mut init_deadline, if !self.initialised => {
                    Step::Close(4408, "Connection initialisation timeout".into())
                }
                _ = ping.tick(), if ping_every.is_some() && self.session.is_some() => {
                    self.send(self.protocol.keep_alive());
                    Step::Continue
                }
                _ = credential_gone(&mut authority) => {
                    self.state.metrics.record_error(crate::observability::NO_OPERATION, "FORBIDDEN");
                    Step::Close(4403, CREDENTIAL_GONE.into())
                }
                _ = stopping(&mut shutdown) => Step::Close(1001, "the server is shutting down".into()),
            };
            let mut written = true;
            for message in self.pending.drain(..) {
                if sink.send(message).await.is_err() {
                    written = false;
                    break;
                }
            }
            if authority.is_none() {
                authority = self.session.as_ref().map(|session| session.current.subscribe());
            }
            match step {
                Step::Continue if written => {}
                Step::Continue => break None,
                Step::Close(code, reason) => break Some((code, reason)),
            }
        };
        for (_, running) in self.operations.drain() {
            running.task.abort();
        }
        if let Some((code, reason)) = closing {
            tracing::debug!(code, %reason, "closing the websocket");
            if sink.send(close(code, &reason)).await.is_ok() {
                let _ = tokio::time::timeout(CLOSE_WAIT, async {
                    while let Some(Ok(message)) = source.next().await {
                        if matches!(message, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        tracing::debug!(duration_ms = opened.elapsed().as_millis() as u64, "websocket closed");
    }

    /// Queues a message for the client.
    fn send(&mut self, message: Value) {
        self.pending.push(Message::Text(message.to_string().into()));
    }

    /// Handles one client message.
    async fn handle(&mut self, text: &str) -> Step {
        let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else { return invalid() };
        let kind = message.get("type").and_then(Value::as_str).unwrap_or_default();
        match (self.protocol, kind) {
            (_, "connection_init") => self.init(message.get("payload")).await,
            (Protocol::TransportWs, "subscribe") | (Protocol::Legacy, "start") => self.subscribe(message),
            (Protocol::TransportWs, "complete") | (Protocol::Legacy, "stop") => {
                let Some(id) = message.get("id").and_then(Value::as_str) else { return invalid() };
                if let Some(running) = self.operations.remove(id) {
                    running.task.abort();
                    if self.protocol == Protocol::Legacy {
                        self.send(json!({"type": "complete", "id": id}));
                    }
                }
                Step::Continue
            }
            (Protocol::TransportWs, "ping") => {
                self.send(json!({"type": "pong"}));
                Step::Continue
            }
            (Protocol::TransportWs, "pong") => Step::Continue,
            (Protocol::Legacy, "connection_terminate") => Step::Close(1000, "Normal Closure".into()),
            _ => invalid(),
        }
    }

    /// `connection_init`: authenticates the payload's credentials.
    async fn init(&mut self, payload: Option<&Value>) -> Step {
        if self.initialised {
            return Step::Close(4429, "Too many initialisation requests".into());
        }
        self.initialised = true;
        let credentials = Credentials::of(payload);
        match resolve(&self.state, &credentials).await {
            Ok(Some((access, expires_at))) => {
                let user = access.user_id().is_some();
                let session = Arc::new(Session::new(self.state.clone(), credentials, access, expires_at));
                if user {
                    // The admin secret cannot change while the server runs: nothing to keep.
                    let changes = self.state.events.access_changes();
                    let keeper = tokio::spawn(keep_current(session.clone(), changes).in_current_span());
                    self.keeper = Some(keeper.abort_handle());
                }
                self.session = Some(session);
                self.unauthenticated = None;
                self.send(json!({"type": "connection_ack"}));
                if self.protocol == Protocol::Legacy {
                    self.send(self.protocol.keep_alive());
                }
                Step::Continue
            }
            Ok(None) | Err(AppError::Unauthenticated(_)) => {
                self.state.metrics.record_error(crate::observability::NO_OPERATION, "FORBIDDEN");
                if self.protocol == Protocol::Legacy {
                    self.send(json!({"type": "connection_error", "payload": {
                        "message": "Forbidden: send {\"authorization\": \"Bearer <token>\"} in the connection_init payload",
                        "extensions": {"code": "FORBIDDEN"},
                    }}));
                }
                Step::Close(4403, "Forbidden".into())
            }
            Err(AppError::Timeout(_)) => Step::Close(1011, "authentication did not finish in time".into()),
            Err(error) => {
                tracing::warn!(code = error.code(), "websocket authentication failed inside the server");
                Step::Close(1011, "internal server error".into())
            }
        }
    }

    /// `subscribe` (legacy `start`): starts an operation.
    fn subscribe(&mut self, message: Map<String, Value>) -> Step {
        let asked = Instant::now();
        let Some(session) = self.session.clone() else {
            return Step::Close(4401, "Unauthorized".into());
        };
        let id = match message.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => return invalid(),
        };
        let Some(Value::Object(payload)) = message.get("payload") else { return invalid() };
        if self.operations.contains_key(&id) {
            return Step::Close(4409, format!("Subscriber for {id} already exists"));
        }
        let request: async_graphql::Request = match serde_json::from_value(Value::Object(payload.clone())) {
            Ok(request) => request,
            Err(_) => return invalid(),
        };
        let max = self.state.config.subscriptions.max_per_connection;
        if self.operations.len() >= max {
            self.state.metrics.record_error(&super::requested_label(&request), "TOO_MANY_SUBSCRIPTIONS");
            let error = json!({
                "message": format!("a connection may run at most {max} operations at once"),
                "extensions": {"code": "TOO_MANY_SUBSCRIPTIONS"},
            });
            self.send(self.error_message(&id, vec![error]));
            return Step::Continue;
        }
        self.generation += 1;
        let generation = self.generation;
        let task = tokio::spawn(
            operation(
                self.state.clone(),
                self.request_id.clone(),
                (session, asked),
                request,
                Reporter { id: id.clone(), generation, outgoing: self.outgoing.clone() },
            )
            .in_current_span(),
        );
        self.operations.insert(id, Running { generation, task: task.abort_handle() });
        Step::Continue
    }

    /// A message of an operation's task, unless the operation was stopped since.
    fn deliver(&mut self, outgoing: Outgoing) -> Step {
        let current = self.operations.get(&outgoing.id).is_some_and(|r| r.generation == outgoing.generation);
        if !current {
            return Step::Continue;
        }
        let id = outgoing.id;
        match outgoing.frame {
            Frame::Next(payload) => {
                // The payload is JSON text already (one text for every subscriber of an execution).
                let (kind, id) = (self.protocol.next_type(), Value::String(id));
                self.pending
                    .push(Message::Text(format!(r#"{{"type":"{kind}","id":{id},"payload":{payload}}}"#).into()));
            }
            Frame::Error(errors) => {
                self.operations.remove(&id);
                self.send(self.error_message(&id, errors));
            }
            Frame::Complete => {
                self.operations.remove(&id);
                self.send(json!({"type": "complete", "id": id}));
            }
        }
        Step::Continue
    }

    fn error_message(&self, id: &str, errors: Vec<Value>) -> Value {
        json!({"type": "error", "id": id, "payload": errors})
    }
}

impl Drop for Connection {
    /// However the connection ends, its session stops being kept current.
    fn drop(&mut self) {
        if let Some(keeper) = self.keeper.take() {
            keeper.abort();
        }
    }
}

/// Completes when the connection's credential is gone; never before `connection_init`.
async fn credential_gone(authority: &mut Option<watch::Receiver<Option<Arc<Access>>>>) {
    let gone = match authority {
        Some(current) => current.wait_for(Option::is_none).await.is_ok(),
        None => false,
    };
    if !gone {
        std::future::pending::<()>().await;
    }
}

/// Checks credentials and reads the caller's memberships, within the request deadline:
/// the access and the token's expiry; `None` for none.
async fn resolve(state: &AppState, credentials: &Credentials) -> AppResult<Option<(Arc<Access>, Option<Timestamp>)>> {
    let checked = tokio::time::timeout(state.config.limits.request_timeout, async {
        let credential = check_credential(
            &state.db,
            state.config.admin_secret.as_deref(),
            credentials.admin_secret.as_deref(),
            credentials.authorization.as_deref(),
        )
        .await?;
        let expires_at = credential.expires_at;
        Ok(access_of_credential(&state.db, credential).await?.map(|access| (access, expires_at)))
    })
    .await;
    checked.unwrap_or_else(|_| Err(AppError::Timeout("the credential check did not finish in time".into())))
}

/// The caller of a connection, kept current: its `connection_init` credentials, checked
/// again whenever it matters, and the access they give now ([`LiveAccess`] to the
/// operations).
struct Session {
    state: AppState,
    credentials: Credentials,
    /// The caller's access; `None` once the credential is gone (for good).
    current: watch::Sender<Option<Arc<Access>>>,
    /// When the token expires, as last checked.
    expires_at: Mutex<Option<Timestamp>>,
    /// When the last successful check began. Checks run one at a time, in order.
    checked: tokio::sync::Mutex<Option<Instant>>,
}

/// What a check found.
enum Checked {
    /// The credential holds; the caller's access now.
    Valid(Arc<Access>),
    /// The credential is gone: the connection closes with `4403`.
    Gone,
    /// The check failed (the database did not answer); nothing changed.
    Failed(AppError),
}

impl Session {
    fn new(state: AppState, credentials: Credentials, access: Arc<Access>, expires_at: Option<Timestamp>) -> Self {
        Session {
            state,
            credentials,
            current: watch::channel(Some(access)).0,
            expires_at: Mutex::new(expires_at),
            checked: tokio::sync::Mutex::new(Some(Instant::now())),
        }
    }

    /// Checks the credentials again, with the caller's memberships and roles, unless a
    /// check that began after `asked` already did (a burst of operations shares one).
    async fn check(&self, asked: Instant) -> Checked {
        let mut checked = self.checked.lock().await;
        let Some(current) = self.current.borrow().clone() else { return Checked::Gone };
        if checked.is_some_and(|began| began >= asked) {
            return Checked::Valid(current);
        }
        let began = Instant::now();
        match resolve(&self.state, &self.credentials).await {
            Ok(Some((access, expires_at))) => {
                *self.expires_at.lock().unwrap_or_else(|p| p.into_inner()) = expires_at;
                self.current.send_if_modified(|current| {
                    let changed = current.as_ref() != Some(&access);
                    if changed {
                        tracing::debug!("the websocket's caller changed roles or memberships");
                        *current = Some(access.clone());
                    }
                    changed
                });
                *checked = Some(began);
                Checked::Valid(access)
            }
            Ok(None) | Err(AppError::Unauthenticated(_)) => {
                tracing::debug!("the websocket's credential is gone");
                self.current.send_replace(None);
                Checked::Gone
            }
            Err(error) => Checked::Failed(error),
        }
    }

    /// When the token expires: the instant to check it again.
    fn expiry(&self) -> Option<tokio::time::Instant> {
        let at = (*self.expires_at.lock().unwrap_or_else(|p| p.into_inner()))?;
        let left = (at.as_datetime() - chrono::Utc::now()).to_std().unwrap_or_default();
        // A few milliseconds after, so the check finds it expired.
        Some(tokio::time::Instant::now() + left + Duration::from_millis(5))
    }
}

/// Keeps a user's session current while the connection is open: checks it when the bus
/// announces a change concerning the caller (or falls behind), when the token expires, and
/// every [`RECHECK_EVERY`]. Ends when the credential is gone.
async fn keep_current(session: Arc<Session>, mut changes: broadcast::Receiver<Event>) {
    let mut every = tokio::time::interval(RECHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.reset();
    loop {
        let expiry = session.expiry();
        let expired = async move {
            match expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            change = changes.recv() => match change {
                Ok(event) => {
                    let concerned = session.current.borrow().as_ref().is_some_and(|access| event.concerns(access));
                    if !concerned {
                        continue;
                    }
                }
                // Fell behind: some may have concerned the caller.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = every.tick() => {}
            _ = expired => {}
        }
        match session.check(Instant::now()).await {
            Checked::Gone => return,
            Checked::Failed(error) => {
                tracing::warn!(code = error.code(), "could not re-check a websocket's credential")
            }
            Checked::Valid(_) => {}
        }
    }
}

/// Completes when the server begins to shut down.
async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn invalid() -> Step {
    Step::Close(4400, "Invalid message received".into())
}

/// The credentials of a `connection_init` payload: `authorization` and
/// `x-iofold-admin-secret`, in any case, at its top level or in `headers`.
#[derive(Default)]
struct Credentials {
    authorization: Option<String>,
    admin_secret: Option<String>,
}

impl Credentials {
    fn of(payload: Option<&Value>) -> Self {
        let mut credentials = Credentials::default();
        let Some(Value::Object(payload)) = payload else { return credentials };
        let nested = payload.iter().find(|(k, _)| k.eq_ignore_ascii_case("headers")).and_then(|(_, v)| v.as_object());
        for fields in [Some(payload), nested].into_iter().flatten() {
            for (key, value) in fields {
                let Some(value) = value.as_str() else { continue };
                if key.eq_ignore_ascii_case("authorization") {
                    credentials.authorization.get_or_insert_with(|| value.to_owned());
                } else if key.eq_ignore_ascii_case(ADMIN_SECRET_HEADER) {
                    credentials.admin_secret.get_or_insert_with(|| value.to_owned());
                }
            }
        }
        credentials
    }
}

/// Where an operation's task sends its messages.
struct Reporter {
    id: String,
    generation: u64,
    outgoing: mpsc::Sender<Outgoing>,
}

impl Reporter {
    /// Sends a message; false when the connection is gone.
    async fn send(&self, frame: Frame) -> bool {
        let outgoing = Outgoing { id: self.id.clone(), generation: self.generation, frame };
        self.outgoing.send(outgoing).await.is_ok()
    }
}

/// Runs one operation: a subscription until it ends ([`subscription`]), or a query or
/// mutation (within the request deadline).
async fn operation(
    state: AppState,
    request_id: RequestId,
    (session, asked): (Arc<Session>, Instant),
    mut request: async_graphql::Request,
    reporter: Reporter,
) {
    let label = super::requested_label(&request);
    // The caller as they are now, as for an HTTP request.
    let access = match session.check(asked).await {
        Checked::Valid(access) => access,
        // The connection closes with 4403.
        Checked::Gone => return,
        Checked::Failed(error) => {
            let refused = vec![guard::coded_error(error.message(), error.code())];
            return refuse(&state, &request_id, &label, refused, &reporter).await;
        }
    };
    if let Err(error) = state.persisted.resolve(&mut request, Some(&access)) {
        return refuse(&state, &request_id, &label, vec![error], &reporter).await;
    }
    if guard::is_subscription(&mut request, &state.config.limits) {
        return subscription(&state, &request_id, &session, access, request, &label, &reporter).await;
    }
    let started = Instant::now();
    let (request, slot) = prepared(&state, request, access);
    let mut stream = state.schema.execute_stream(request);
    let response = match tokio::time::timeout(state.config.limits.request_timeout, stream.next()).await {
        Ok(Some(response)) => response,
        Ok(None) => {
            reporter.send(Frame::Complete).await;
            return;
        }
        Err(_) => {
            let deadline = state.config.limits.request_timeout.as_millis();
            let error = guard::coded_error(format!("the operation did not finish within {deadline} ms"), "TIMEOUT");
            async_graphql::Response::from_errors(vec![error])
        }
    };
    let update = update_of(response, &request_id, &slot);
    state.metrics.record_operation(update.label.as_deref().unwrap_or(&label), started.elapsed(), &update.codes);
    if report(&reporter, &update).await {
        reporter.send(Frame::Complete).await;
    }
}

/// Ends an operation refused before it ran with its errors.
async fn refuse(
    state: &AppState,
    request_id: &RequestId,
    label: &str,
    errors: Vec<async_graphql::ServerError>,
    reporter: &Reporter,
) {
    let update = update_of(async_graphql::Response::from_errors(errors), request_id, &OperationSlot::default());
    state.metrics.record_operation(label, Duration::ZERO, &update.codes);
    report(reporter, &update).await;
}

/// Runs a subscription until it ends: through the hub, which shares one execution among the
/// subscribers of the same operation under the same access, follows the connection's
/// access ([`LiveAccess`]) and drops a subscriber that falls behind
/// ([`crate::graphql::shared_subscriptions`]).
async fn subscription(
    state: &AppState,
    request_id: &RequestId,
    session: &Session,
    access: Arc<Access>,
    request: async_graphql::Request,
    label: &str,
    reporter: &Reporter,
) {
    let operation = Operation::of(&request);
    let start = execution(state, request_id, operation.clone());
    let live = LiveAccess(session.current.subscribe());
    let mut updates = state.hub.subscribe(operation, access, Some(live), start);
    let mut first = true;
    while let Some(update) = updates.next().await {
        let label = update.label.as_deref().unwrap_or(label);
        if first {
            // A subscription's time to its first event is no latency.
            state.metrics.record_operation(label, Duration::ZERO, &update.codes);
        } else {
            update.codes.iter().for_each(|code| state.metrics.record_error(label, code));
        }
        first = false;
        if !report(reporter, &update).await {
            return;
        }
    }
    reporter.send(Frame::Complete).await;
}

/// How the hub starts the execution of a subscription under an access: as an operation of
/// this connection (its request id on internal errors), each event read with that access.
fn execution(state: &AppState, request_id: &RequestId, operation: Operation) -> Start {
    let (state, request_id) = (state.clone(), request_id.clone());
    Arc::new(move |access, listening| {
        let (request, slot) = prepared(&state, operation.request(), access);
        let request_id = request_id.clone();
        let responses = state.schema.execute_stream(request.data(listening));
        responses.map(move |response| update_of(response, &request_id, &slot)).boxed()
    })
}

/// A request over WebSocket with what its resolvers need, and where the guard leaves the
/// operation it resolved.
fn prepared(
    state: &AppState,
    request: async_graphql::Request,
    access: Arc<Access>,
) -> (async_graphql::Request, Arc<OperationSlot>) {
    let slot = Arc::new(OperationSlot::default());
    let request = with_subscription_data(request, &state.db, access, &state.events);
    let request =
        crate::graphql::mutations::with_config(request, &state.config).data(slot.clone()).data(Transport::WebSocket);
    (request, slot)
}

/// A response as the message for the client: a result, or (without data) the operation's
/// failure. Internal errors are logged here, once, and sent without their detail.
fn update_of(mut response: async_graphql::Response, request_id: &RequestId, slot: &OperationSlot) -> Update {
    let codes = finish_errors(&mut response, request_id);
    let payload = if response.data == async_graphql::Value::Null && !response.errors.is_empty() {
        let errors = response.errors.iter().map(|error| serde_json::to_value(error).unwrap_or_default()).collect();
        Payload::Error(errors)
    } else {
        Payload::Next(serde_json::to_string(&response).unwrap_or_default().into())
    };
    Update { payload, codes, label: slot.label() }
}

/// Sends an update to the client: whether the operation goes on (a result was sent).
async fn report(reporter: &Reporter, update: &Update) -> bool {
    match &update.payload {
        Payload::Next(payload) => reporter.send(Frame::Next(payload.clone())).await,
        Payload::Error(errors) => {
            reporter.send(Frame::Error(errors.clone())).await;
            false
        }
        Payload::Complete => {
            reporter.send(Frame::Complete).await;
            false
        }
    }
}
