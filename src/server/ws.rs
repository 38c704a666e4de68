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
//! - Protocol violations close the connection with the protocol's codes: `4400` (invalid
//!   message), `4401` (operation before the acknowledgement), `4409` (an id already running),
//!   `4429` (a second `connection_init`), `1001` when the server shuts down, `1011` when
//!   authentication fails inside the server. An upgrade that offers only other subprotocols
//!   is refused (HTTP 400); one that offers none speaks `graphql-transport-ws`.
//! - The server pings every `WS_PING_INTERVAL_MS` (`ping`; legacy `ka`) and answers the
//!   client's `ping` with `pong`.
//!
//! Outgoing messages go through one bounded queue: a client that does not read makes its
//! operations wait, and their subscriptions then fall behind the event bus and are dropped,
//! so a slow client never makes the server buffer without limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::parser::types::OperationType;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::guard::{self, OperationSlot, Transport};
use super::{finish_errors, AppState, Refusal};
use crate::auth::{authenticate, ADMIN_SECRET_HEADER};
use crate::error::AppError;
use crate::graphql::access::Access;
use crate::graphql::{access_of, with_subscription_data};
use crate::observability::RequestId;

/// The subprotocols, preferred first.
const PROTOCOLS: [&str; 2] = ["graphql-transport-ws", "graphql-ws"];

/// Outgoing messages queued per connection before operations wait.
const OUTGOING_QUEUE: usize = 64;

/// How long a closing connection waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

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
    /// A result.
    Next(Value),
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
    access: Option<Arc<Access>>,
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
            access: None,
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
                _ = ping.tick(), if ping_every.is_some() && self.access.is_some() => {
                    self.send(self.protocol.keep_alive());
                    Step::Continue
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
        let deadline = self.state.config.limits.request_timeout;
        let state = &self.state;
        let resolved = tokio::time::timeout(deadline, async {
            let viewer = authenticate(
                &state.db,
                state.config.admin_secret.as_deref(),
                credentials.admin_secret.as_deref(),
                credentials.authorization.as_deref(),
            )
            .await?;
            access_of(&state.db, &viewer).await
        })
        .await;
        match resolved {
            Ok(Ok(Some(access))) => {
                self.access = Some(access);
                self.unauthenticated = None;
                self.send(json!({"type": "connection_ack"}));
                if self.protocol == Protocol::Legacy {
                    self.send(self.protocol.keep_alive());
                }
                Step::Continue
            }
            Ok(Ok(None)) | Ok(Err(AppError::Unauthenticated(_))) => {
                self.state.metrics.record_error(crate::observability::NO_OPERATION, "FORBIDDEN");
                if self.protocol == Protocol::Legacy {
                    self.send(json!({"type": "connection_error", "payload": {
                        "message": "Forbidden: send {\"authorization\": \"Bearer <token>\"} in the connection_init payload",
                        "extensions": {"code": "FORBIDDEN"},
                    }}));
                }
                Step::Close(4403, "Forbidden".into())
            }
            Ok(Err(error)) => {
                tracing::warn!(code = error.code(), "websocket authentication failed inside the server");
                Step::Close(1011, "internal server error".into())
            }
            Err(_) => Step::Close(1011, "authentication did not finish in time".into()),
        }
    }

    /// `subscribe` (legacy `start`): starts an operation.
    fn subscribe(&mut self, message: Map<String, Value>) -> Step {
        let Some(access) = self.access.clone() else {
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
                access,
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
            Frame::Next(payload) => self.send(json!({"type": self.protocol.next_type(), "id": id, "payload": payload})),
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
#[derive(Debug, Default)]
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

/// Runs one operation: a subscription until it ends, or a query or mutation (within the
/// request deadline).
async fn operation(
    state: AppState,
    request_id: RequestId,
    access: Arc<Access>,
    mut request: async_graphql::Request,
    reporter: Reporter,
) {
    let label = super::requested_label(&request);
    if let Err(error) = state.persisted.resolve(&mut request) {
        let mut response = async_graphql::Response::from_errors(vec![error]);
        let codes = finish_errors(&mut response, &request_id);
        state.metrics.record_operation(&label, Duration::ZERO, &codes);
        reporter.send(Frame::Error(errors_json(&response))).await;
        return;
    }
    let started = Instant::now();
    let slot = Arc::new(OperationSlot::default());
    let request = with_subscription_data(request, &state.db, access, &state.events);
    let request =
        crate::graphql::mutations::with_config(request, &state.config).data(slot.clone()).data(Transport::WebSocket);
    let mut stream = state.schema.execute_stream(request);
    let deadline = tokio::time::Instant::now() + state.config.limits.request_timeout;
    let mut first = true;
    loop {
        let next = if first && slot.kind() != Some(OperationType::Subscription) {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(next) => next,
                // A subscription waits for its first event as long as it takes.
                Err(_) if slot.kind() == Some(OperationType::Subscription) => stream.next().await,
                Err(_) => {
                    let error = guard::coded_error(
                        format!(
                            "the operation did not finish within {} ms",
                            state.config.limits.request_timeout.as_millis()
                        ),
                        "TIMEOUT",
                    );
                    Some(async_graphql::Response::from_errors(vec![error]))
                }
            }
        } else {
            stream.next().await
        };
        let Some(mut response) = next else { break };
        let codes = finish_errors(&mut response, &request_id);
        let label = slot.label().unwrap_or_else(|| label.clone());
        if first {
            // A subscription's time to its first event is no latency.
            let subscription = slot.kind() == Some(OperationType::Subscription);
            let elapsed = if subscription { Duration::ZERO } else { started.elapsed() };
            state.metrics.record_operation(&label, elapsed, &codes);
        } else {
            codes.iter().for_each(|code| state.metrics.record_error(&label, code));
        }
        first = false;
        if response.data == async_graphql::Value::Null && !response.errors.is_empty() {
            reporter.send(Frame::Error(errors_json(&response))).await;
            return;
        }
        let payload = serde_json::to_value(&response).unwrap_or_default();
        if !reporter.send(Frame::Next(payload)).await {
            return;
        }
        if slot.kind() != Some(OperationType::Subscription) {
            break;
        }
    }
    reporter.send(Frame::Complete).await;
}

fn errors_json(response: &async_graphql::Response) -> Vec<Value> {
    response.errors.iter().map(|error| serde_json::to_value(error).unwrap_or_default()).collect()
}
