//! The signals that stop a command once its run has begun.

use std::task::{Context, Poll};

/// SIGINT and SIGTERM, listened to from the start of the command (once
/// listened to, they no longer end the process by themselves): one that
/// comes while secrets are looked up, or a notification is sent, still
/// stops the command.
pub(super) struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Starts listening (inside the runtime).
    pub(super) fn new() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Whether one arrived since the last look (and forgets it).
    pub(super) async fn take(&mut self) -> bool {
        fn ready(s: &mut Option<tokio::signal::unix::Signal>, cx: &mut Context<'_>) -> bool {
            s.as_mut().is_some_and(|s| s.poll_recv(cx).is_ready())
        }
        std::future::poll_fn(|cx| {
            let int = ready(&mut self.int, cx);
            let term = ready(&mut self.term, cx);
            Poll::Ready(int || term)
        })
        .await
    }

    /// Completes when either arrives (never, when neither could be set up).
    pub(super) async fn received(&mut self) {
        async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = one(&mut self.int) => {}
            _ = one(&mut self.term) => {}
        }
    }
}
