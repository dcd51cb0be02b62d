//! Executors: one per action. They know nothing of the DAG or the store;
//! they run one attempt and report lines and an outcome.

pub mod connection;
pub mod forward;
pub mod host;
pub mod http;
pub mod local;
pub mod mirror;
pub mod preview;
pub mod quote;
pub mod shell;
pub mod spool;
pub mod ssh;
pub mod upload;

use tokio::sync::mpsc::UnboundedSender;

/// Which stream a captured line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// An error and its sources, joined with `: ` on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Completes after `timeout`, or never when there is none.
pub async fn deadline(timeout: Option<std::time::Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

/// Where an executor sends the lines it captures.
pub type LineSink = UnboundedSender<(Stream, String)>;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The work was done.
    Succeeded {
        /// Exit code of the command, when there was one.
        exit_code: Option<i32>,
        /// A note for the reason column (e.g. "unchanged").
        note: Option<String>,
    },
    /// The work failed.
    Failed {
        /// Exit code of the command, when there was one.
        exit_code: Option<i32>,
        /// Why, in one line.
        reason: String,
    },
    /// The engine was stopped while it ran.
    Interrupted,
}

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::action::RenderedHttp;

/// Everything a step needs to act: the run's SSH connections, its HTTP
/// client, and the folder local commands run in.
pub struct Executors {
    /// SSH master connections by host.
    pub ssh: ssh::SshPool,
    /// The HTTP client.
    pub http: reqwest::Client,
    /// Working folder of local commands (the runbook's folder).
    pub dir: PathBuf,
}

impl Executors {
    /// Runs a shell script here (`host` None) or on a host.
    pub async fn command(
        &self,
        host: Option<&str>,
        script: &str,
        env: &[(String, String)],
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        sink: &LineSink,
    ) -> Outcome {
        match host {
            None => {
                let cmd = local::LocalCommand {
                    script,
                    env,
                    dir: &self.dir,
                    timeout,
                };
                local::run(cmd, cancel, sink).await
            }
            Some(h) => self.ssh.run(h, script, env, timeout, cancel, sink).await,
        }
    }

    /// Puts files in place here or on a host; with `sync` (the dest of a
    /// `delete: true` upload) what is under it and not among `files` goes.
    /// On a host, `timeout` bounds the upload and its reconnections.
    pub async fn upload(
        &self,
        host: Option<&str>,
        files: &[upload::FileToWrite],
        mode: Option<u32>,
        sync: Option<upload::Sync<'_>>,
        timeout: Option<Duration>,
        sink: &LineSink,
    ) -> Outcome {
        match host {
            None => upload::local(files, mode, sync, &self.dir, sink),
            Some(host) => {
                let up = upload::Remote {
                    host,
                    files,
                    mode,
                    sync,
                    timeout,
                };
                upload::remote(&self.ssh, up, sink).await
            }
        }
    }

    /// Sends an HTTP request, through the `via` host's tunnel when set.
    pub async fn http(
        &self,
        req: &RenderedHttp,
        timeout: Option<Duration>,
        sink: &LineSink,
    ) -> Outcome {
        if let Some(problem) = crate::action::url_problem(&req.url) {
            return Outcome::Failed {
                exit_code: None,
                reason: format!("{problem}; fix the step's `http.url`"),
            };
        }
        let url = match &req.via {
            None => req.url.clone(),
            Some(host) => match self.tunnel_url(host, &req.url).await {
                Ok(url) => url,
                Err(reason) => {
                    return Outcome::Failed {
                        exit_code: None,
                        reason,
                    }
                }
            },
        };
        http::run(&self.http, req, &url, timeout, sink).await
    }

    /// The URL rewritten to a local port forwarded over `host`'s connection.
    pub async fn tunnel_url(&self, host: &str, url: &str) -> Result<String, String> {
        let mut parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL {url}: {e}"))?;
        let target = parsed
            .host_str()
            .ok_or_else(|| format!("URL {url} has no host"))?
            .to_string();
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| format!("URL {url} has no port"))?;
        let local = self
            .ssh
            .forward(host, &target, port)
            .await
            .map_err(|e| e.0)?;
        parsed
            .set_host(Some("127.0.0.1"))
            .map_err(|e| e.to_string())?;
        parsed
            .set_port(Some(local))
            .map_err(|_| "cannot set the port".to_string())?;
        Ok(parsed.to_string())
    }
}
