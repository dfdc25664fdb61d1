//! `tether serve`: logging, binding, the `listening on` line, signals.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::cli::Serve;

pub async fn serve(s: Serve) -> anyhow::Result<()> {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The WebSocket library traces frame payloads, and `auth` frames carry
    // tokens: keep it at info unless RUST_LOG names it explicitly.
    if !std::env::var("RUST_LOG").unwrap_or_default().contains("tungstenite") {
        for directive in ["tungstenite=info", "tokio_tungstenite=info"] {
            filter = filter.add_directive(directive.parse().expect("valid directive"));
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if s.json_logs {
        builder.json().init();
    } else {
        builder.init();
    }
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .with_context(|| format!("cannot bind {}", s.listen))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        let scheme = if s.config.tls.is_some() { "https" } else { "http" };
        writeln!(out, "listening on {scheme}://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, node = %s.config.node_id, data_dir = %s.config.data_dir.display(), "gateway started");
    tether_gateway::run(listener, s.config, shutdown).await?;
    Ok(())
}

/// Registers SIGTERM and SIGINT handlers now (before the `listening on` line,
/// so that a signal sent right after it is never missed) and resolves on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
