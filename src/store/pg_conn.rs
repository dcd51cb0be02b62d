//! The PostgreSQL connection as its thread owns it (SPEC §11): statements
//! prepared once, transactions, the lease's fence checked at the start of
//! every transaction, and a lost connection opened again within
//! `RUNBOOK_DB_RETRY` with the open group commit's writes replayed, so no
//! commit is lost. A transaction's `BEGIN`, fence and plain writes wait in
//! a queue and go with the next statement whose answer is needed, in one
//! pipeline (`pg_pipe`). Imports nothing else of the PostgreSQL backend
//! but that.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use super::pg_pipe::{self as pipe, Failed, Param, Queued};
use super::pgurl::{PgUrl, SslMode};
use crate::error::Error;

pub(super) type PgError = tokio_postgres::Error;

/// What a job's SQL returns: a database error, or the run's own reason.
pub(super) enum Fail {
    /// From PostgreSQL.
    Pg(PgError),
    /// A user-facing error made inside the job (a lock held, a lease lost).
    Runbook(Error),
}

impl From<PgError> for Fail {
    fn from(e: PgError) -> Self {
        Fail::Pg(e)
    }
}

pub(super) type Sql<T> = std::result::Result<T, Fail>;

/// A job that can run again after a reconnect.
pub(super) type Replay<T> = Arc<dyn Fn(&mut Conn) -> Sql<T> + Send + Sync>;

/// The connection, owned by its thread.
pub(super) struct Conn {
    rt: tokio::runtime::Runtime,
    client: Client,
    cache: HashMap<&'static str, Statement>,
    url: PgUrl,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// The run and fencing token of the lease this engine holds: every
    /// transaction first checks the run's lease still has this token.
    pub(super) fence: Option<(i64, i64)>,
    /// Session settings made again after each reconnect.
    pub(super) session: Vec<String>,
    /// Whether a group commit is open, and its jobs so far (replayed on
    /// a new connection when this one is lost before the commit).
    in_batch: bool,
    /// Whether a transaction of [`Conn::tx`] is open (one inside it joins it).
    in_tx: bool,
    log: Vec<Replay<()>>,
    /// What the open transaction sends with its next statement.
    queue: Vec<Queued>,
    /// Whether the open transaction's `BEGIN` went to the server.
    begun: bool,
    /// How long a lost connection is tried again (`RUNBOOK_DB_RETRY`).
    pub(super) retry: Duration,
    /// Whether it gave up reaching the database.
    down: bool,
    /// The run whose lease a fence found lost: nothing is written again.
    lost: Option<i64>,
}

impl Conn {
    /// Connects.
    pub(super) fn open(
        url: &PgUrl,
        tls: tokio_postgres_rustls::MakeRustlsConnect,
    ) -> std::result::Result<Conn, PgError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds");
        let client = connect(&rt, url, tls.clone())?;
        Ok(Conn {
            rt,
            client,
            cache: HashMap::new(),
            url: url.clone(),
            tls,
            fence: None,
            session: Vec::new(),
            in_batch: false,
            in_tx: false,
            log: Vec::new(),
            queue: Vec::new(),
            begun: false,
            retry: retry_from_env(),
            down: false,
            lost: None,
        })
    }

    fn prep(&mut self, sql: &'static str) -> std::result::Result<Statement, PgError> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let s = self.rt.block_on(self.client.prepare(sql))?;
        self.cache.insert(sql, s.clone());
        Ok(s)
    }

    /// Sends what is queued, then the statement `tail` makes with the
    /// client, in one pipeline (`pg_pipe`); what was queued (for
    /// [`Conn::answered`]) and what came back.
    fn pipe<'a, T, F>(
        &'a mut self,
        tail: impl FnOnce(&'a Client) -> F,
    ) -> (Vec<Queued>, Result<Result<T, PgError>, Failed>)
    where
        F: Future<Output = Result<T, PgError>> + 'a,
    {
        let queued = std::mem::take(&mut self.queue);
        let this: &'a Conn = self;
        let r = (this.rt).block_on(pipe::pipeline(&this.client, &queued, tail(&this.client)));
        (queued, r)
    }

    /// Runs one statement (after what is queued); the number of rows it changed.
    pub(super) fn exec(&mut self, sql: &'static str, p: &[&(dyn ToSql + Sync)]) -> Sql<u64> {
        self.still_fenced()?;
        let s = self.prep(sql)?;
        let (queued, r) = self.pipe(|c| c.execute(&s, p));
        self.answered(&queued, r)
    }

    /// Queues a write whose answer nothing reads: it goes to the server
    /// with the transaction's next statement (its error is that one's).
    /// Outside a transaction it runs at once.
    pub(super) fn send(&mut self, sql: &'static str, p: Vec<Param>) -> Sql<()> {
        self.still_fenced()?;
        let s = self.prep(sql)?;
        self.queue.push(Queued::Write(s, p));
        if self.in_tx || self.in_batch {
            return Ok(());
        }
        let (queued, r) = self.pipe(|_| async { Ok(()) });
        self.answered(&queued, r)
    }

    /// Every row a query returns.
    pub(super) fn query(&mut self, sql: &'static str, p: &[&(dyn ToSql + Sync)]) -> Sql<Vec<Row>> {
        let s = self.prep(sql)?;
        let (queued, r) = self.pipe(|c| c.query(&s, p));
        self.answered(&queued, r)
    }

    /// The one row a query returns, if any.
    pub(super) fn opt(&mut self, sql: &'static str, p: &[&(dyn ToSql + Sync)]) -> Sql<Option<Row>> {
        let s = self.prep(sql)?;
        let (queued, r) = self.pipe(|c| c.query_opt(&s, p));
        self.answered(&queued, r)
    }

    /// Statements without parameters (BEGIN, COMMIT, migrations).
    pub(super) fn batch(&mut self, sql: &str) -> Sql<()> {
        let (queued, r) = self.pipe(|c| c.batch_execute(sql));
        self.answered(&queued, r)
    }

    /// A pipeline's result: the first queued statement's error (the
    /// fence's as the lease lost, its transaction rolled back), or the
    /// last statement's own.
    fn answered<T>(&mut self, queued: &[Queued], r: Result<Result<T, PgError>, Failed>) -> Sql<T> {
        self.begun |= queued.iter().any(|q| matches!(q, Queued::Begin));
        match r {
            Ok(r) => Ok(r?),
            Err(Failed::Pg(e)) => Err(e.into()),
            Err(Failed::Unsent(e)) => {
                // Rolled back in the pipeline: the group commit ends with
                // its transaction, as a fence's does (nothing of it is
                // replayed, or sent later without a BEGIN).
                self.begun = false;
                self.in_batch = false;
                self.in_tx = false;
                self.log.clear();
                Err(e.into())
            }
            Err(Failed::Fence(run_id)) => {
                let _ = self.end(false);
                // The group commit ends with its transaction: nothing of
                // it is replayed or sent later without a fence.
                self.in_batch = false;
                self.in_tx = false;
                self.log.clear();
                self.lost = Some(run_id);
                let by = self.holder_named(run_id);
                Err(Fail::Runbook(Error::LeaseLost { run_id, by }))
            }
        }
    }

    /// Refuses a write once a fence found the lease lost (SPEC §11: an
    /// engine that lost its lease writes nothing more).
    fn still_fenced(&mut self) -> Sql<()> {
        match self.lost {
            Some(run_id) => {
                let by = self.holder_named(run_id);
                Err(Fail::Runbook(Error::LeaseLost { run_id, by }))
            }
            None => Ok(()),
        }
    }

    /// BEGIN, then the fence: a write of an engine that lost its lease
    /// fails there, before it writes anything (`pg_pipe::FENCE`). Both are
    /// queued: they go with the transaction's first statement whose answer
    /// is needed, or its COMMIT; a transaction that writes nothing sends
    /// nothing.
    fn begin(&mut self) -> Sql<()> {
        self.still_fenced()?;
        self.queue.clear();
        self.begun = false;
        self.queue.push(Queued::Begin);
        if let Some((run_id, token)) = self.fence {
            let s = self.prep(pipe::FENCE)?;
            self.queue.push(Queued::Fence(s, run_id, token));
        }
        Ok(())
    }

    /// Ends the open transaction: COMMIT (with what is queued) or ROLLBACK
    /// (what is queued dropped); nothing when nothing went to the server
    /// and nothing is queued to write.
    fn end(&mut self, commit: bool) -> Sql<()> {
        let writes = self.queue.iter().any(|q| matches!(q, Queued::Write(..)));
        let sends = self.begun || (commit && writes);
        if !sends {
            self.queue.clear();
            return Ok(());
        }
        if !commit {
            self.queue.clear();
        }
        let done = self.batch(if commit { "COMMIT" } else { "ROLLBACK" });
        self.begun = false;
        done
    }

    /// Who holds a run's lease now, for the message of one that lost it.
    pub(super) fn holder_named(&mut self, run_id: i64) -> String {
        let row = self.opt(
            "SELECT holder_user, host, pid, released FROM leases WHERE run_id = $1",
            &[&run_id],
        );
        let named = |r: &Row| -> std::result::Result<String, PgError> {
            let (user, host, pid, released): (String, String, i64, bool) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
            Ok(if released {
                format!("{user}@{host} (pid {pid}, since finished)")
            } else {
                format!("{user}@{host} (pid {pid})")
            })
        };
        match row {
            Ok(Some(r)) => named(&r).unwrap_or_else(|_| "another engine".into()),
            _ => "another engine".into(),
        }
    }

    /// Runs `f` in one transaction unless a group commit is open (then it
    /// is part of that one).
    pub(super) fn tx<T>(&mut self, f: impl FnOnce(&mut Conn) -> Sql<T>) -> Sql<T> {
        if self.in_batch || self.in_tx {
            return f(self);
        }
        self.begin()?;
        self.in_tx = true;
        let done = f(self);
        self.in_tx = false;
        match done {
            Ok(v) => {
                self.end(true)?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.end(false);
                Err(e)
            }
        }
    }

    /// Opens a group commit.
    pub(super) fn begin_batch(&mut self) -> Sql<()> {
        if !self.in_batch {
            let deadline = Instant::now() + self.retry;
            while let Err(e) = self.begin() {
                self.recover(e, deadline)?;
            }
            self.in_batch = true;
            self.log.clear();
        }
        Ok(())
    }

    /// Commits the group commit; a connection lost on the way is opened
    /// again and the batch's writes made again before the commit.
    pub(super) fn commit_batch(&mut self) -> Sql<()> {
        if !self.in_batch {
            return Ok(());
        }
        let deadline = Instant::now() + self.retry;
        let mut result = self.end(true);
        while let Err(e) = result {
            if let Err(e) = self.recover(e, deadline) {
                result = Err(e);
                break;
            }
            result = self.replay().and_then(|()| self.end(true));
        }
        self.in_batch = false;
        self.log.clear();
        result
    }

    /// Drops the group commit's writes.
    pub(super) fn rollback_batch(&mut self) {
        if self.in_batch {
            let _ = self.end(false);
            self.in_batch = false;
            self.log.clear();
        }
    }

    /// Runs a job; when the connection is lost meanwhile, connects again
    /// (backing off, within `retry`), replays the open group commit and
    /// runs the job again. The job is remembered while a batch is open.
    pub(super) fn run<T: 'static>(&mut self, job: Replay<T>) -> Sql<T> {
        let deadline = Instant::now() + self.retry;
        loop {
            match job(self) {
                Ok(v) => {
                    if self.in_batch {
                        let again = job.clone();
                        self.log.push(Arc::new(move |c| again(c).map(|_| ())));
                    }
                    return Ok(v);
                }
                Err(e) => {
                    self.recover(e, deadline)?;
                    self.replay()?;
                }
            }
        }
    }

    /// After an error: the connection's, and connected again (`Ok`), or
    /// the error to give up with: the database's own, or that it could
    /// not be reached again before `deadline`.
    fn recover(&mut self, e: Fail, deadline: Instant) -> Sql<()> {
        match e {
            Fail::Pg(e) if transient(&e) => match self.reconnect(deadline) {
                true => Ok(()),
                false => Err(Fail::Runbook(Error::Db {
                    at: self.url.shown.clone(),
                    message: format!(
                        "lost the connection to {} and could not connect again within {} (RUNBOOK_DB_RETRY): the run stopped here; `runbook resume` goes on once the database is back",
                        self.url.place(),
                        humantime::format_duration(self.retry)
                    ),
                })),
            },
            e => Err(e),
        }
    }

    /// After a reconnect inside a group commit: BEGIN and the batch's
    /// jobs so far, again.
    fn replay(&mut self) -> Sql<()> {
        if !self.in_batch {
            return Ok(());
        }
        self.begin()?;
        for job in self.log.clone() {
            job(self)?;
        }
        Ok(())
    }

    /// Connects again until it works or `deadline` passes; whether it did.
    /// Once it gave up, each later call tries once (the command is
    /// stopping: its last writes should not each wait the bound again).
    fn reconnect(&mut self, deadline: Instant) -> bool {
        let began = Instant::now();
        let deadline = if self.down { began } else { deadline };
        let mut pause = Duration::from_millis(100);
        if !self.down {
            eprintln!(
                "warning: lost the connection to the state database at {}; connecting again (for up to {}, RUNBOOK_DB_RETRY); no step starts meanwhile",
                self.url.place(),
                humantime::format_duration(self.retry)
            );
        }
        loop {
            if let Ok(client) = connect(&self.rt, &self.url, self.tls.clone()) {
                self.client = client;
                self.cache.clear();
                self.in_tx = false;
                self.queue.clear();
                self.begun = false;
                let session = self.session.clone();
                if session.iter().all(|s| self.batch(s).is_ok()) {
                    self.down = false;
                    eprintln!(
                        "connected to the state database again after {:.1}s",
                        began.elapsed().as_secs_f64()
                    );
                    return true;
                }
            }
            if Instant::now() + pause > deadline {
                self.down = true;
                return false;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

/// Whether an error is the connection's (closed, reset, the server
/// shutting down or starting up), worth connecting again for.
pub(super) fn transient(e: &PgError) -> bool {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            // 25P03/57P05: the server closed the session after it sat idle
            // (in a transaction) too long: a frozen engine's, woken up.
            code.starts_with("08")
                || matches!(code, "57P01" | "57P02" | "57P03" | "25P03" | "57P05")
        }
        None => {
            e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

/// `RUNBOOK_DB_RETRY`, default 60s (a bad value is refused by the engine
/// before it opens the state; here it falls back to the default).
pub(super) fn retry_from_env() -> Duration {
    std::env::var("RUNBOOK_DB_RETRY")
        .ok()
        .and_then(|t| humantime::parse_duration(t.trim()).ok())
        .unwrap_or(Duration::from_secs(60))
}

fn connect(
    rt: &tokio::runtime::Runtime,
    url: &PgUrl,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
) -> std::result::Result<Client, PgError> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.user(&url.user)
        .dbname(&url.dbname)
        .port(url.port)
        .connect_timeout(url.connect_timeout)
        // A server that stops answering (a partition) fails the query in
        // a bounded time instead of hanging it: the connection is then
        // opened again, or the lease's renewal counted as failed.
        .keepalives_idle(Duration::from_secs(10))
        .tcp_user_timeout(url.connect_timeout.max(Duration::from_secs(5)))
        .application_name(&url.application_name)
        .options("-c search_path=runbook")
        .ssl_mode(match url.sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
    if url.host.starts_with('/') {
        cfg.host_path(&url.host);
    } else {
        cfg.host(&url.host);
    }
    if let Some(pw) = &url.password {
        cfg.password(pw.as_bytes());
    }
    let (client, connection) = rt.block_on(cfg.connect(tls))?;
    rt.spawn(connection);
    Ok(client)
}
