//! `ferrocd`: start one etcd-compatible member with etcd's flags.

use std::process::ExitCode;

use ferrocd::config::Config;
use ferrocd::server::EtcdServer;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cfg = Config::from_env_and_args();
    let filter = EnvFilter::try_from_env("FERROCD_LOG")
        .unwrap_or_else(|_| EnvFilter::new(cfg.log_level.tracing_filter()));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferrocd-io")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrocd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ferrocd: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: Config) -> Result<(), ferrocd::error::ServerError> {
    // Bind first: a port in use must fail before anything is written to disk.
    let listeners = ferrocd::api::bind_client_listeners(&cfg).await?;
    let server = EtcdServer::start(&cfg).await?;
    tokio::select! {
        _ = server.wait_ready() => {}
        _ = shutdown_signal() => {
            tracing::info!("shutdown requested before the member was ready");
            let srv = server.clone();
            let _ = tokio::task::spawn_blocking(move || srv.stop()).await;
            return Ok(());
        }
    }
    tracing::info!(
        name = %cfg.name,
        member_id = format!("{:x}", server.member_id),
        cluster_id = format!("{:x}", server.cluster_id),
        data_dir = %cfg.data_dir.display(),
        "ferrocd member started"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for l in listeners {
        let mut rx = stop_rx.clone();
        let shutdown = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let srv = server.clone();
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            ferrocd::api::serve(l, srv, &cfg, shutdown).await
        }));
    }
    shutdown_signal().await;
    tracing::info!("received shutdown signal; stopping");
    let _ = stop_tx.send(true);
    // Graceful shutdown waits for clients to hang up; like etcd, give them a moment and then
    // close the connections ourselves.
    for mut t in tasks {
        match tokio::time::timeout(std::time::Duration::from_secs(2), &mut t).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "listener ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "listener task failed"),
            Ok(Ok(Ok(()))) => {}
            Err(_) => {
                tracing::info!("clients still connected after 2s; closing their connections");
                t.abort();
            }
        }
    }
    let srv = server.clone();
    let _ = tokio::task::spawn_blocking(move || srv.stop()).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
