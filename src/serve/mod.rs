//! `runbook serve` (SPEC §12): the runs of the state file, live, in a
//! browser. `routes` (pages and JSON API), `auth` (the token, other
//! origins), `app` (what every handler shares, and the JSON error),
//! `pages` (HTML), `fragment` (the live part of a run page, rendered once
//! per change), `graph` (the SVG), `events` (the server-sent events
//! handler), `hub` (the followed runs, each polled from the store),
//! `adapter` (every read and write of the state, through the engine's own
//! functions).

mod adapter;
mod app;
mod auth;
mod events;
mod fragment;
mod graph;
mod hub;
mod pages;
mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::Ctx;
use crate::error::{exit, Error, Result};

/// The options of `serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen.
    pub listen: String,
    /// A file holding the access token; without it a fresh token is printed.
    pub token_file: Option<PathBuf>,
}

/// The token from `--token-file`: its first line, at least 16 characters.
fn read_token(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read the token file {}", path.display()), e))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < 16 || token.contains(|c: char| c.is_whitespace() || c == ';' || c == '&') {
        return Err(Error::Usage(format!(
            "{}: the token must be one line of at least 16 characters without spaces, `;` or `&` (e.g. `openssl rand -hex 32 > {}`)",
            path.display(),
            path.display()
        )));
    }
    Ok(token)
}

/// The name an approval from the web is recorded under when the page gives none.
fn default_by() -> String {
    format!("{} (web)", crate::engine::user_at_host())
}

/// `runbook serve`: serves until SIGINT/SIGTERM.
pub fn serve(ctx: Ctx, opts: ServeOptions) -> Result<i32> {
    let addr: SocketAddr = opts.listen.parse().map_err(|_| {
        Error::Usage(format!(
            "--listen `{}` is not ADDRESS:PORT (e.g. 127.0.0.1:7070)",
            opts.listen
        ))
    })?;
    if !addr.ip().is_loopback() && opts.token_file.is_none() {
        return Err(Error::Usage(format!(
            "--listen {addr} is not a loopback address: give --token-file FILE too (the token is then not printed), and put a TLS proxy in front (docs/web.md)"
        )));
    }
    let (token, printed) = match &opts.token_file {
        Some(path) => (read_token(path)?, false),
        None => (
            auth::new_token().map_err(|e| Error::io("cannot read /dev/urandom", e))?,
            true,
        ),
    };
    let app = Arc::new(app::App {
        adapter: Arc::new(adapter::Adapter::new(ctx)),
        token: token.clone(),
        default_by: default_by(),
        hub: Arc::new(hub::Hub::default()),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(format!("cannot listen on {addr}"), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read the listening address", e))?;
        let first = if printed {
            format!("http://{local}/?token={token}")
        } else {
            format!("http://{local}/ (the token is in the --token-file)")
        };
        // A closed stdout (the URL read, the reader gone) must not stop the server.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{first}\nserving the runs of {}; Ctrl-C stops",
            app.adapter.state_path().shown()
        );
        let _ = out.flush();
        drop(out);
        let router = routes::router(app);
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
                }
            })
            .await
            .map_err(|e| Error::io("the server stopped", e))?;
        Ok(exit::OK)
    })
}
