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
    /// A statement failed in the client before it was sent (its parameters
    /// could not be encoded): nothing after it was sent, and `ROLLBACK`
    /// was, so nothing of the transaction is written. The error is the
    /// first one in order (a statement before it may have failed first).
    Unsent(tokio_postgres::Error),
}

/// Sends `queued`, then `tail`, without waiting in between, and waits for
/// all their answers: the first queued statement's error if one failed
/// (then `tail`'s own result is that of an aborted transaction), else
/// `tail`'s result. A queued statement that fails before it is sent stops
/// the rest and `tail` from being sent: `ROLLBACK` goes instead, so a
/// `COMMIT` tail never commits the statements around it.
pub(super) async fn pipeline<T>(
    client: &Client,
    queued: &[Queued],
    tail: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<Result<T, tokio_postgres::Error>, Failed> {
    type Sent<'a> = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + 'a>>;
    let mut sent: Vec<Sent<'_>> = queued
        .iter()
        .map(|q| Box::pin(q.send(client)) as Pin<Box<_>>)
        .collect();
    let mut tail = std::pin::pin!(tail);
    // The first poll of each sends its request (answers come in order);
    // one ready at once with an error was not sent. A closed connection
    // sends nothing either, and the server ends its transaction: that is
    // left to the reconnect, which replays the group commit.
    let mut early: Vec<Option<Result<(), tokio_postgres::Error>>> = Vec::new();
    let mut tail_early = None;
    let mut unsent = false;
    std::future::poll_fn(|cx| {
        for f in &mut sent {
            let r = ready(f.as_mut().poll(cx));
            unsent = matches!(&r, Some(Err(e)) if !e.is_closed());
            early.push(r);
            if unsent {
                return Poll::Ready(());
            }
        }
        tail_early = ready(tail.as_mut().poll(cx));
        Poll::Ready(())
    })
    .await;
    let mut first_error = None;
    // Up to the one not sent, when one was not.
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
    if unsent {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    // One not sent is an error: then `tail` is neither sent nor awaited.
    match first_error {
        Some(Failed::Pg(e)) if unsent => Err(Failed::Unsent(e)),
        Some(e) => Err(e),
        None => Ok(match tail_early {
            Some(r) => r,
            None => tail.await,
        }),
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

#[cfg(test)]
#[path = "../../tests/support/postgres.rs"]
mod test_server;

#[cfg(test)]
mod tests {
    use super::test_server::{Postgres, PASSWORD};
    use super::*;

    fn count(pg: &Postgres, db: &str) -> String {
        pg.sql(db, "SELECT count(*) FROM t")
    }

    /// A queued write whose parameter cannot be encoded (an `i64` for an
    /// `integer` column) fails in the client, before it is sent: the
    /// `COMMIT` behind it must not commit the writes around it, and the
    /// connection is left outside any transaction. A real server.
    #[test]
    fn a_write_that_fails_before_it_is_sent_commits_nothing() {
        let pg = Postgres::start();
        let db = pg.new_database();
        pg.sql(&db, "CREATE TABLE t (n integer)");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = format!(
            "host=127.0.0.1 port={} user=postgres password={PASSWORD} dbname={db}",
            pg.port
        );
        let (client, connection) = rt
            .block_on(tokio_postgres::connect(&config, tokio_postgres::NoTls))
            .unwrap();
        rt.spawn(connection);
        let insert = rt
            .block_on(client.prepare("INSERT INTO t (n) VALUES ($1)"))
            .unwrap();
        let write = |v: Param| Queued::Write(insert.clone(), vec![v]);
        let queued = [
            Queued::Begin,
            write(p(1_i32)),
            write(p(2_i64)),
            write(p(3_i32)),
        ];
        let r = rt.block_on(pipeline(&client, &queued, client.batch_execute("COMMIT")));
        assert_eq!(count(&pg, &db), "0", "written around the failed write");
        match r {
            Err(Failed::Unsent(e)) => assert!(e.to_string().contains("serializ"), "{e}"),
            Err(Failed::Pg(e)) => panic!("a database error instead: {e}"),
            Err(Failed::Fence(_)) => panic!("a fence error instead"),
            Ok(r) => panic!("the COMMIT ran: {:?}", r.err()),
        }
        // Outside any transaction now: the next one commits only its own.
        let next = [Queued::Begin, write(p(4_i32))];
        let r = rt.block_on(pipeline(&client, &next, client.batch_execute("COMMIT")));
        assert!(matches!(r, Ok(Ok(()))));
        assert_eq!(count(&pg, &db), "1");
    }
}
