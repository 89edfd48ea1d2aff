//! `hitsave`: the HitSave API server.
//!
//! Settings come from the environment and secrets from files (see `config`). It serves until
//! SIGTERM or SIGINT, then stops accepting connections, lets in-flight requests finish within
//! the grace period and closes the database pool, so a deploy can swap it without dropping
//! requests.

mod auth;
mod build_info;
mod config;
mod error;
mod healthcheck;
mod routes;

use std::process::ExitCode;

use std::sync::Arc;

use anyhow::Context;
use hitsave_db::Db;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::build_info::BUILD;
use crate::config::Config;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub sessions: Arc<auth::Sessions>,
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck::run();
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hitsave: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_json);
    let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let db = config.db.lazy_pool();
    let sessions = auth::Sessions::new(
        config.jwt_secret.expose(),
        config
            .jwt_previous
            .as_ref()
            .map(|(secret, until)| (secret.expose(), *until)),
        config.session_lifetime,
    );
    let state = AppState {
        db: db.clone(),
        sessions: Arc::new(sessions),
    };
    let listener = TcpListener::bind((config.host, config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        database = %config.db.describe(),
        version = BUILD.version,
        commit = %BUILD.commit,
        release = %BUILD.release,
        "hitsave listening"
    );

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = axum::serve(listener, routes::router(state)).with_graceful_shutdown(async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    let mut server = tokio::spawn(server.into_future());

    tokio::select! {
        result = &mut server => {
            result.context("server task")?.context("server failed")?;
            anyhow::bail!("server stopped without a shutdown signal");
        }
        signal = shutdown_signal() => {
            tracing::info!(
                signal,
                grace_secs = config.shutdown_grace.as_secs(),
                "shutting down: no new connections, finishing in-flight requests"
            );
        }
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(config.shutdown_grace, &mut server).await {
        Ok(result) => {
            result.context("server task")?.context("server failed")?;
            db.pool().close().await;
        }
        Err(_) => {
            // Requests still running hold pooled connections, so closing the pool would wait
            // for them; leaving `serve` drops the runtime, which cuts them off and closes them.
            server.abort();
            tracing::warn!("grace period over: cutting off the requests still running");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves with the name of the first SIGTERM or SIGINT.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
