//! The event bus: how a committed change reaches the subscriptions that watch it, on this
//! server instance and on every other instance that shares the database.
//!
//! An [`Event`] names a changed row (`{kind, workspace_id, id}`), never its content: the
//! subscriber re-reads the row with its own access, so tenancy and relations work exactly
//! as for queries, and nothing a caller may not see travels on the bus.
//!
//! - **SQLite** (one process): a mutation hands its events to an in-process
//!   `tokio::sync::broadcast` channel after its transaction commits.
//! - **PostgreSQL**: a mutation sends `NOTIFY iofold_events, '<event as JSON>'` after its
//!   transaction commits, and every server instance keeps one dedicated connection that
//!   `LISTEN`s on that channel (reconnecting with backoff when it drops) and feeds its own
//!   broadcast channel. Nothing is delivered locally besides, so each subscriber sees each
//!   change once, whichever instance made it.
//!
//! **Access changes** travel the same way: a committed change to someone's credentials or
//! memberships (a revoked token, a role changed, a membership added or removed, a user or a
//! workspace deleted) is an [`EventKind::Access`] event naming the user (or the workspace),
//! delivered to the open WebSocket connections ([`EventBus::access_changes`], a channel of
//! its own, so subscriptions never wake for them), which re-check their caller at once. When
//! the PostgreSQL listener reconnects, every connection re-checks (it may have missed some).
//!
//! The broadcast channel is bounded ([`crate::config::Subscriptions::event_capacity`]): a
//! subscriber that falls further behind is dropped (`SUBSCRIPTION_LAGGED`), so a slow client
//! never makes the server buffer without limit. The bus lives in the server's state; the
//! listener connection is opened by the first subscription and closed with the bus.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::catalog::Table;
use crate::db::{DatabaseUrl, Db, Pool};
use crate::error::{AppError, AppResult};
use crate::graphql::access::Access;
use crate::graphql::records::Record;

/// The PostgreSQL `NOTIFY` channel of the events.
pub const CHANNEL: &str = "iofold_events";

/// How long a new subscription waits for the PostgreSQL listener to be listening.
pub const LISTENER_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the listener connection may stay silent before it is checked with `SELECT 1`.
const LISTENER_HEALTH_CHECK: Duration = Duration::from_secs(30);

/// The first and the longest pause before the listener reconnects.
const RECONNECT_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(30));

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A job (`jobUpdated`).
    Job,
    /// A workflow execution or one of its steps (`executionUpdated`).
    Execution,
    /// The credentials or memberships of a user (`id`), of every member of a workspace
    /// (`workspace_id`, empty `id`), or of everyone (neither): open WebSocket connections
    /// concerned re-check their caller.
    Access,
}

/// A committed change to a row that subscriptions watch: its kind, its workspace when the
/// row names it (jobs), and its id (for a step: its execution's id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Event {
    /// What changed.
    pub kind: EventKind,
    /// The row's workspace, when known without a query (jobs); `None` otherwise.
    pub workspace_id: Option<String>,
    /// The id of the job or execution.
    pub id: String,
}

impl Event {
    /// The event a written row is: a job, an execution, or a step (its execution's event);
    /// `None` for rows no subscription watches.
    pub fn of_record(record: &Record) -> Option<Event> {
        let event = |kind, workspace_id: Option<&str>, id: &str| Event {
            kind,
            workspace_id: workspace_id.map(str::to_owned),
            id: id.to_owned(),
        };
        match record.table.name {
            "jobs" => Some(event(EventKind::Job, record.text("workspace_id"), record.id())),
            "executions" => Some(event(EventKind::Execution, None, record.id())),
            "execution_steps" => record.text("execution_id").map(|id| event(EventKind::Execution, None, id)),
            // A membership added, changed or removed (the removed row is in its payload).
            "workspace_members" => record.text("user_id").map(Event::access_of_user),
            // A revoked token (a new one changes nothing for open connections).
            "api_tokens" if !record.get("revoked_at").is_null() => record.text("user_id").map(Event::access_of_user),
            _ => None,
        }
    }

    /// The credentials or memberships of a user changed.
    pub fn access_of_user(user_id: &str) -> Event {
        Event { kind: EventKind::Access, workspace_id: None, id: user_id.to_owned() }
    }

    /// The memberships of every member of a workspace changed (it was deleted).
    pub fn access_in_workspace(workspace_id: &str) -> Event {
        Event { kind: EventKind::Access, workspace_id: Some(workspace_id.to_owned()), id: String::new() }
    }

    /// Anyone's may have changed (the listener was away): every connection re-checks.
    pub fn access_of_everyone() -> Event {
        Event { kind: EventKind::Access, workspace_id: None, id: String::new() }
    }

    /// Whether an access event concerns the caller of `access`: their user, one of their
    /// workspaces, or everyone. The admin secret is concerned by none.
    pub fn concerns(&self, access: &Access) -> bool {
        let Access::Member { user_id, workspaces, .. } = access else { return false };
        self.kind == EventKind::Access
            && match (&self.workspace_id, self.id.as_str()) {
                (Some(workspace), _) => workspaces.contains(workspace),
                (None, "") => true,
                (None, id) => id == user_id,
            }
    }

    /// The event a deleted row is (its subscribers find it gone and complete).
    pub fn of_deleted(table: &Table, id: &str) -> Option<Event> {
        let kind = match table.name {
            "jobs" => EventKind::Job,
            "executions" => EventKind::Execution,
            "users" => return Some(Event::access_of_user(id)),
            "workspaces" => return Some(Event::access_in_workspace(id)),
            _ => return None,
        };
        Some(Event { kind, workspace_id: None, id: id.to_owned() })
    }

    /// The event as the JSON text of a notification.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An event from the JSON text of a notification.
    pub fn from_json(text: &str) -> Option<Event> {
        serde_json::from_str(text).ok()
    }
}

/// Figures of the subscriptions (`GET /metrics`).
#[derive(Debug, Default)]
pub struct Stats {
    connections: AtomicI64,
    subscriptions: AtomicI64,
    lagged: AtomicU64,
    listener_connects: AtomicU64,
}

impl Stats {
    /// Open WebSocket connections.
    pub fn connections(&self) -> i64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Live subscriptions (receiving events).
    pub fn subscriptions(&self) -> i64 {
        self.subscriptions.load(Ordering::Relaxed)
    }

    /// Subscriptions dropped because they fell behind.
    pub fn lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Times the PostgreSQL listener connected (1 while it never dropped).
    pub fn listener_connects(&self) -> u64 {
        self.listener_connects.load(Ordering::Relaxed)
    }
}

/// Counts one live item (a connection, a subscription) while it is held.
pub struct Live(Arc<Inner>, fn(&Stats) -> &AtomicI64);

impl Drop for Live {
    fn drop(&mut self) {
        (self.1)(&self.0.stats).fetch_sub(1, Ordering::Relaxed);
    }
}

/// The event bus of one server instance. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    sender: broadcast::Sender<Event>,
    /// Access events, for the WebSocket connections.
    access: broadcast::Sender<Event>,
    delivery: Delivery,
    stats: Stats,
    /// The newest commit position (PostgreSQL WAL, as a number) an event delivered here
    /// announced: the WebSocket operations' reads never go back before it
    /// ([`crate::db::Db::following`]), so a subscription's re-read on a read replica sees the
    /// change it was woken for.
    position: Arc<AtomicU64>,
}

impl Inner {
    /// Hands an event to this instance's receivers of its kind. No receiver is not an
    /// error: nobody listens now.
    fn route(&self, event: Event) {
        let _ = match event.kind {
            EventKind::Access => self.access.send(event),
            EventKind::Job | EventKind::Execution => self.sender.send(event),
        };
    }
}

/// How events reach the subscribers of every instance.
enum Delivery {
    /// In-process only (SQLite: one process).
    Local,
    /// Through PostgreSQL's `NOTIFY`/`LISTEN` on the database at this URL.
    Postgres { url: String, listener: Mutex<Option<Listener>> },
}

/// The task that listens on its dedicated connection, and whether it is listening now.
struct Listener {
    task: tokio::task::JoinHandle<()>,
    ready: watch::Receiver<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Delivery::Postgres { listener, .. } = &mut self.delivery {
            if let Some(listener) = listener.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
                listener.task.abort();
            }
        }
    }
}

impl EventBus {
    /// The bus for a database: in-process on SQLite, `NOTIFY`/`LISTEN` on PostgreSQL. A
    /// subscriber may fall `capacity` events behind.
    pub fn new(url: &DatabaseUrl, capacity: usize) -> Self {
        let delivery = match url {
            DatabaseUrl::Sqlite(_) => Delivery::Local,
            DatabaseUrl::Postgres(url) => Delivery::Postgres { url: url.clone(), listener: Mutex::new(None) },
        };
        Self::with(delivery, capacity)
    }

    /// An in-process bus.
    pub fn local(capacity: usize) -> Self {
        Self::with(Delivery::Local, capacity)
    }

    fn with(delivery: Delivery, capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        let (access, _) = broadcast::channel(capacity.max(1));
        EventBus {
            inner: Arc::new(Inner { sender, access, delivery, stats: Stats::default(), position: Arc::default() }),
        }
    }

    /// Whether events travel through PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.inner.delivery, Delivery::Postgres { .. })
    }

    /// The newest commit position the delivered events announced (0: none yet), as it
    /// moves.
    pub fn position(&self) -> Arc<AtomicU64> {
        self.inner.position.clone()
    }

    /// The subscriptions' figures.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Counts an open WebSocket connection while the guard lives.
    pub fn connection(&self) -> Live {
        self.inner.stats.connections.fetch_add(1, Ordering::Relaxed);
        Live(self.inner.clone(), |stats| &stats.connections)
    }

    /// A receiver of every event from now on. On PostgreSQL, waits (at most
    /// [`LISTENER_READY_TIMEOUT`]) until this instance's listener is listening, so no change
    /// committed after this returns is missed; `TIMEOUT` when it is not.
    pub async fn subscribe(&self) -> AppResult<broadcast::Receiver<Event>> {
        if let Some(mut ready) = self.listener() {
            let listening = tokio::time::timeout(LISTENER_READY_TIMEOUT, ready.wait_for(|ready| *ready)).await;
            if !matches!(listening, Ok(Ok(_))) {
                return Err(AppError::Timeout("the server cannot listen for changes now; try again".into()));
            }
        }
        Ok(self.inner.sender.subscribe())
    }

    /// Counts a live subscription (a client's, receiving events) while the guard lives.
    pub fn subscriber(&self) -> Live {
        self.inner.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
        Live(self.inner.clone(), |stats| &stats.subscriptions)
    }

    /// A receiver of the access events from now on ([`EventKind::Access`]), for one
    /// WebSocket connection. On PostgreSQL, starts the listener if it is not running, without
    /// waiting for it: a connection re-checks its caller at every operation anyway, and
    /// everyone re-checks when the listener (re)connects.
    pub fn access_changes(&self) -> broadcast::Receiver<Event> {
        let _ = self.listener();
        self.inner.access.subscribe()
    }

    /// Notes a subscriber dropped for falling behind.
    pub fn lagged(&self) {
        self.inner.stats.lagged.fetch_add(1, Ordering::Relaxed);
    }

    /// Announces changes a transaction committed (call it after the commit): on SQLite to
    /// this process's subscribers, on PostgreSQL with `NOTIFY` (every instance's listener,
    /// this one's included, hands them on). Duplicates are sent once. A failure is logged:
    /// the change itself is committed.
    pub async fn publish(&self, db: &Db, events: Vec<Event>) {
        let mut unique: Vec<Event> = Vec::with_capacity(events.len());
        for event in events {
            if !unique.contains(&event) {
                unique.push(event);
            }
        }
        match (&self.inner.delivery, &db.pool) {
            (Delivery::Postgres { .. }, Pool::Postgres(pool)) => {
                notify(pool, &unique, db.commit_token().map(|lsn| lsn.0)).await
            }
            _ => unique.into_iter().for_each(|event| self.deliver(event)),
        }
    }

    /// Hands an event to this instance's subscribers (what the PostgreSQL listener does with
    /// each notification).
    pub fn deliver(&self, event: Event) {
        self.inner.route(event);
    }

    /// On PostgreSQL, the listener's readiness, starting the listener if it is not running.
    fn listener(&self) -> Option<watch::Receiver<bool>> {
        let Delivery::Postgres { url, listener } = &self.inner.delivery else { return None };
        let mut listener = listener.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = listener.as_ref().filter(|l| !l.task.is_finished()) {
            return Some(running.ready.clone());
        }
        let (ready_tx, ready) = watch::channel(false);
        let task = tokio::spawn(listen(url.clone(), Arc::downgrade(&self.inner), ready_tx));
        *listener = Some(Listener { task, ready: ready.clone() });
        Some(ready)
    }
}

/// Sends events with `NOTIFY` (every instance's listener hands them on); a failure is logged.
///
/// `position` (the commit position of the write, with read replicas) travels with each
/// event: the listeners raise their bus's [`EventBus::position`] to it.
async fn notify(pool: &crate::db::PgPool, events: &[Event], position: Option<u64>) {
    let notified: Result<(), crate::db::DbError> = async {
        use diesel_async::RunQueryDsl;
        let mut conn = pool.get().await?;
        for event in events {
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<Text, _>(CHANNEL)
                .bind::<Text, _>(notice(event, position))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
    .await;
    if let Err(error) = notified {
        tracing::warn!(%error, events = events.len(), "could not notify subscribers of committed changes");
    }
}

/// Announces changes committed outside a server (the command line's `token revoke`) to the
/// server instances: on PostgreSQL with `NOTIFY`. On SQLite no server hears another
/// process: their open connections find the change at their next periodic check.
pub async fn announce_from_outside(db: &Db, events: Vec<Event>) {
    if let Pool::Postgres(pool) = &db.pool {
        notify(pool, &events, None).await;
    }
}

/// The text of an event's notification: the event, and the commit position when known.
fn notice(event: &Event, position: Option<u64>) -> String {
    match (position, serde_json::to_value(event)) {
        (Some(position), Ok(serde_json::Value::Object(mut fields))) => {
            fields.insert("position".into(), position.into());
            serde_json::Value::Object(fields).to_string()
        }
        _ => event.to_json(),
    }
}

/// The commit position a notification carries.
fn position_of(text: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Position {
        position: u64,
    }
    serde_json::from_str::<Position>(text).ok().map(|p| p.position)
}

/// The listener: one dedicated connection that `LISTEN`s on [`CHANNEL`] and hands every
/// notification to the bus; it reconnects with a growing pause (100 ms to 30 s) when the
/// connection fails, and checks a silent connection every 30 s. Ends with the bus.
async fn listen(url: String, bus: std::sync::Weak<Inner>, ready: watch::Sender<bool>) {
    let mut backoff = RECONNECT_BACKOFF.0;
    loop {
        match connect_listener(&url).await {
            Ok(mut conn) => {
                let Some(inner) = bus.upgrade() else { return };
                let connects = inner.stats.listener_connects.fetch_add(1, Ordering::Relaxed);
                if connects > 0 {
                    tracing::info!("the event listener reconnected (changes made while it was away were not pushed)");
                }
                backoff = RECONNECT_BACKOFF.0;
                let _ = ready.send(true);
                // Access changes made before it listened were not heard: every open
                // connection re-checks its caller.
                inner.route(Event::access_of_everyone());
                drop(inner);
                let reason = pump(&mut conn, &bus).await;
                let _ = ready.send(false);
                match reason {
                    Some(reason) => tracing::warn!(%reason, "the event listener's connection failed: reconnecting"),
                    None => return,
                }
            }
            Err(error) => {
                tracing::warn!(%error, retry_ms = backoff.as_millis() as u64, "the event listener could not connect")
            }
        }
        if bus.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_BACKOFF.1);
    }
}

async fn connect_listener(url: &str) -> Result<AsyncPgConnection, String> {
    let mut conn = AsyncPgConnection::establish(url).await.map_err(|e| e.to_string())?;
    conn.batch_execute(&format!("LISTEN {CHANNEL}")).await.map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Hands notifications to the bus until the connection fails (`Some(reason)`) or the bus is
/// gone (`None`).
async fn pump(conn: &mut AsyncPgConnection, bus: &std::sync::Weak<Inner>) -> Option<String> {
    loop {
        let next = {
            let notifications = conn.notifications_stream();
            let mut notifications = std::pin::pin!(notifications);
            tokio::time::timeout(LISTENER_HEALTH_CHECK, notifications.next()).await
        };
        match next {
            Ok(Some(Ok(notification))) => {
                let inner = bus.upgrade()?;
                match Event::from_json(&notification.payload) {
                    Some(event) if notification.channel == CHANNEL => {
                        if let Some(position) = position_of(&notification.payload) {
                            inner.position.fetch_max(position, Ordering::Relaxed);
                        }
                        inner.route(event)
                    }
                    _ => tracing::warn!(channel = %notification.channel, "ignored a notification that is no event"),
                }
            }
            Ok(Some(Err(error))) => return Some(error.to_string()),
            Ok(None) => return Some("the connection closed".into()),
            Err(_) => {
                bus.upgrade()?;
                if let Err(error) = conn.batch_execute("SELECT 1").await {
                    return Some(error.to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_travel_as_json() {
        let event = Event { kind: EventKind::Job, workspace_id: Some("workspace_1".into()), id: "job_1".into() };
        assert_eq!(event.to_json(), r#"{"kind":"job","workspace_id":"workspace_1","id":"job_1"}"#);
        assert_eq!(Event::from_json(&event.to_json()), Some(event));
        assert_eq!(Event::from_json("{\"kind\":\"nope\",\"id\":\"x\"}"), None);
    }

    #[tokio::test]
    async fn access_events_concern_their_user_or_workspace_and_travel_apart() {
        let member = |user: &str, workspaces: &[&str]| Access::Member {
            user_id: user.into(),
            workspaces: workspaces.iter().map(|w| w.to_string()).collect(),
            roles: vec![crate::models::WorkspaceMemberRole::Member; workspaces.len()],
        };
        let (alice, bob) = (member("user_a", &["workspace_1"]), member("user_b", &["workspace_2"]));
        let of_alice = Event::access_of_user("user_a");
        assert!(of_alice.concerns(&alice) && !of_alice.concerns(&bob) && !of_alice.concerns(&Access::Admin));
        let deleted = Event::of_deleted(crate::catalog::table("workspaces").unwrap(), "workspace_2").unwrap();
        assert!(!deleted.concerns(&alice) && deleted.concerns(&bob));
        assert_eq!(Event::of_deleted(crate::catalog::table("users").unwrap(), "user_a"), Some(of_alice.clone()));
        let everyone = Event::access_of_everyone();
        assert!(everyone.concerns(&alice) && everyone.concerns(&bob));
        assert!(!Event { kind: EventKind::Job, workspace_id: None, id: String::new() }.concerns(&alice));
        assert_eq!(Event::from_json(&of_alice.to_json()), Some(of_alice.clone()));

        // Access events reach the connections' channel only; job events the subscriptions'.
        let bus = EventBus::local(8);
        let mut subscriptions = bus.subscribe().await.unwrap();
        let mut connections = bus.access_changes();
        let job = Event { kind: EventKind::Job, workspace_id: Some("workspace_1".into()), id: "job_1".into() };
        bus.deliver(of_alice.clone());
        bus.deliver(job.clone());
        assert_eq!(subscriptions.recv().await.unwrap(), job);
        assert_eq!(connections.recv().await.unwrap(), of_alice);
        assert!(subscriptions.try_recv().is_err() && connections.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_local_bus_delivers_each_event_once_and_bounds_a_slow_subscriber() {
        let bus = EventBus::local(2);
        let mut receiver = bus.subscribe().await.unwrap();
        let live = bus.subscriber();
        assert_eq!(bus.stats().subscriptions(), 1);
        let event = |id: &str| Event { kind: EventKind::Execution, workspace_id: None, id: id.into() };
        let db =
            Db::connect(&DatabaseUrl::Sqlite("/nonexistent/unused.db".into()), &crate::db::PoolOptions { max_size: 1 })
                .unwrap();
        bus.publish(&db, vec![event("a"), event("a"), event("b")]).await;
        assert_eq!(receiver.recv().await.unwrap(), event("a"));
        assert_eq!(receiver.recv().await.unwrap(), event("b"));
        for i in 0..10 {
            bus.deliver(event(&i.to_string()));
        }
        assert!(matches!(receiver.recv().await, Err(broadcast::error::RecvError::Lagged(_))));
        drop(live);
        assert_eq!(bus.stats().subscriptions(), 0);
    }
}
