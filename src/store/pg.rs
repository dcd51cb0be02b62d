//! The PostgreSQL backend's connection (SPEC §11). `tokio-postgres` runs on
//! a thread of its own, with a runtime of its own: the store's interface
//! stays synchronous, and a call made from the scheduler's runtime hands
//! its work to that thread and waits in `block_in_place`, so the runtime's
//! other tasks go on meanwhile.

use std::collections::HashMap;
use std::sync::mpsc;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use super::pg_schema;
use super::pgurl::{PgUrl, SslMode};
use crate::error::{Error, Result};

pub(super) type PgError = tokio_postgres::Error;
type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The connection, owned by its thread.
pub(super) struct Conn {
    rt: tokio::runtime::Runtime,
    client: Client,
    cache: HashMap<&'static str, Statement>,
}

/// What a job's SQL returns: a database error, or the run's own reason.
pub(super) enum Fail {
    /// From PostgreSQL.
    Pg(PgError),
    /// A user-facing error made inside the job (a lock held).
    Runbook(Error),
}

impl From<PgError> for Fail {
    fn from(e: PgError) -> Self {
        Fail::Pg(e)
    }
}

pub(super) type Sql<T> = std::result::Result<T, Fail>;

impl Conn {
    fn prep(&mut self, sql: &'static str) -> std::result::Result<Statement, PgError> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let s = self.rt.block_on(self.client.prepare(sql))?;
        self.cache.insert(sql, s.clone());
        Ok(s)
    }

    /// Runs one statement; the number of rows it changed.
    pub(super) fn exec(&mut self, sql: &'static str, p: &[&(dyn ToSql + Sync)]) -> Sql<u64> {
        let s = self.prep(sql)?;
        Ok(self.rt.block_on(self.client.execute(&s, p))?)
    }

    /// Every row a query returns.
    pub(super) fn query(&mut self, sql: &'static str, p: &[&(dyn ToSql + Sync)]) -> Sql<Vec<Row>> {
        let s = self.prep(sql)?;
        Ok(self.rt.block_on(self.client.query(&s, p))?)
    }

    /// The one row a query returns, if any.
    pub(super) fn opt(&mut self, sql: &'static str, p: &[&(dyn ToSql + Sync)]) -> Sql<Option<Row>> {
        let s = self.prep(sql)?;
        Ok(self.rt.block_on(self.client.query_opt(&s, p))?)
    }

    /// Statements without parameters (BEGIN, COMMIT, migrations).
    pub(super) fn batch(&mut self, sql: &str) -> Sql<()> {
        Ok(self.rt.block_on(self.client.batch_execute(sql))?)
    }

    /// Runs `f` in one transaction unless one is open already.
    pub(super) fn tx<T>(&mut self, open: bool, f: impl FnOnce(&mut Conn) -> Sql<T>) -> Sql<T> {
        if open {
            return f(self);
        }
        self.batch("BEGIN")?;
        match f(self) {
            Ok(v) => {
                self.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// The PostgreSQL state: a handle on the connection's thread.
pub(super) struct Pg {
    jobs: mpsc::Sender<Job>,
    pub(super) url: PgUrl,
    in_tx: std::sync::atomic::AtomicBool,
    schema: bool,
}

impl Pg {
    /// Connects; with `create`, creates or migrates runbook's schema, else
    /// only reads its version (a read-only role can open it).
    pub(super) fn connect(url: &PgUrl, create: bool) -> Result<Pg> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let u = url.clone();
        let tls = super::pg_tls::connector(url).map_err(|message| Error::Db {
            at: url.shown.clone(),
            message,
        })?;
        std::thread::Builder::new()
            .name("runbook-pg".into())
            .spawn(move || serve(u, tls, rx, ready_tx))
            .map_err(|e| Error::io("cannot start the database thread", e))?;
        let connected = wait(|| ready_rx.recv());
        match connected {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(describe(url, Fail::Pg(e))),
            Err(_) => return Err(gone(url)),
        }
        let mut pg = Pg {
            jobs,
            url: url.clone(),
            in_tx: false.into(),
            schema: false,
        };
        let version = pg.call(pg_schema::version)?;
        pg.schema = match version {
            Some(v) if v > pg_schema::VERSION => {
                return Err(Error::Db {
                    at: url.shown.clone(),
                    message: format!(
                        "schema runbook has version {v}, newer than this runbook's ({}); upgrade runbook",
                        pg_schema::VERSION
                    ),
                })
            }
            Some(v) if v == pg_schema::VERSION => true,
            Some(_) => {
                pg.call(pg_schema::migrate)?;
                true
            }
            None if create => {
                pg.call(pg_schema::migrate)?;
                true
            }
            None => false,
        };
        Ok(pg)
    }

    /// Whether runbook's schema exists in the database.
    pub(super) fn has_schema(&self) -> bool {
        self.schema
    }

    /// Runs `f` on the connection's thread and waits for it.
    pub(super) fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Sql<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |c| {
                let _ = tx.send(f(c));
            }))
            .map_err(|_| gone(&self.url))?;
        match wait(|| rx.recv()) {
            Ok(r) => r.map_err(|e| describe(&self.url, e)),
            Err(_) => Err(gone(&self.url)),
        }
    }

    /// Whether a group commit is open.
    pub(super) fn open_tx(&self) -> bool {
        self.in_tx.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn set_tx(&self, open: bool) {
        self.in_tx.store(open, std::sync::atomic::Ordering::SeqCst)
    }
}

/// Blocks on `f`, inside a multi-threaded runtime without stalling it.
fn wait<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The connection's thread: connects, says so, then runs jobs until the
/// store is dropped.
fn serve(
    url: PgUrl,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    jobs: mpsc::Receiver<Job>,
    ready: mpsc::SyncSender<std::result::Result<(), PgError>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return,
    };
    let client = match rt.block_on(open(&url, tls)) {
        Ok((client, connection)) => {
            rt.spawn(connection);
            client
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut conn = Conn {
        rt,
        client,
        cache: HashMap::new(),
    };
    while let Ok(job) = jobs.recv() {
        job(&mut conn);
    }
}

type Connection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
        tokio_postgres::Socket,
    >>::Stream,
>;

async fn open(
    url: &PgUrl,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
) -> std::result::Result<(Client, Connection), PgError> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.user(&url.user)
        .dbname(&url.dbname)
        .port(url.port)
        .connect_timeout(url.connect_timeout)
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
    cfg.connect(tls).await
}

fn gone(url: &PgUrl) -> Error {
    Error::Db {
        at: url.shown.clone(),
        message: format!("the connection to {} was lost", url.place()),
    }
}

/// A database error as the user reads it: what happened and what to do;
/// never the password.
pub(super) fn describe(url: &PgUrl, e: Fail) -> Error {
    let e = match e {
        Fail::Runbook(e) => return e,
        Fail::Pg(e) => e,
    };
    let message = match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let what = db.message();
            match code {
                "28P01" | "28000" => format!(
                    "{what} (as role {}): check the password in the URL, PGPASSWORD or ~/.pgpass",
                    url.user
                ),
                "25006" => format!(
                    "{what}: role {} may only read here; this command writes (use a role with write grants)",
                    url.user
                ),
                "42501" => format!(
                    "{what}: grant role {} the rights docs/team.md lists, or use another role",
                    url.user
                ),
                "3D000" => format!("{what}: create it, or name another database in the URL"),
                _ => format!("{what} (SQLSTATE {code})"),
            }
        }
        None if e.is_closed() => format!("the connection to {} was closed", url.place()),
        None => {
            let detail = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            if detail.contains("password missing") {
                format!(
                    "the server at {} asks for a password and none was given: put it in the URL, PGPASSWORD or ~/.pgpass (mode 0600)",
                    url.place()
                )
            } else {
                format!("cannot reach {}: {e}{detail}", url.place())
            }
        }
    };
    let message = match url.password.as_deref().filter(|p| !p.is_empty()) {
        Some(pw) => message.replace(pw, "[redacted]"),
        None => message,
    };
    Error::Db {
        at: url.shown.clone(),
        message,
    }
}
