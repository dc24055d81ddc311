//! One page's session on a database: it either leads (holds the Web Lock,
//! owns the engine, runs the sync loop) or follows (sends its commands to
//! the leader over the tab channel and hears the leader's events). When the
//! leader closes, a follower takes the lock and opens the engine.

use super::env::BrowserEnv;
use super::listeners::Listeners;
use super::navigator::{self, DomListeners};
use super::store::IdbStore;
use super::sync_loop::BrowserHost;
use super::tabs::{self, Leadership, Rpc, TabChannel, TabMessage};
use super::transport::FetchTransport;
use crate::client::{execute, ClientError as ApiError, Command};
use crate::engine::{Engine, EngineConfig};
use crate::error_code::ErrorCode;
use crate::status::Filter;
use futures::channel::mpsc;
use futures::future::Either;
use futures::StreamExt;
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen_futures::spawn_local;

/// The engine as the browser runs it.
pub(crate) type WebEngine = Engine<IdbStore, FetchTransport, BrowserEnv>;

/// How long a follower waits for the leader's answer.
const LEADER_TIMEOUT_MS: u32 = 15_000;

/// What a session is opened with.
#[derive(Debug)]
pub(crate) struct SessionConfig {
    pub db_name: String,
    pub store: IdbStore,
    pub transport: FetchTransport,
    pub engine: EngineConfig,
    /// Run by each tab that comes to lead; a step already applied (the
    /// store's schema version says so) is not run again.
    pub migrations: Vec<crate::migrate::FieldMigration>,
    pub auto_sync: bool,
    pub pull_interval_ms: u32,
    /// The leader keeps the live channel open (`GET /v1/events`).
    pub live: bool,
    pub tab_id: String,
    /// Who this database belongs to, as settled at open.
    pub identity: Identity,
}

/// The terminal a database belongs to, for `TideSync.identity()`.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Identity {
    pub terminal_id: String,
    pub branch_id: String,
    /// The API key is kept in the (encrypted) store.
    pub key_stored: bool,
}

#[derive(Debug)]
pub(crate) struct Session {
    config: SessionConfig,
    engine: RefCell<Option<Rc<WebEngine>>>,
    channel: RefCell<Option<TabChannel>>,
    leadership: RefCell<Option<Leadership>>,
    rpc: Rpc,
    pub listeners: Listeners,
    wake: RefCell<Option<mpsc::UnboundedSender<()>>>,
    closed: Cell<bool>,
    dom: RefCell<DomListeners>,
    /// This tab's anomaly scorer (`setScorer`), handed to the engine when
    /// this tab leads.
    scorer: RefCell<TabScorer>,
}

/// A tab's scorer (a newtype: the trait object has no `Debug`).
#[derive(Default, Clone)]
struct TabScorer(Option<std::sync::Arc<dyn crate::scoring::Scorer>>);

impl std::fmt::Debug for TabScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TabScorer")
            .field(&self.0.as_ref().map(|s| s.model().to_string()))
            .finish()
    }
}

impl Session {
    /// Joins the tabs of the database: leads at once if no other tab does,
    /// else follows and campaigns for the lock.
    pub async fn start(config: SessionConfig) -> Result<Rc<Session>, ApiError> {
        let db_name = config.db_name.clone();
        let session = Rc::new(Session {
            config,
            engine: RefCell::new(None),
            channel: RefCell::new(None),
            leadership: RefCell::new(None),
            rpc: Rpc::default(),
            listeners: Listeners::default(),
            wake: RefCell::new(None),
            closed: Cell::new(false),
            dom: RefCell::new(DomListeners::default()),
            scorer: RefCell::new(TabScorer::default()),
        });
        let weak = Rc::downgrade(&session);
        *session.channel.borrow_mut() =
            TabChannel::join(&format!("tidesync:{db_name}"), move |m| {
                if let Some(s) = weak.upgrade() {
                    s.on_tab_message(m);
                }
            });
        let lock = format!("tidesync-leader:{db_name}");
        if let Some(l) = tabs::try_lead(&lock).await {
            *session.leadership.borrow_mut() = Some(l);
            if let Err(e) = session.lead().await {
                session.shutdown();
                return Err(e);
            }
        } else {
            let weak = Rc::downgrade(&session);
            let l = tabs::campaign(&lock, move || {
                if let Some(s) = weak.upgrade() {
                    spawn_local(async move {
                        if let Err(e) = s.lead().await {
                            web_sys::console::error_1(
                                &format!("tidesync: taking the lead failed: {}", e.message).into(),
                            );
                        }
                    });
                }
            });
            *session.leadership.borrow_mut() = Some(l);
        }
        session.watch_network();
        Ok(session)
    }

    /// The database name.
    pub fn db_name(&self) -> &str {
        &self.config.db_name
    }

    /// Who the database belongs to.
    pub fn identity(&self) -> &Identity {
        &self.config.identity
    }

    /// This tab runs the engine.
    pub fn is_leader(&self) -> bool {
        self.engine.borrow().is_some()
    }

    /// Runs a command: here if this tab leads, else in the leading tab.
    pub async fn call(self: &Rc<Self>, command: Command) -> Result<Value, ApiError> {
        if self.closed.get() {
            return Err(ApiError::new(
                ErrorCode::InvalidState,
                "this TideSync was closed",
            ));
        }
        let engine = self.engine.borrow().clone();
        if let Some(engine) = engine {
            return self.run_here(&engine, command).await;
        }
        let (id, answer) = self.rpc.start();
        self.post(&TabMessage::Req {
            id,
            from: self.config.tab_id.clone(),
            command,
        });
        let timeout = gloo_timers::future::TimeoutFuture::new(LEADER_TIMEOUT_MS);
        match futures::future::select(answer, timeout).await {
            Either::Left((r, _)) => r.unwrap_or_else(|_| {
                Err(ApiError::new(
                    ErrorCode::LeaderUnavailable,
                    "the leading tab went away",
                ))
            }),
            Either::Right(_) => {
                self.rpc.forget(id);
                Err(ApiError::new(
                    ErrorCode::LeaderUnavailable,
                    "no tab answered as the leader",
                ))
            }
        }
    }

    async fn run_here(&self, engine: &WebEngine, command: Command) -> Result<Value, ApiError> {
        let wakes = command.wakes_sync();
        if matches!(command, Command::SyncNow) {
            self.before_sync_now(engine).await;
        }
        let result = execute(engine, command).await;
        if wakes {
            self.wake_sync();
        }
        result
    }

    /// An explicit `syncNow()` while sync is paused on an error the app may
    /// have fixed: the server unreachable (CORS, DNS, …) is tried again at
    /// once; refused credentials are asked of the `credentials` callback
    /// again, and sync resumes at once if it gives another key.
    async fn before_sync_now(&self, engine: &WebEngine) {
        let code = engine.status().await.last_error.map(|(c, _)| c);
        let resume = match code {
            Some(ErrorCode::SyncUnreachable) => true,
            Some(ErrorCode::SyncUnauthorized) => {
                self.config.transport.refresh_key().await.unwrap_or(false)
            }
            _ => false,
        };
        if resume {
            engine.credentials_changed().await;
        }
    }

    fn post(&self, m: &TabMessage) {
        if let (Some(c), Ok(s)) = (self.channel.borrow().as_ref(), serde_json::to_string(m)) {
            c.post(&s);
        }
    }

    fn on_tab_message(self: &Rc<Self>, text: String) {
        let Ok(m) = serde_json::from_str::<TabMessage>(&text) else {
            return;
        };
        match m {
            TabMessage::Req { id, from, command } => {
                let Some(engine) = self.engine.borrow().clone() else {
                    return;
                };
                let me = self.clone();
                spawn_local(async move {
                    let result = me.run_here(&engine, command).await;
                    me.post(&TabMessage::Res {
                        id,
                        to: from,
                        result,
                    });
                });
            }
            TabMessage::Res { id, to, result } if to == self.config.tab_id => {
                self.rpc.answer(id, result)
            }
            TabMessage::Ev { event } if !self.is_leader() => self.listeners.dispatch(&event),
            _ => {}
        }
    }

    fn wake_sync(&self) {
        if let Some(w) = self.wake.borrow().as_ref() {
            let _ = w.unbounded_send(());
        }
    }

    /// Sets this tab's anomaly scorer (none: writes are not scored); the
    /// engine uses it while this tab leads.
    pub fn set_scorer(&self, scorer: Option<std::sync::Arc<dyn crate::scoring::Scorer>>) {
        if let Some(engine) = self.engine.borrow().as_ref() {
            engine.set_scorer(scorer.clone());
        }
        *self.scorer.borrow_mut() = TabScorer(scorer);
    }

    /// This tab now leads: open the engine, forward its events, sync.
    async fn lead(self: &Rc<Self>) -> Result<(), ApiError> {
        if self.closed.get() {
            return Ok(());
        }
        let c = &self.config;
        let engine = Engine::open_with_migrations(
            c.store.clone(),
            c.transport.clone(),
            BrowserEnv,
            c.engine.clone(),
            crate::migrate::FieldMigration::boxed(c.migrations.clone()),
        )
        .await?;
        engine.set_scorer(self.scorer.borrow().0.clone());
        let engine = Rc::new(engine);
        let mut events = engine.subscribe(Filter::All);
        *self.engine.borrow_mut() = Some(engine.clone());
        let weak = Rc::downgrade(self);
        spawn_local(async move {
            while let Some(ev) = events.next().await {
                let Some(me) = weak.upgrade() else { break };
                me.listeners.dispatch(&ev);
                me.post(&TabMessage::Ev { event: ev });
            }
        });
        engine.set_online(navigator::online()).await;
        if let Some(hint) = navigator::connection_hint() {
            engine.set_connection_hint(hint).await;
        }
        if c.auto_sync {
            let (tx, rx) = mpsc::unbounded();
            *self.wake.borrow_mut() = Some(tx);
            let weak = Rc::downgrade(self);
            let alive = move || weak.upgrade().is_some_and(|s| !s.closed.get());
            let host = BrowserHost {
                transport: c.transport.clone(),
            };
            let interval = u64::from(c.pull_interval_ms);
            let live = c.live;
            spawn_local(async move {
                // The channel is the transport's (a streamed fetch); what a
                // poke does is the core scheduler's.
                let channel = live.then_some(&host.transport);
                crate::client::scheduler::run_live(&engine, &host, channel, rx, interval, alive)
                    .await;
            });
        }
        Ok(())
    }

    /// Network and connection-quality signals, for the leader's engine.
    fn watch_network(self: &Rc<Self>) {
        let mut dom = self.dom.borrow_mut();
        let global = js_sys::global();
        for (ev, online) in [("online", true), ("offline", false)] {
            let weak = Rc::downgrade(self);
            dom.listen(global.clone().into(), ev, move |_| {
                let Some(s) = weak.upgrade() else { return };
                let engine = s.engine.borrow().clone();
                let Some(engine) = engine else { return };
                spawn_local(async move {
                    engine.set_online(online).await;
                    if online {
                        s.wake_sync();
                    }
                });
            });
        }
        if let Some(c) = navigator::connection() {
            let weak = Rc::downgrade(self);
            dom.listen(c, "change", move |_| {
                let (Some(s), Some(hint)) = (weak.upgrade(), navigator::connection_hint()) else {
                    return;
                };
                let engine = s.engine.borrow().clone();
                if let Some(engine) = engine {
                    spawn_local(async move { engine.set_connection_hint(hint).await });
                }
            });
        }
    }

    /// Closes this tab's session; another tab takes over the sync.
    pub fn shutdown(&self) {
        if self.closed.replace(true) {
            return;
        }
        self.dom.borrow_mut().remove_all();
        self.wake.borrow_mut().take();
        self.engine.borrow_mut().take();
        if let Some(c) = self.channel.borrow_mut().take() {
            c.close();
        }
        if let Some(l) = self.leadership.borrow_mut().take() {
            l.release();
        }
        self.rpc
            .fail_all(ApiError::new(ErrorCode::InvalidState, "closed"));
        self.listeners.clear();
        self.config.store.close();
    }
}
