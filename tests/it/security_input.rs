//! The security review's findings on connections and input (issue 10, items 3–7): header,
//! silent and idle connections closed on a real socket; caps on connections and on
//! unauthenticated WebSockets; bounded input answered `BAD_USER_INPUT` naming the field;
//! identical answers for another tenant's row and a missing one on every mutation taking an
//! id; 32-bit `Int`s and the `BigInt` scalar; emails only the server admin changes.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use iofold_graph::config::ConnectionLimits;
use iofold_graph::db::Backend;
use iofold_graph::server::{serve_on, AppState};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::support::app::test_config;
use crate::support::db::TestDb;

// ---------------------------------------------------------------------------------------
// A server on a real socket.

/// How long a test waits for something that must happen (far above the timeouts it sets).
const WAIT: Duration = Duration::from_secs(8);

/// The router served on 127.0.0.1 (an ephemeral port) with these connection limits.
struct Live {
    address: SocketAddr,
    state: AppState,
    _db: TestDb,
    task: tokio::task::JoinHandle<()>,
}

impl Live {
    async fn start(backend: Backend, limits: ConnectionLimits) -> Live {
        let test_db = TestDb::migrated(backend).await;
        let mut config = test_config(test_db.url.as_str());
        config.connections = limits;
        let state = AppState::new(test_db.db.clone(), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let serving = state.clone();
        let task = tokio::spawn(async move {
            let _ = serve_on(listener, serving, std::future::pending()).await;
        });
        Live { address, state, _db: test_db, task }
    }

    /// A TCP connection from the local address `from` (any 127.0.0.0/8 address).
    async fn connect_from(&self, from: &str) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0)).unwrap();
        socket.connect(self.address).await.unwrap()
    }

    /// A token of a new user.
    async fn token(&self) -> String {
        let (_, user) = crate::support::fixtures::Fixtures::new(&self.state.db).workspace_with_owner().await;
        crate::support::fixtures::Fixtures::new(&self.state.db).token_for(&user).await
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn limits() -> ConnectionLimits {
    ConnectionLimits::default()
}

/// Reads until the server closes the connection (EOF or reset); what was read. Panics when
/// it stays open for `WAIT`.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&seen).into_owned(),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the connection stayed open; read so far: {}", String::from_utf8_lossy(&seen)),
        }
    }
}

/// One complete `GET /health` on a kept-alive connection: the response head and body.
async fn health(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("an answer").unwrap();
        assert!(n > 0, "closed before the response: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

/// Waits until the server counts `n` open connections.
async fn open_connections(state: &AppState, n: usize) {
    let started = Instant::now();
    while state.connections.open.held() != n {
        assert!(started.elapsed() < WAIT, "{} open connections, not {n}", state.connections.open.held());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

both_backends! {
    async fn slow_and_silent_headers_are_cut_off(backend: Backend) {
        let live = Live::start(backend, ConnectionLimits { header_timeout: Duration::from_secs(1), ..limits() }).await;

        // A connection that never sends a byte.
        let mut silent = live.connect_from("127.0.0.1").await;
        let started = Instant::now();
        let answer = read_until_closed(&mut silent).await;
        assert!(started.elapsed() >= Duration::from_millis(900), "closed before the timeout: {:?}", started.elapsed());
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");

        // A request whose headers come one byte at a time, forever.
        let mut slow = live.connect_from("127.0.0.1").await;
        slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ").await.unwrap();
        let started = Instant::now();
        let mut closed = false;
        while started.elapsed() < WAIT {
            if slow.write_all(b"a").await.is_err() {
                closed = true;
                break;
            }
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(n)) => assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"), "an answer to a request never finished"),
                Err(_) => {}
            }
        }
        assert!(closed, "a trickling client kept its connection for {WAIT:?}");
        open_connections(&live.state, 0).await;

        // A client that finishes its headers in time is served.
        let mut prompt = live.connect_from("127.0.0.1").await;
        assert!(health(&mut prompt).await.starts_with("HTTP/1.1 200"));
    }
}

both_backends! {
    async fn idle_connections_are_closed(backend: Backend) {
        let live = Live::start(
            backend,
            ConnectionLimits { header_timeout: Duration::from_secs(60), idle_timeout: Duration::from_secs(1), ..limits() },
        )
        .await;
        // Silent from the start.
        let mut silent = live.connect_from("127.0.0.1").await;
        read_until_closed(&mut silent).await;
        // Kept alive after a request, then silent.
        let mut kept = live.connect_from("127.0.0.1").await;
        assert!(health(&mut kept).await.starts_with("HTTP/1.1 200"));
        let started = Instant::now();
        assert_eq!(read_until_closed(&mut kept).await, "");
        assert!(started.elapsed() >= Duration::from_millis(900));
        open_connections(&live.state, 0).await;
    }
}

both_backends! {
    async fn connections_are_capped_per_client_and_in_all(backend: Backend) {
        let live = Live::start(
            backend,
            ConnectionLimits { max_connections: 4, max_connections_per_client: 3, ..limits() },
        )
        .await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut stream = live.connect_from("127.0.0.1").await;
            assert!(health(&mut stream).await.starts_with("HTTP/1.1 200"));
            held.push(stream);
        }
        // A fourth from the same address.
        let mut refused = live.connect_from("127.0.0.1").await;
        let answer = read_until_closed(&mut refused).await;
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        assert!(answer.contains("\"TOO_MANY_CONNECTIONS\""), "{answer}");
        // Another address still gets in, up to the cap in all.
        let mut other = live.connect_from("127.0.0.2").await;
        assert!(health(&mut other).await.starts_with("HTTP/1.1 200"));
        let mut third = live.connect_from("127.0.0.3").await;
        let answer = read_until_closed(&mut third).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("\"TOO_MANY_CONNECTIONS\""), "{answer}");
        open_connections(&live.state, 4).await;
        // A closed connection frees its place.
        drop(held.pop());
        open_connections(&live.state, 3).await;
        let mut again = live.connect_from("127.0.0.1").await;
        assert!(health(&mut again).await.starts_with("HTTP/1.1 200"));
    }
}

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A WebSocket (graphql-transport-ws) from the local address `from`, or the HTTP status
/// and body of the refused upgrade.
async fn websocket_from(live: &Live, from: &str) -> Result<Socket, (u16, String)> {
    let stream = live.connect_from(from).await;
    let mut request = format!("ws://{}/graphql", live.address).into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(other) => panic!("the upgrade failed: {other}"),
    }
}

/// Sends `connection_init` with the token and waits for the acknowledgement.
async fn init(socket: &mut Socket, token: &str) {
    let init = json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}});
    socket.send(Message::Text(init.to_string().into())).await.unwrap();
    let ack = tokio::time::timeout(WAIT, socket.next()).await.expect("an answer").unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"), "{ack:?}");
}

both_backends! {
    async fn unauthenticated_websockets_are_capped(backend: Backend) {
        let live = Live::start(
            backend,
            ConnectionLimits { max_unauthenticated_websockets: 3, max_unauthenticated_websockets_per_client: 2, ..limits() },
        )
        .await;
        let token = live.token().await;
        let mut first = websocket_from(&live, "127.0.0.1").await.expect("the first opens");
        let _second = websocket_from(&live, "127.0.0.1").await.expect("the second opens");
        let (status, body) = websocket_from(&live, "127.0.0.1").await.err().expect("a third is refused");
        assert_eq!(status, 429, "{body}");
        assert!(body.contains("TOO_MANY_CONNECTIONS"), "{body}");
        let _other = websocket_from(&live, "127.0.0.2").await.expect("another address opens");
        let (status, body) = websocket_from(&live, "127.0.0.3").await.err().expect("over the cap in all");
        assert_eq!(status, 503, "{body}");

        // Authenticated WebSockets do not count: after its acknowledgement the first one's
        // place is free, and it keeps working.
        init(&mut first, &token).await;
        let mut third = websocket_from(&live, "127.0.0.1").await.expect("a place was freed");
        init(&mut third, &token).await;
        let _fourth = websocket_from(&live, "127.0.0.3").await.expect("a place in all was freed");
        assert_eq!(live.state.connections.unauthenticated_websockets.held(), 3);
        first.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.unwrap();
        let pong = tokio::time::timeout(WAIT, first.next()).await.expect("an answer").unwrap().unwrap();
        assert!(pong.to_text().unwrap().contains("pong"), "{pong:?}");
    }
}
