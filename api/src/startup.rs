//! Wiring: [`Application::build`] connects, migrates and binds; `main` and the tests run
//! the same code.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Logger, Next};
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::batch::BatchMetrics;
use crate::config::Config;
use crate::db;
use crate::handlers::{auth, problem};
use crate::live::hub::Hub;
use crate::live::presence::Presence;
use crate::live::stalls::{remember_socket, StallWatch};
use crate::live::{self, wakeup};
use crate::metrics::Metrics;
use crate::routes;
use crate::state::AppState;
use crate::store::servers::{self, ServerIdentity};
use crate::store::{blobs, group_pushes, inbox, messages, sessions};
use crate::wakeups;

pub struct Application {
    port: u16,
    admin_port: u16,
    server: Server,
    admin: Server,
    state: web::Data<AppState>,
    identity: ServerIdentity,
    presence: Presence,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.stream_stall_secs > config.sse_keepalive_secs,
            "FASTCHAT_STREAM_STALL_SECS must be more than FASTCHAT_SSE_KEEPALIVE_SECS: \
             a healthy idle stream takes a keep-alive that often"
        );
        let (presence_tx, presence_rx) = tokio::sync::mpsc::unbounded_channel();
        let (group_messages_tx, group_messages_rx) = tokio::sync::mpsc::unbounded_channel();
        let hub = Hub::new(presence_tx, group_messages_tx);
        // Before the pool: its connections are told whether to notify.
        if let Some(url) = &config.nats_url {
            let bus = wakeup::nats::connect(url, Arc::clone(&hub)).await?;
            wakeups::install(Box::new(bus))?;
        }
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
        let admin_listener = TcpListener::bind(config.admin_listen)
            .with_context(|| format!("binding {}", config.admin_listen))?;
        let admin_port = admin_listener.local_addr()?.port();
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
            admin_address: config
                .advertise_admin_url
                .clone()
                .unwrap_or_else(|| format!("http://{}:{admin_port}", config.admin_listen.ip())),
        };
        let stalls = StallWatch::new();
        let stall_limit = Duration::from_secs(config.stream_stall_secs);
        let metrics = Arc::new(Metrics::new()?);
        let observed = |kind: &str| BatchMetrics {
            sizes: metrics.batch_sizes.with_label_values(&[kind]),
            waits: metrics.batch_waits.with_label_values(&[kind]),
            serving: metrics.batch_serving.with_label_values(&[kind]),
        };
        let group_pushes = group_pushes::batcher(pool.clone(), observed("group_pushes"))?;
        let state = web::Data::new(AppState {
            session_lookups: sessions::lookup_batcher(pool.clone(), observed("session_lookups"))?,
            direct_sends: messages::direct_send_batcher(
                pool.clone(),
                usize::from(config.send_workers),
                observed("direct_sends"),
            )?,
            group_sends: messages::group_send_batcher(
                pool.clone(),
                usize::from(config.send_workers),
                observed("group_sends"),
                live::group_pushes::LocalPushes(Arc::clone(&hub)),
            )?,
            inbox_reads: inbox::read_batcher(pool.clone(), observed("inbox_reads"))?,
            config,
            hub: Arc::clone(&hub),
            stalls: Arc::clone(&stalls),
            dummy_password_hash,
            pool,
            metrics,
        });
        {
            let me = identity.clone();
            db::run(&state.pool, move |conn| {
                Ok(servers::register(conn, &me, &[])?)
            })
            .await?;
        }
        let presence = Presence::spawn(
            state.pool.clone(),
            Arc::clone(&hub),
            identity.clone(),
            presence_rx,
        );
        actix_web::rt::spawn(live::sessions::run(state.pool.clone(), Arc::clone(&hub)));
        actix_web::rt::spawn(live::group_pushes::run(
            group_messages_rx,
            group_pushes,
            Arc::clone(&hub),
        ));
        actix_web::rt::spawn(stalls.run(stall_limit));
        actix_web::rt::spawn(wakeup::postgres::listen_forever(
            state.config.database_url.clone(),
            hub,
        ));
        spawn_purger(state.clone());
        actix_web::rt::spawn(release_free_memory_forever());
        let app_state = state.clone();

        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(json_limit)
                        .error_handler(problem::json_error),
                )
                .app_data(web::QueryConfig::default().error_handler(problem::query_error))
                .app_data(web::PathConfig::default().error_handler(problem::path_error))
                .wrap(from_fn(auth::resolve_session))
                .wrap(from_fn(count_request))
                .wrap(Logger::new("%r %s %Dms").log_target("fastchat_api::http"))
                .configure(routes::configure)
                .default_service(web::to(problem::not_found))
        })
        .on_connect(remember_socket)
        .workers(workers)
        .shutdown_timeout(shutdown_timeout)
        .disable_signals()
        .listen(listener)?
        .run();
        // A thread of its own: it answers probes however busy the public workers are,
        // and not at all when the process is stopped, which is what tells the two apart.
        let admin_state = state.clone();
        let admin = HttpServer::new(move || {
            App::new()
                .app_data(admin_state.clone())
                .configure(routes::configure_admin)
                .default_service(web::to(problem::not_found))
        })
        .workers(1)
        .shutdown_timeout(1)
        .disable_signals()
        .listen(admin_listener)?
        .run();
        Ok(Self {
            port,
            admin_port,
            server,
            admin,
            state,
            identity,
            presence,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Serves until SIGTERM or SIGINT; then ends the event streams (clients resume
    /// elsewhere), finishes in-flight requests, deregisters, and returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            server,
            admin,
            state,
            identity,
            presence,
            ..
        } = self;
        let handle = server.handle();
        let admin_handle = admin.handle();
        actix_web::rt::spawn(stop_on_signal(handle, Arc::clone(&state.hub)));
        let admin = actix_web::rt::spawn(admin);
        server.await?;
        admin_handle.stop(true).await;
        let _ = admin.await;
        presence.stop().await;
        let result = db::run(&state.pool, move |conn| {
            Ok(servers::deregister(conn, &identity)?)
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "deregistering this server");
        }
        Ok(())
    }
}

/// Counts every answered request by route pattern, status and latency.
async fn count_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let response = next.call(req).await?;
    if let Some(state) = state {
        let route = response
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        state.metrics.observe_request(
            &method,
            &route,
            response.status().as_u16(),
            started.elapsed(),
        );
    }
    Ok(response)
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

/// Hands memory freed after a burst (large messages, streams that were cut) back to the
/// system every few seconds: glibc's allocator keeps it in its arenas otherwise, and a
/// server's resident size would stay at its peak.
async fn release_free_memory_forever() {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only walks the allocator's own free lists.
        unsafe {
            libc::malloc_trim(0);
        }
    }
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
