//! Wiring: [`Application::build`] connects, migrates and binds; `main` and the tests run
//! the same code.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{from_fn, Logger};
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::batch::Batcher;
use crate::config::Config;
use crate::db::{self, PgPool};
use crate::error::ApiError;
use crate::events::InboxRead;
use crate::hub::Hub;
use crate::messages::DirectSend;
use crate::metrics::{self, Metrics};
use crate::presence::{self, ServerIdentity};
use crate::{auth, blobs, error, events, messages, routes, sessions, wakeup};
use fastchat_protocol::wire::{Event, MessageSent};

/// What every handler can reach.
pub struct AppState {
    pub config: Config,
    pub pool: PgPool,
    pub metrics: Metrics,
    pub hub: Arc<Hub>,
    /// A real bcrypt hash to verify against when a login names an unknown user.
    pub dummy_password_hash: String,
    /// The database work every request does, coalesced (see [`batch`]).
    pub session_lookups: Batcher<Vec<u8>, auth::SessionLookup>,
    pub direct_sends: Batcher<DirectSend, Result<MessageSent, ApiError>>,
    pub inbox_reads: Batcher<InboxRead, Result<Vec<Event>, ApiError>>,
}

/// Requests served together at most; big enough to amortise a round trip, small
/// enough to keep one batch's transaction short.
const BATCH_MAX: usize = 256;
/// A group message wakes every member's stream at once: their reads fit in one batch.
const READ_BATCH_MAX: usize = 1024;
/// Batches of one kind in flight at once on one server.
const BATCH_WORKERS: usize = 2;

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    identity: ServerIdentity,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = {
            let (url, size) = (config.database_url.clone(), config.db_pool_size);
            tokio::task::spawn_blocking(move || {
                let pool = db::build_pool(&url, size)?;
                db::run_migrations(&pool)?;
                anyhow::Ok(pool)
            })
            .await??
        };
        let cost = config.bcrypt_cost;
        let dummy_password_hash =
            tokio::task::spawn_blocking(move || bcrypt::hash("not a real password", cost))
                .await??;

        let listener = TcpListener::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        let port = listener.local_addr()?.port();
        let workers = config.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        });
        let shutdown_timeout = config.shutdown_timeout_secs;
        let json_limit = config.json_body_max_bytes;
        let identity = ServerIdentity {
            id: uuid::Uuid::new_v4(),
            address: config
                .advertise_url
                .clone()
                .unwrap_or_else(|| format!("http://{}:{port}", config.listen.ip())),
        };
        let (presence_tx, presence_rx) = tokio::sync::mpsc::unbounded_channel();
        let hub = Hub::new(presence_tx);
        let metrics = Metrics::new()?;
        let sizes = |kind: &str| metrics.batch_sizes.with_label_values(&[kind]);
        let state = web::Data::new(AppState {
            config,
            hub: Arc::clone(&hub),
            dummy_password_hash,
            session_lookups: Batcher::start(
                "session-lookups",
                BATCH_WORKERS,
                BATCH_MAX,
                sizes("session_lookups"),
                {
                    let pool = pool.clone();
                    move |hashes| auth::find_sessions(&pool, hashes)
                },
            )?,
            direct_sends: Batcher::start(
                "direct-sends",
                BATCH_WORKERS,
                messages::DIRECT_BATCH_MAX,
                sizes("direct_sends"),
                {
                    let pool = pool.clone();
                    move |sends| messages::store_direct_batch(&pool, sends)
                },
            )?,
            inbox_reads: Batcher::start(
                "inbox-reads",
                BATCH_WORKERS,
                READ_BATCH_MAX,
                sizes("inbox_reads"),
                {
                    let pool = pool.clone();
                    move |reads| events::read_inboxes(&pool, reads)
                },
            )?,
            pool,
            metrics,
        });
        presence::register_server(&state.pool, &identity).await?;
        actix_web::rt::spawn(presence::run(
            state.pool.clone(),
            Arc::clone(&hub),
            identity.clone(),
            presence_rx,
        ));
        actix_web::rt::spawn(wakeup::listen_forever(
            state.config.database_url.clone(),
            hub,
        ));
        spawn_purger(state.clone());
        let app_state = state.clone();

        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(json_limit)
                        .error_handler(error::json_error),
                )
                .app_data(web::QueryConfig::default().error_handler(error::query_error))
                .app_data(web::PathConfig::default().error_handler(error::path_error))
                .wrap(from_fn(metrics::track))
                .wrap(Logger::new("%r %s %Dms").log_target("fastchat_api::http"))
                .configure(routes::configure)
                .default_service(web::to(error::not_found))
        })
        .workers(workers)
        .shutdown_timeout(shutdown_timeout)
        .disable_signals()
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            state,
            identity,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT; then ends the event streams (clients resume
    /// elsewhere), finishes in-flight requests, deregisters, and returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            server,
            state,
            identity,
            ..
        } = self;
        let handle = server.handle();
        actix_web::rt::spawn(stop_on_signal(handle, Arc::clone(&state.hub)));
        server.await?;
        if let Err(e) = presence::deregister_server(&state.pool, &identity).await {
            tracing::warn!(error = %e, "deregistering this server");
        }
        Ok(())
    }
}

async fn stop_on_signal(handle: ServerHandle, hub: Arc<Hub>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop the server with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
    hub.close_all();
    handle.stop(true).await;
}

fn spawn_purger(state: web::Data<AppState>) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(state.config.purge_interval_secs));
        loop {
            tick.tick().await;
            let window = state.config.login_window_secs;
            let blob_ttl = state.config.blob_unreferenced_ttl_secs;
            match db::run(&state.pool, move |conn| {
                Ok(sessions::purge_expired(conn, window)?
                    + blobs::purge_unreferenced(conn, blob_ttl)?)
            })
            .await
            {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "purged expired sessions and unused blobs"),
                Err(e) => tracing::warn!(error = %e, "purging expired sessions and unused blobs"),
            }
        }
    });
}
