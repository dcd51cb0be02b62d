//! What the engine knows of its lease while it runs (SPEC §11): when it
//! last renewed (by its own clock), whether another engine took the run or
//! asked for it. A renewing thread of the backend's writes it; the
//! scheduler and the `--wait` loop read it, and wake when it changes.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The engine's view of its lease; cheap to clone.
#[derive(Clone)]
pub struct LeaseWatch {
    shared: Arc<Shared>,
}

struct Shared {
    run_id: i64,
    lease: Duration,
    state: Mutex<State>,
    /// Wakes the renewing thread early (to stop, or to say it waits).
    wake: Condvar,
    changed: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    last_ok: Option<Instant>,
    lost: Option<String>,
    wanted_by: Option<String>,
    waiting: bool,
    stop: bool,
    poke: bool,
    failing: bool,
    ran_out: bool,
}

impl LeaseWatch {
    /// A lease just taken (renewed now), lasting `lease`.
    pub fn new(run_id: i64, lease: Duration) -> Self {
        let (changed, _) = tokio::sync::watch::channel(0);
        LeaseWatch {
            shared: Arc::new(Shared {
                run_id,
                lease,
                state: Mutex::new(State {
                    last_ok: Some(Instant::now()),
                    ..State::default()
                }),
                wake: Condvar::new(),
                changed,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The run.
    pub fn run_id(&self) -> i64 {
        self.shared.run_id
    }

    /// How long the lease lasts without a renewal.
    pub fn lease(&self) -> Duration {
        self.shared.lease
    }

    /// How often it is renewed: a third of the lease.
    pub fn interval(&self) -> Duration {
        self.shared.lease / 3
    }

    fn since_ok(&self) -> Duration {
        self.state()
            .last_ok
            .map(|t| t.elapsed())
            .unwrap_or(Duration::MAX)
    }

    /// Whether a step may start: the last renewal is on time and nobody
    /// took the run.
    pub fn can_start(&self) -> bool {
        let s = self.state();
        s.lost.is_none() && !s.failing
    }

    /// Whether the lease has run out by this engine's clock (it could not
    /// renew for the whole lease): its local steps must stop.
    pub fn expired(&self) -> bool {
        self.since_ok() >= self.shared.lease
    }

    /// `user@host (pid N)` of the engine that took the run, once known.
    pub fn lost(&self) -> Option<String> {
        self.state().lost.clone()
    }

    /// The engine that asked this one (in `--wait`) to step aside.
    pub fn wanted_by(&self) -> Option<String> {
        self.state().wanted_by.clone()
    }

    /// Says whether this engine waits (`--wait`), renewing at once so
    /// others read it.
    pub fn set_waiting(&self, waiting: bool) {
        let mut s = self.state();
        s.waiting = waiting;
        s.poke = true;
        self.shared.wake.notify_all();
    }

    /// Notes that a pass was stopped because the lease ran out.
    pub fn mark_ran_out(&self) {
        self.state().ran_out = true;
    }

    /// Whether a pass was stopped because the lease ran out (and forgets it).
    pub fn take_ran_out(&self) -> bool {
        std::mem::take(&mut self.state().ran_out)
    }

    /// Stops the renewing thread (the lease is then released).
    pub fn stop(&self) {
        let mut s = self.state();
        s.stop = true;
        self.shared.wake.notify_all();
    }

    /// Waits until something changed, or until the lease runs out by this
    /// engine's clock.
    pub async fn changed(&self) {
        let mut rx = self.shared.changed.subscribe();
        let left = self.shared.lease.saturating_sub(self.since_ok());
        if left.is_zero() {
            let _ = rx.changed().await;
            return;
        }
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep(left) => {}
        }
    }

    fn bump(&self) {
        self.shared.changed.send_modify(|n| *n += 1);
    }

    // The renewing thread's side.

    /// Waits until the next renewal is due (`pause`), it is poked or
    /// stopped; whether to go on, and whether it waits.
    pub(super) fn sleep(&self, pause: Duration) -> Option<bool> {
        let s = self.state();
        let (mut s, _) = self
            .shared
            .wake
            .wait_timeout_while(s, pause, |s| !s.stop && !s.poke)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        s.poke = false;
        (!s.stop).then_some(s.waiting)
    }

    /// A renewal sent at `sent` kept the lease.
    pub(super) fn renewed(&self, sent: Instant, wanted_by: Option<String>) {
        {
            let mut s = self.state();
            s.last_ok = Some(sent);
            s.failing = false;
            if wanted_by.is_some() {
                s.wanted_by = wanted_by;
            }
        }
        self.bump();
    }

    /// A renewal could not reach the database.
    pub(super) fn failed(&self) {
        let was = std::mem::replace(&mut self.state().failing, true);
        if !was {
            self.bump();
        }
    }

    /// The run was taken over.
    pub(super) fn taken(&self, by: String) {
        self.state().lost = Some(by);
        self.bump();
    }
}
