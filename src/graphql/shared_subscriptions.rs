//! Shared subscriptions: subscribers that run the same operation (document, operation name
//! and variables) under the same access share one execution, so an event costs one re-read
//! of its row and one load of each relation whatever the number of watchers.
//!
//! The [`SubscriptionHub`] (one per server instance, in its state) keeps one
//! execution per key ([`Operation`], [`Access`]): the first subscriber starts it, the
//! others join it, and it stops when its last subscriber leaves (an operation `complete`d,
//! a connection closed). Its updates are [`Update`]s, made once (the response serialised
//! once, internal errors logged once) and fanned out through a bounded broadcast channel:
//! a subscriber that falls `EVENT_BUS_CAPACITY` updates behind is dropped with
//! `SUBSCRIPTION_LAGGED`, alone, and the execution never waits for anyone.
//!
//! Access is never shared across: the key holds the access the subscriber's connection had
//! when it subscribed (the user, their memberships and roles; or the admin secret). Each
//! subscriber also follows its connection's access ([`LiveAccess`]):
//!
//! - the credential is gone: it ends with `UNAUTHENTICATED` (the connection closes);
//! - the access changed: it moves to the execution of its operation under the new access
//!   (joined, or started: one check for all the subscribers that move alike), keeping the
//!   old one until the new one listens, so no change is missed (a result the old one
//!   already sent is not sent again); when the new one no longer finds what the operation
//!   watches (`NOT_FOUND`: the member was removed, the workspace deleted), it ends with
//!   `FORBIDDEN`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures_util::stream::{self, BoxStream, StreamExt};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tracing::Instrument;

use crate::events::{EventBus, Live};
use crate::graphql::access::{Access, LiveAccess};
use crate::graphql::subscriptions::{self, Listening};

/// An operation as its subscribers share it: the document's text, the operation's name and
/// the variables (as JSON with sorted keys, so their order does not matter).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    query: Arc<str>,
    operation_name: Option<Arc<str>>,
    variables: Arc<str>,
}

impl Operation {
    /// The operation a request runs.
    pub fn of(request: &async_graphql::Request) -> Operation {
        let variables = serde_json::to_value(&request.variables).unwrap_or_default();
        Operation {
            query: request.query.as_str().into(),
            operation_name: request.operation_name.as_deref().map(Into::into),
            variables: variables.to_string().into(),
        }
    }

    /// A request that runs it (without any data).
    pub fn request(&self) -> async_graphql::Request {
        let variables = serde_json::from_str(&self.variables).map(async_graphql::Variables::from_json);
        let request = async_graphql::Request::new(self.query.as_ref()).variables(variables.unwrap_or_default());
        match &self.operation_name {
            Some(name) => request.operation_name(name.as_ref()),
            None => request,
        }
    }
}

/// What an execution yields, made once for all its subscribers.
#[derive(Debug)]
pub struct Update {
    /// The message.
    pub payload: Payload,
    /// The codes of its errors (for the metrics).
    pub codes: Vec<String>,
    /// The operation's label as the execution resolved it (`None`: not known there).
    pub label: Option<String>,
}

/// The message of an [`Update`].
#[derive(Debug)]
pub enum Payload {
    /// A result: the response, as JSON text.
    Next(Arc<str>),
    /// The subscription failed as a whole: its errors, as JSON. It is over.
    Error(Vec<Value>),
    /// The subscription is over.
    Complete,
}

impl Update {
    /// An error of the hub's own that ends a subscription.
    fn error(error: async_graphql::Error) -> Update {
        let error = error.into_server_error(async_graphql::Pos::default());
        let code = match error.extensions.as_ref().and_then(|ext| ext.get("code")) {
            Some(async_graphql::Value::String(code)) => code.clone(),
            _ => "INTERNAL_SERVER_ERROR".to_owned(),
        };
        let json = serde_json::to_value(&error).unwrap_or_default();
        Update { payload: Payload::Error(vec![json]), codes: vec![code], label: None }
    }

    fn complete() -> Update {
        Update { payload: Payload::Complete, codes: Vec::new(), label: None }
    }

    /// Whether the subscription is over with it.
    pub fn is_final(&self) -> bool {
        !matches!(self.payload, Payload::Next(_))
    }

    /// Whether it ends the subscription because what it watches was not found.
    fn is_not_found(&self) -> bool {
        matches!(self.payload, Payload::Error(_)) && self.codes.first().is_some_and(|code| code == "NOT_FOUND")
    }
}

/// Starts the execution of an operation under an access: its updates. It sets [`Listening`]
/// (request data of the execution) once it listens.
pub type Start = Arc<dyn Fn(Arc<Access>, Listening) -> BoxStream<'static, Update> + Send + Sync>;

/// Figures of the shared subscriptions (`GET /metrics`).
#[derive(Debug, Default)]
pub struct Stats {
    executions: AtomicI64,
    subscribers: AtomicI64,
    started: AtomicU64,
}

impl Stats {
    /// Executions running (each shared by one or more subscribers).
    pub fn executions(&self) -> i64 {
        self.executions.load(Ordering::Relaxed)
    }

    /// Subscribers of the executions.
    pub fn subscribers(&self) -> i64 {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Executions started so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

/// The shared subscriptions of one server instance. Cheap to clone.
#[derive(Clone)]
pub struct SubscriptionHub {
    inner: Arc<Inner>,
}

struct Inner {
    executions: Mutex<HashMap<Key, Weak<Execution>>>,
    /// How many updates a subscriber may fall behind.
    capacity: usize,
    events: EventBus,
    stats: Stats,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    operation: Operation,
    access: Arc<Access>,
}

/// One running execution and its subscribers' channel; stopped when the last of them drops
/// it.
struct Execution {
    key: Key,
    sender: broadcast::Sender<Arc<Update>>,
    listening: watch::Receiver<bool>,
    task: tokio::task::AbortHandle,
    hub: Arc<Inner>,
}

impl Drop for Execution {
    fn drop(&mut self) {
        self.task.abort();
        self.hub.forget(&self.key, None);
        self.hub.stats.executions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A subscriber's place in an execution.
struct Member {
    execution: Arc<Execution>,
    receiver: broadcast::Receiver<Arc<Update>>,
    listening: watch::Receiver<bool>,
}

impl SubscriptionHub {
    /// An empty hub: a subscriber may fall `capacity` updates behind; subscribers are counted
    /// on `events` while they listen.
    pub fn new(events: EventBus, capacity: usize) -> Self {
        let inner = Inner { executions: Mutex::default(), capacity: capacity.max(1), events, stats: Stats::default() };
        SubscriptionHub { inner: Arc::new(inner) }
    }

    /// The hub's figures.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Subscribes to `operation` under `access`: the updates of the execution it shares
    /// with every subscriber of the same key (started with `start` if there is none), until
    /// a final one. `live`, the connection's access, is followed (see the module).
    pub fn subscribe(
        &self,
        operation: Operation,
        access: Arc<Access>,
        live: Option<LiveAccess>,
        start: Start,
    ) -> BoxStream<'static, Arc<Update>> {
        let mut live = live;
        // Checked at once: it may have changed since the caller read it.
        if let Some(LiveAccess(receiver)) = &mut live {
            receiver.mark_changed();
        }
        let current = self.inner.join(Key { operation: operation.clone(), access }, &start);
        let subscriber = Subscriber {
            hub: self.inner.clone(),
            operation,
            start,
            current,
            next: None,
            live,
            counted: None,
            switched: false,
            last: None,
            _attached: Attached::new(&self.inner),
        };
        stream::unfold(Some(subscriber), |subscriber| async move {
            let mut subscriber = subscriber?;
            let update = subscriber.next().await?;
            let more = !update.is_final();
            Some((update, more.then_some(subscriber)))
        })
        .boxed()
    }
}

impl Inner {
    /// A place in the execution of `key`, started if none runs.
    fn join(self: &Arc<Self>, key: Key, start: &Start) -> Member {
        let mut executions = self.executions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(execution) = executions.get(&key).and_then(Weak::upgrade) {
            let (receiver, listening) = (execution.sender.subscribe(), execution.listening.clone());
            return Member { execution, receiver, listening };
        }
        let (sender, receiver) = broadcast::channel(self.capacity);
        let (ready, listening) = watch::channel(false);
        let updates = start(key.access.clone(), Listening(ready));
        let execution = Arc::new_cyclic(|me: &Weak<Execution>| {
            let pump = pump(updates, sender.clone(), self.clone(), key.clone(), me.clone());
            let task = tokio::spawn(pump.in_current_span()).abort_handle();
            Execution { key: key.clone(), sender, listening: listening.clone(), task, hub: self.clone() }
        });
        executions.insert(key, Arc::downgrade(&execution));
        self.stats.executions.fetch_add(1, Ordering::Relaxed);
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        Member { execution, receiver, listening }
    }

    /// Forgets the execution of `key` when it is `execution` (without one: when it stopped),
    /// so the next subscriber starts another.
    fn forget(&self, key: &Key, execution: Option<&Weak<Execution>>) {
        let mut executions = self.executions.lock().unwrap_or_else(|p| p.into_inner());
        let forget = executions.get(key).is_some_and(|entry| match execution {
            Some(execution) => entry.ptr_eq(execution),
            None => entry.strong_count() == 0,
        });
        if forget {
            executions.remove(key);
        }
    }
}

/// Runs an execution: hands each update to its subscribers; before a final one, forgets
/// the execution (a subscriber that joins later starts a new one).
async fn pump(
    mut updates: BoxStream<'static, Update>,
    sender: broadcast::Sender<Arc<Update>>,
    hub: Arc<Inner>,
    key: Key,
    me: Weak<Execution>,
) {
    loop {
        let update = updates.next().await.unwrap_or_else(Update::complete);
        let last = update.is_final();
        if last {
            hub.forget(&key, Some(&me));
        }
        // No subscriber is no error: the last one just left, and the task is stopping.
        let _ = sender.send(Arc::new(update));
        if last {
            return;
        }
    }
}

/// Counts a subscriber among [`Stats::subscribers`] while it lives.
struct Attached(Arc<Inner>);

impl Attached {
    fn new(hub: &Arc<Inner>) -> Self {
        hub.stats.subscribers.fetch_add(1, Ordering::Relaxed);
        Attached(hub.clone())
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.0.stats.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One subscriber: its execution, the one it moves to after its access changed, and the
/// connection's access it follows.
struct Subscriber {
    hub: Arc<Inner>,
    operation: Operation,
    start: Start,
    current: Member,
    /// The execution under the connection's new access, until it listens.
    next: Option<Member>,
    live: Option<LiveAccess>,
    /// Counted as a live subscription (once its execution listens).
    counted: Option<Live>,
    /// Whether it just moved to another execution: that one's first update is looked at.
    switched: bool,
    /// The last result it sent.
    last: Option<Arc<Update>>,
    _attached: Attached,
}

/// What woke a subscriber.
enum Woken {
    Update(Result<Arc<Update>, RecvError>),
    Moved(Option<Result<Arc<Update>, RecvError>>),
    Listening,
    Access(bool),
}

impl Subscriber {
    /// Its next update; `None` when it is over.
    async fn next(&mut self) -> Option<Arc<Update>> {
        loop {
            let woken = {
                let Subscriber { current, next, live, counted, .. } = self;
                tokio::select! {
                    received = current.receiver.recv() => Woken::Update(received),
                    ready = ready(next) => Woken::Moved(ready),
                    () = listens(&mut current.listening), if counted.is_none() => Woken::Listening,
                    open = access_changed(live) => Woken::Access(open),
                }
            };
            let received = match woken {
                Woken::Update(received) => received,
                Woken::Moved(ready) => {
                    self.switch();
                    match ready {
                        Some(received) => received,
                        None => continue,
                    }
                }
                Woken::Listening => {
                    self.counted = Some(self.hub.events.subscriber());
                    continue;
                }
                // The connection is gone: its operations are being stopped.
                Woken::Access(false) => {
                    self.live = None;
                    continue;
                }
                Woken::Access(true) => match self.follow_access() {
                    Some(end) => return Some(end),
                    None => continue,
                },
            };
            let update = match received {
                Ok(update) => update,
                Err(RecvError::Lagged(missed)) => {
                    self.hub.events.lagged();
                    tracing::info!(missed, "a subscriber fell behind its subscription and was dropped");
                    return Some(Arc::new(Update::error(subscriptions::lagged(missed))));
                }
                Err(RecvError::Closed) => return None,
            };
            if std::mem::take(&mut self.switched) {
                if update.is_not_found() {
                    return Some(Arc::new(Update::error(subscriptions::withdrawn())));
                }
                if let (Payload::Next(new), Some(Payload::Next(old))) =
                    (&update.payload, self.last.as_ref().map(|last| &last.payload))
                {
                    if new == old {
                        continue;
                    }
                }
            }
            if !update.is_final() {
                self.last = Some(update.clone());
            }
            return Some(update);
        }
    }

    /// Leaves the current execution for the one of the new access.
    fn switch(&mut self) {
        if let Some(next) = self.next.take() {
            self.current = next;
            self.switched = true;
        }
    }

    /// Takes the connection's new access: the end of the subscription when the credential
    /// is gone; else, when it differs, a move to that access's execution.
    fn follow_access(&mut self) -> Option<Arc<Update>> {
        let LiveAccess(receiver) = self.live.as_mut()?;
        let Some(access) = receiver.borrow_and_update().clone() else {
            let gone = crate::error::AppError::Unauthenticated("the credential was revoked or has expired".into());
            return Some(Arc::new(Update::error(gone.into())));
        };
        if access == self.current.execution.key.access {
            self.next = None;
        } else if self.next.as_ref().is_none_or(|next| next.execution.key.access != access) {
            let key = Key { operation: self.operation.clone(), access };
            self.next = Some(self.hub.join(key, &self.start));
        }
        None
    }
}

/// Completes when the execution a subscriber moves to is ready: it listens (`None`), or it
/// has an update already (its first: perhaps that it did not find what it watches).
/// Never without one.
async fn ready(next: &mut Option<Member>) -> Option<Result<Arc<Update>, RecvError>> {
    let Some(next) = next else { return std::future::pending().await };
    tokio::select! {
        biased;
        received = next.receiver.recv() => Some(received),
        () = listens(&mut next.listening) => None,
    }
}

/// Completes when the execution listens; never when it stopped without.
async fn listens(listening: &mut watch::Receiver<bool>) {
    if listening.wait_for(|listening| *listening).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Completes when the connection's access changes: true; false when the connection is gone.
/// Never without a connection's access.
async fn access_changed(live: &mut Option<LiveAccess>) -> bool {
    match live {
        Some(LiveAccess(receiver)) => receiver.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn member(user: &str) -> Arc<Access> {
        Arc::new(Access::Member { user_id: user.into(), workspaces: vec!["workspace_1".into()], roles: vec![] })
    }

    fn next(text: &str) -> Update {
        Update { payload: Payload::Next(text.into()), codes: Vec::new(), label: None }
    }

    fn text(update: &Update) -> &str {
        match &update.payload {
            Payload::Next(text) => text,
            other => panic!("{other:?}"),
        }
    }

    /// The executions started: the access of each, and what feeds it.
    type Starts = mpsc::UnboundedReceiver<(Arc<Access>, mpsc::Sender<Update>)>;

    /// A hub whose executions are fed by hand: each start hands its sender (and the access
    /// it started with) to the test, and listens at once.
    fn hub(capacity: usize) -> (SubscriptionHub, Start, Starts) {
        let hub = SubscriptionHub::new(EventBus::local(8), capacity);
        let (started, starts) = mpsc::unbounded_channel();
        let start: Start = Arc::new(move |access, Listening(listening)| {
            let (feed, updates) = mpsc::channel::<Update>(64);
            started.send((access, feed)).unwrap();
            listening.send_replace(true);
            stream::unfold((updates, listening), |(mut updates, listening)| async move {
                updates.recv().await.map(|update| (update, (updates, listening)))
            })
            .boxed()
        });
        (hub, start, starts)
    }

    fn operation(variables: serde_json::Value) -> Operation {
        let mut request = async_graphql::Request::new("subscription { x }");
        request.variables = async_graphql::Variables::from_json(variables);
        Operation::of(&request)
    }

    #[tokio::test]
    async fn one_execution_per_operation_and_access_fanned_out_and_forgotten() {
        let (hub, start, mut starts) = hub(8);
        let op = || operation(serde_json::json!({"a": 1, "b": 2}));
        // The same variables in another order are the same operation.
        assert_eq!(op(), operation(serde_json::json!({"b": 2, "a": 1})));
        let mut a = hub.subscribe(op(), member("user_a"), None, start.clone());
        let mut b = hub.subscribe(op(), member("user_a"), None, start.clone());
        let mut other = hub.subscribe(op(), member("user_b"), None, start.clone());
        let (first, feed) = starts.recv().await.unwrap();
        let (second, other_feed) = starts.recv().await.unwrap();
        assert_eq!((first, second), (member("user_a"), member("user_b")));
        assert!(starts.try_recv().is_err(), "two executions");
        assert_eq!((hub.stats().executions(), hub.stats().subscribers()), (2, 3));

        feed.send(next("1")).await.unwrap();
        assert_eq!(text(&a.next().await.unwrap()), "1");
        assert_eq!(text(&b.next().await.unwrap()), "1");
        other_feed.send(next("x")).await.unwrap();
        assert_eq!(text(&other.next().await.unwrap()), "x");

        drop(a);
        assert_eq!(hub.stats().executions(), 2, "b still watches");
        drop((b, other));
        assert_eq!((hub.stats().executions(), hub.stats().subscribers()), (0, 0));
        assert!(hub.inner.executions.lock().unwrap().is_empty());
        // The executions stop.
        feed.closed().await;
        other_feed.closed().await;

        // A final update ends every subscriber and forgets the execution at once.
        let mut c = hub.subscribe(op(), member("user_a"), None, start.clone());
        let (_, feed) = starts.recv().await.unwrap();
        drop(feed);
        assert!(matches!(c.next().await.unwrap().payload, Payload::Complete));
        assert!(c.next().await.is_none());
        assert!(hub.inner.executions.lock().unwrap().is_empty());
        assert_eq!(hub.stats().started(), 3);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_dropped_alone() {
        let (hub, start, mut starts) = hub(2);
        let mut slow = hub.subscribe(operation(serde_json::json!({})), member("user_a"), None, start.clone());
        let mut quick = hub.subscribe(operation(serde_json::json!({})), member("user_a"), None, start.clone());
        let (_, feed) = starts.recv().await.unwrap();
        for i in 0..5 {
            feed.send(next(&i.to_string())).await.unwrap();
            assert_eq!(text(&quick.next().await.unwrap()), i.to_string());
        }
        let dropped = slow.next().await.unwrap();
        assert_eq!(dropped.codes, ["SUBSCRIPTION_LAGGED"]);
        assert!(slow.next().await.is_none());
        feed.send(next("5")).await.unwrap();
        assert_eq!(text(&quick.next().await.unwrap()), "5", "the others go on");
    }

    #[tokio::test]
    async fn a_subscriber_follows_its_connections_access() {
        let (hub, start, mut starts) = hub(8);
        let (access, live) = watch::channel(Some(member("user_a")));
        let mut moving =
            hub.subscribe(operation(serde_json::json!({})), member("user_a"), Some(LiveAccess(live)), start.clone());
        let mut staying = hub.subscribe(operation(serde_json::json!({})), member("user_a"), None, start.clone());
        let (_, old) = starts.recv().await.unwrap();
        old.send(next("1")).await.unwrap();
        assert_eq!(text(&moving.next().await.unwrap()), "1");

        // Another access: the subscriber moves to its execution; a result it sent already is
        // not sent again.
        let changed = Arc::new(Access::Member {
            user_id: "user_a".into(),
            workspaces: vec!["workspace_2".into()],
            roles: vec![],
        });
        access.send_replace(Some(changed.clone()));
        let pending = tokio::spawn(async move { (moving.next().await, moving) });
        let (started_with, new) = starts.recv().await.unwrap();
        assert_eq!(started_with, changed);
        new.send(next("1")).await.unwrap();
        new.send(next("2")).await.unwrap();
        let (update, mut moving) = pending.await.unwrap();
        assert_eq!(text(&update.unwrap()), "2");
        old.send(next("3")).await.unwrap();
        assert_eq!(text(&staying.next().await.unwrap()), "1", "the other subscriber stays");
        assert_eq!(text(&staying.next().await.unwrap()), "3");

        // The credential gone: UNAUTHENTICATED.
        access.send_replace(None);
        assert_eq!(moving.next().await.unwrap().codes, ["UNAUTHENTICATED"]);
        assert!(moving.next().await.is_none());
        drop(staying);
        assert_eq!(hub.stats().executions(), 0);
    }

    #[tokio::test]
    async fn a_move_to_an_access_that_finds_nothing_is_forbidden() {
        let (hub, start, mut starts) = hub(8);
        let (access, live) = watch::channel(Some(member("user_a")));
        let mut moving =
            hub.subscribe(operation(serde_json::json!({})), member("user_a"), Some(LiveAccess(live)), start);
        let (_, _old) = starts.recv().await.unwrap();
        access.send_replace(Some(member("user_b")));
        let pending = tokio::spawn(async move { moving.next().await });
        let (_, new) = starts.recv().await.unwrap();
        let not_found = crate::error::AppError::NotFound("no Job with id `job_1`".into());
        new.send(Update::error(not_found.into())).await.unwrap();
        let ended = pending.await.unwrap().unwrap();
        assert_eq!(ended.codes, ["FORBIDDEN"]);
    }
}
