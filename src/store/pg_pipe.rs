//! Statements of a transaction sent to PostgreSQL without waiting for each
//! one's answer (SPEC §11): `BEGIN`, the lease's fence and the writes whose
//! answer nothing reads are queued, and go to the server in one pipeline
//! with the next statement whose answer is needed (a read, a count, the
//! `COMMIT`), so a transaction costs about one round trip instead of one
//! per statement. The server still runs them one after the other, in
//! order; the first one that fails is the transaction's error, and the
//! ones after it (the `COMMIT` included) fail or roll back with it.
//! Imports nothing else of the PostgreSQL backend.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

/// A parameter a queued statement owns (it is sent after the caller returned).
pub(super) type Param = Box<dyn ToSql + Sync + Send>;

/// A value as a queued statement's parameter.
pub(super) fn p<T: ToSql + Sync + Send + 'static>(v: T) -> Param {
    Box::new(v)
}

/// The fence (SPEC §11): it locks the lease's row (`FOR KEY SHARE`, until
/// the transaction ends, so a take-over waits for it) and fails, division
/// by zero, unless the lease still has this engine's token, which aborts
/// the transaction: nothing queued after it is written, and the `COMMIT`
/// sent behind it in the same pipeline rolls back.
pub(super) const FENCE: &str = "SELECT 1 / COALESCE((SELECT 1 FROM leases
     WHERE run_id = $1 AND token = $2 AND NOT released FOR KEY SHARE), 0)";

/// The SQLSTATE of the fence failing: the lease was lost.
pub(super) const FENCE_FAILED: &str = "22012";

/// A statement waiting to be sent.
pub(super) enum Queued {
    /// `BEGIN` (simple protocol).
    Begin,
    /// The fence of this run and token.
    Fence(Statement, i64, i64),
    /// A write whose answer nothing reads.
    Write(Statement, Vec<Param>),
}

impl Queued {
    async fn send(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        match self {
            Queued::Begin => client.batch_execute("BEGIN").await,
            Queued::Fence(s, run_id, token) => {
                client.execute(s, &[run_id, token]).await.map(|_| ())
            }
            Queued::Write(s, params) => client
                .execute_raw(s, params.iter().map(|b| &**b as &(dyn ToSql + Sync)))
                .await
                .map(|_| ()),
        }
    }
}

/// Why a pipeline's queued part failed.
pub(super) enum Failed {
    /// The fence: the lease is not held with this token any more.
    Fence(i64),
    /// Another statement, with the database's error.
    Pg(tokio_postgres::Error),
}

/// Sends `queued`, then `tail`, without waiting in between, and waits for
/// all their answers: the first queued statement's error if one failed
/// (then `tail`'s own result is that of an aborted transaction), else
/// `tail`'s result.
pub(super) async fn pipeline<T>(
    client: &Client,
    queued: &[Queued],
    tail: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<Result<T, tokio_postgres::Error>, Failed> {
    let mut sent: Vec<Pin<Box<dyn Future<Output = _> + '_>>> = queued
        .iter()
        .map(|q| Box::pin(q.send(client)) as Pin<Box<_>>)
        .collect();
    let mut tail = std::pin::pin!(tail);
    // The first poll of each sends its request; answers come in order.
    let mut early: Vec<Option<Result<(), tokio_postgres::Error>>> = Vec::new();
    let mut tail_early = None;
    std::future::poll_fn(|cx| {
        early = sent
            .iter_mut()
            .map(|f| ready(f.as_mut().poll(cx)))
            .collect();
        tail_early = ready(tail.as_mut().poll(cx));
        Poll::Ready(())
    })
    .await;
    let mut first_error = None;
    for ((f, early), q) in sent.iter_mut().zip(early).zip(queued) {
        let result = match early {
            Some(r) => r,
            None => f.await,
        };
        if let (Err(e), None) = (result, &first_error) {
            first_error = Some(match q {
                Queued::Fence(_, run_id, _) if is_fence(&e) => Failed::Fence(*run_id),
                _ => Failed::Pg(e),
            });
        }
    }
    let tail = match tail_early {
        Some(r) => r,
        None => tail.await,
    };
    match first_error {
        Some(e) => Err(e),
        None => Ok(tail),
    }
}

fn ready<T>(p: Poll<T>) -> Option<T> {
    match p {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

fn is_fence(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.code().code() == FENCE_FAILED)
}
