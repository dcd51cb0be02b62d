//! The PostgreSQL backend's connection (SPEC §11). `tokio-postgres` runs on
//! a thread of its own, with a runtime of its own: the store's interface
//! stays synchronous, and a call made from the scheduler's runtime hands
//! its work to that thread and waits in `block_in_place`, so the runtime's
//! other tasks go on meanwhile.

use std::sync::{mpsc, Arc, Mutex};

use super::lease::LeaseWatch;
use super::lock::{LockHolder, ProcessId};
use super::pg_conn::{Conn, Fail, PgError, Sql};
use super::pg_schema;
use super::pgurl::PgUrl;
use crate::error::{Error, Result};

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The PostgreSQL state: a handle on the connection's thread.
pub(super) struct Pg {
    jobs: mpsc::Sender<Job>,
    pub(super) url: PgUrl,
    in_tx: std::sync::atomic::AtomicBool,
    schema: bool,
    lease: Mutex<Leased>,
}

/// The lease this engine holds, if any (SPEC §11).
#[derive(Default)]
struct Leased {
    /// The run and its fencing token.
    held: Option<(i64, i64)>,
    /// How long it lasts.
    lease: std::time::Duration,
    /// Whom the last take took the run over from.
    from: Option<LockHolder>,
    /// The renewing thread's view, once started.
    watch: Option<LeaseWatch>,
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
            lease: Mutex::default(),
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
        f: impl Fn(&mut Conn) -> Sql<T> + Send + Sync + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: super::pg_conn::Replay<T> = Arc::new(f);
        self.jobs
            .send(Box::new(move |c| {
                let _ = tx.send(c.run(job));
            }))
            .map_err(|_| gone(&self.url))?;
        match wait(|| rx.recv()) {
            Ok(r) => r.map_err(|e| describe(&self.url, e)),
            Err(_) => Err(gone(&self.url)),
        }
    }

    /// Runs a write on the connection's thread: in one transaction that
    /// first checks the lease (the fence), or in the open group commit.
    pub(super) fn write<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Conn) -> Sql<T> + Send + Sync + 'static,
    ) -> Result<T> {
        self.call(move |c| c.tx(&f))
    }

    /// Runs `f` once on the connection's thread (a group commit's BEGIN,
    /// COMMIT or ROLLBACK, which retry on their own).
    pub(super) fn control<T: Send + 'static>(
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

    fn leased(&self) -> std::sync::MutexGuard<'_, Leased> {
        self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes the lease just taken.
    pub(super) fn holding(
        &self,
        run_id: i64,
        token: i64,
        me: &ProcessId,
        from: Option<LockHolder>,
    ) {
        let mut l = self.leased();
        if l.held != Some((run_id, token)) {
            if let Some(w) = l.watch.take() {
                w.stop();
            }
        }
        l.held = Some((run_id, token));
        l.lease = me.lease;
        l.from = from;
    }

    /// Whom the last take took the run over from.
    pub(super) fn taken_from(&self) -> Option<LockHolder> {
        self.leased().from.clone()
    }

    /// Forgets the lease of `run_id` (stopping its renewal); its token.
    pub(super) fn release_lease(&self, run_id: i64) -> Option<i64> {
        let mut l = self.leased();
        match l.held {
            Some((run, token)) if run == run_id => {
                if let Some(w) = l.watch.take() {
                    w.stop();
                }
                l.held = None;
                Some(token)
            }
            _ => None,
        }
    }

    /// Starts renewing the lease of `run_id` (once); its watch.
    pub(super) fn renew_lease(&self, run_id: i64) -> Result<LeaseWatch> {
        let mut l = self.leased();
        let Some((run, token)) = l.held.filter(|(run, _)| *run == run_id) else {
            return Err(Error::Usage(format!("run {run_id}'s lease is not held")));
        };
        if let Some(w) = &l.watch {
            return Ok(w.clone());
        }
        let watch = LeaseWatch::new(run, l.lease);
        super::pg_lease::keep(self.url.clone(), run, token, watch.clone())
            .map_err(|e| Error::io("cannot start the lease's thread", e))?;
        l.watch = Some(watch.clone());
        Ok(watch)
    }

    /// Whether a group commit is open.
    pub(super) fn open_tx(&self) -> bool {
        self.in_tx.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn set_tx(&self, open: bool) {
        self.in_tx.store(open, std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(w) = self.leased().watch.take() {
            w.stop();
        }
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
    let mut conn = match Conn::open(&url, tls) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Ok(job) = jobs.recv() {
        job(&mut conn);
    }
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
                "28P01" if url.password_from.is_some() => format!(
                    "{what} (as role {}): the password sent came from {}: check it there",
                    url.user,
                    url.password_source().unwrap_or_default()
                ),
                "28P01" | "28000" => format!(
                    "{what} (as role {}): check the password in {}",
                    url.user,
                    url.password_places()
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
            if e.to_string().starts_with("error deserializing column") {
                format!(
                    "a table of schema runbook is not as runbook made it ({e}{detail}): was it changed by hand? Nothing was written"
                )
            } else if detail.contains("password missing") {
                format!(
                    "the server at {} asks for a password and none was found in {}: put it in one of them (a pgpass file must have mode 0600)",
                    url.place(),
                    url.password_places()
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
