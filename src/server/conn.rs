//! Connections: the accept loop and what bounds each connection (HTTP/1.1 served by hyper).
//!
//! - **Header read timeout** (`HTTP_HEADER_TIMEOUT_MS`): from the moment the server waits for
//!   a request (a new connection, or the next request on a kept-alive one) until its headers
//!   are complete. A client that trickles header bytes, or sends nothing at all, is
//!   disconnected when it runs out (hyper's `header_read_timeout`).
//! - **Idle timeout** (`HTTP_IDLE_TIMEOUT_MS`): a connection with no request being handled
//!   that has read and written nothing for this long is closed (also a client that stops
//!   reading its response). A request being handled is bounded by `REQUEST_TIMEOUT_MS`
//!   instead. A connection upgraded to a WebSocket leaves both: the WebSocket protocol has
//!   its own deadlines and pings.
//! - **Connection caps**: at most `MAX_CONNECTIONS` open connections in all and
//!   `MAX_CONNECTIONS_PER_CLIENT` per client address (WebSockets included, for as long as they
//!   are open). One more is answered `503` (in all) or `429` (per client) with
//!   `TOO_MANY_CONNECTIONS` and closed, without reading its request.
//! - **Unauthenticated WebSockets**: at most `MAX_UNAUTHENTICATED_WEBSOCKETS` in all and
//!   `MAX_UNAUTHENTICATED_WEBSOCKETS_PER_CLIENT` per client address may wait for their
//!   `connection_init` to be accepted; the upgrade of one more is refused the same way.
//!
//! The client address is the TCP peer's: behind a reverse proxy every client shares the
//! proxy's address, so raise the per-client caps there (the proxy should bound its clients).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::ConnectionLimits;

/// The address of the client of a request (request extension set by the accept loop; a
/// request that reached the router without a socket, as in tests, has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Counted slots per client address and in all, released on drop.
#[derive(Debug)]
pub struct Slots {
    total_max: usize,
    per_client_max: usize,
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The cap in all.
    Total,
    /// The cap of one client address.
    Client,
}

impl Full {
    /// The HTTP status of the refusal: `503` (in all), `429` (per client).
    pub fn status(self) -> StatusCode {
        match self {
            Full::Total => StatusCode::SERVICE_UNAVAILABLE,
            Full::Client => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl Slots {
    /// Slots for at most `total_max` in all and `per_client_max` per address.
    pub fn new(total_max: usize, per_client_max: usize) -> Self {
        Slots { total_max, per_client_max, counts: Mutex::new((0, HashMap::new())) }
    }

    /// A slot for `client` (`None`: counted in all only), or which cap is reached.
    pub fn acquire(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Slot, Full> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.0 >= self.total_max {
            return Err(Full::Total);
        }
        if let Some(client) = client {
            let n = counts.1.entry(client).or_insert(0);
            if *n >= self.per_client_max {
                return Err(Full::Client);
            }
            *n += 1;
        }
        counts.0 += 1;
        Ok(Slot { slots: self.clone(), client })
    }

    /// Slots held in all.
    pub fn held(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    fn release(&self, client: Option<IpAddr>) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.0 = counts.0.saturating_sub(1);
        if let Some(client) = client {
            if let Some(n) = counts.1.get_mut(&client) {
                *n -= 1;
                if *n == 0 {
                    counts.1.remove(&client);
                }
            }
        }
    }
}

/// A held slot; dropping it frees it.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    client: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.client);
    }
}

/// The connection bookkeeping of a server (in [`super::AppState`]).
#[derive(Debug)]
pub struct Connections {
    /// The limits.
    pub limits: ConnectionLimits,
    /// Open connections.
    pub open: Arc<Slots>,
    /// WebSockets whose `connection_init` was not accepted yet.
    pub unauthenticated_websockets: Arc<Slots>,
}

impl Connections {
    /// The bookkeeping for these limits.
    pub fn new(limits: &ConnectionLimits) -> Self {
        Connections {
            open: Arc::new(Slots::new(limits.max_connections, limits.max_connections_per_client)),
            unauthenticated_websockets: Arc::new(Slots::new(
                limits.max_unauthenticated_websockets,
                limits.max_unauthenticated_websockets_per_client,
            )),
            limits: limits.clone(),
        }
    }
}

/// The body of a refusal for a full server.
pub fn too_many_message(full: Full) -> &'static str {
    match full {
        Full::Total => "the server has too many open connections; try again later",
        Full::Client => "too many open connections from this address; close some first",
    }
}

/// When a connection last read or wrote, and whether a request is being handled.
struct Activity {
    origin: Instant,
    /// Milliseconds after `origin`.
    last: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity { origin: Instant::now(), last: AtomicU64::new(0), busy: AtomicUsize::new(0) }
    }

    fn touch(&self) {
        self.last.store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves once the connection was idle for `timeout` with no request in hand.
    async fn idle(&self, timeout: Duration) {
        loop {
            let last = self.origin + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = last + timeout;
            if self.busy.load(Ordering::Relaxed) == 0 && Instant::now() >= deadline {
                return;
            }
            let wake = if self.busy.load(Ordering::Relaxed) == 0 { deadline } else { Instant::now() + timeout };
            tokio::time::sleep_until(wake.max(Instant::now() + Duration::from_millis(10)).into()).await;
        }
    }
}

/// A request in hand: the connection is not idle while it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, recording its activity and holding the connection's slot for as long as it
/// is open (an upgraded WebSocket keeps it).
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
    _slot: Slot,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The router as a hyper service for one connection: tags each request with the client's
/// address and marks the connection busy while the request is handled.
#[derive(Clone)]
struct PerConnection {
    router: TowerToHyperService<Router>,
    client: ClientAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for PerConnection {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.client);
        let busy = Busy::new(&self.activity);
        let response = self.router.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(busy);
            response
        })
    }
}

/// Accepts connections until `stop` turns true, serving each with `router`; then asks the
/// open ones to finish (HTTP/1.1 graceful close) and resolves when every one has ended.
/// The caller bounds how long it waits.
pub async fn accept_loop(
    listener: TcpListener,
    router: Router,
    connections: Arc<Connections>,
    mut stop: watch::Receiver<bool>,
) {
    // Every connection task holds a receiver; `closed()` resolves when all are gone.
    let (alive, _) = watch::channel(());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(connections.limits.header_timeout).keep_alive(true);
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if !is_connection_error(&error) {
                        // Out of file descriptors and the like: let things settle.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        match connections.open.acquire(Some(peer.ip())) {
            Ok(slot) => {
                let task = serve_connection(
                    stream,
                    peer,
                    slot,
                    router.clone(),
                    builder.clone(),
                    connections.limits.idle_timeout,
                    stop.clone(),
                );
                let alive = alive.subscribe();
                tokio::spawn(async move {
                    task.await;
                    drop(alive);
                });
            }
            Err(full) => {
                tracing::debug!(client = %peer.ip(), ?full, "connection refused: too many connections");
                tokio::spawn(refuse(stream, full));
            }
        }
    }
    drop(listener);
    alive.closed().await;
}

/// Resolves when `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Errors of one connection, not of the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Answers a connection over a cap with `503`/`429` `TOO_MANY_CONNECTIONS` and closes it.
async fn refuse(mut stream: TcpStream, full: Full) {
    let body = serde_json::json!({"errors": [{
        "message": too_many_message(full),
        "extensions": {"code": "TOO_MANY_CONNECTIONS"},
    }]})
    .to_string();
    let status = full.status();
    let response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
        body.len(),
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    router: Router,
    builder: Arc<hyper::server::conn::http1::Builder>,
    idle_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked { stream, activity: activity.clone(), _slot: slot });
    let service = PerConnection {
        router: TowerToHyperService::new(router),
        client: ClientAddr(peer.ip()),
        activity: activity.clone(),
    };
    let connection = builder.serve_connection(io, service).with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(client = %peer.ip(), %error, "connection ended with an error");
                }
                return;
            }
            _ = activity.idle(idle_timeout) => {
                tracing::debug!(client = %peer.ip(), "closing an idle connection");
                return;
            }
            _ = stopped(&mut stop), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
