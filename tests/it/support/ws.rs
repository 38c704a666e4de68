//! The router on a real socket, and a WebSocket client speaking the GraphQL protocols
//! (tokio-tungstenite), the way a client would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use iofold_graph::server::{serve_on, AppState};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a test listens for something that should not happen.
pub const QUIET: Duration = Duration::from_millis(400);

/// The router served on a real socket (127.0.0.1, an ephemeral port).
pub struct Live {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Live {
    /// Serves `state` until dropped.
    pub async fn start(state: AppState) -> Live {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = serve_on(listener, state, async move {
                let _ = stopped.await;
            })
            .await;
        });
        Live { address, task, stop: Some(stop) }
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The WebSocket URL of `/graphql`.
    pub fn url(&self) -> String {
        format!("ws://{}/graphql", self.address)
    }

    /// Begins the graceful shutdown.
    pub fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client speaking JSON messages, in either protocol.
pub struct Ws {
    /// The socket itself, for frames the helpers do not send.
    pub socket: Socket,
    pub protocol: &'static str,
}

impl Ws {
    /// Connects with the subprotocol `protocol` (`graphql-transport-ws` or `graphql-ws`) and
    /// initialises with `payload`: asserts the acknowledgement.
    pub async fn initialised(url: &str, protocol: &'static str, payload: Value) -> Ws {
        let mut ws = Ws::connect(url, protocol).await;
        ws.send(json!({"type": "connection_init", "payload": payload})).await;
        let ack = ws.next(WAIT).await.expect("an answer to connection_init");
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        ws
    }

    /// Connects with the subprotocol `protocol`, without initialising.
    pub async fn connect(url: &str, protocol: &'static str) -> Ws {
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("sec-websocket-protocol", protocol.parse().unwrap());
        let (socket, response) = tokio_tungstenite::connect_async(request).await.expect("the WebSocket opens");
        assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
        Ws { socket, protocol }
    }

    /// The next message, keep-alives included, within `wait`.
    pub async fn raw(&mut self, wait: Duration) -> Option<Value> {
        match tokio::time::timeout(wait, self.socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str(text.as_str()).ok(),
            _ => None,
        }
    }

    /// Starts a subscription (or any operation) with a query and its variables.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.start(id, json!({"query": query, "variables": variables})).await;
    }

    /// [`Ws::closed_within`] the usual wait.
    pub async fn closed(&mut self) -> (Option<u16>, Vec<Value>) {
        self.closed_within(WAIT).await
    }

    /// Sends a message.
    pub async fn send(&mut self, message: Value) {
        self.socket.send(Message::Text(message.to_string().into())).await.unwrap();
    }

    /// Starts an operation (`subscribe`, legacy `start`).
    pub async fn start(&mut self, id: &str, payload: Value) {
        let kind = if self.protocol == "graphql-ws" { "start" } else { "subscribe" };
        self.send(json!({"type": kind, "id": id, "payload": payload})).await;
    }

    /// The type of a result message in this protocol (`next`, legacy `data`).
    pub fn next_type(&self) -> &'static str {
        if self.protocol == "graphql-ws" {
            "data"
        } else {
            "next"
        }
    }

    /// The next message other than a keep-alive within `wait` (a server `ping` is answered);
    /// `None` when nothing comes in time. Panics when the connection closes.
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return None,
                Ok(message) => message,
            };
            match message {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    match value["type"].as_str() {
                        Some("ping") if self.protocol == "graphql-transport-ws" => {
                            self.send(json!({"type": "pong"})).await;
                        }
                        Some("ka") => {}
                        _ => return Some(value),
                    }
                }
                Some(Ok(Message::Close(frame))) => panic!("the connection closed: {frame:?}"),
                Some(Ok(_)) => {}
                other => panic!("the connection failed: {other:?}"),
            }
        }
    }

    /// Runs a query or mutation on the socket: its one result (`next` / `data`, then
    /// `complete`), or its `error` message.
    pub async fn run(&mut self, id: &str, query: &str, variables: Value) -> Value {
        self.start(id, json!({"query": query, "variables": variables})).await;
        let answer = self.next(WAIT).await.unwrap_or_else(|| panic!("an answer to {query}"));
        assert_eq!(answer["id"], id, "{answer}");
        if answer["type"] == self.next_type() {
            let complete = self.next(WAIT).await.expect("complete");
            assert_eq!(complete, json!({"type": "complete", "id": id}));
        }
        answer
    }

    /// Waits at most `wait` for the server to close the connection: the close code, and the
    /// messages before it (keep-alives left out).
    pub async fn closed_within(&mut self, wait: Duration) -> (Option<u16>, Vec<Value>) {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return (frame.map(|f| u16::from(f.code)), seen),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    if !matches!(value["type"].as_str(), Some("ping" | "pong" | "ka")) {
                        seen.push(value);
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => return (None, seen),
                Err(_) => panic!("the connection stayed open for {wait:?}; messages: {seen:?}"),
            }
        }
    }
}

/// Waits until the server has `n` live subscriptions.
pub async fn live_subscriptions(state: &AppState, n: i64) {
    let started = Instant::now();
    while state.events.stats().subscriptions() != n {
        assert!(started.elapsed() < WAIT, "{} live subscriptions, not {n}", state.events.stats().subscriptions());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `connection_init` payload with a bearer token.
pub fn bearer(token: &str) -> Value {
    json!({"authorization": format!("Bearer {token}")})
}
