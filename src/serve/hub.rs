//! The runs being followed, for `events` (SPEC §5's shapes, made from what
//! changes in the store). One poller per followed run (a thread with its
//! own connection), however many pages follow it; it stops when the last
//! one leaves. Each change the poller sees gives the run a new generation,
//! by which `fragment` knows when a rendering of the run is still current.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use super::adapter::{Adapter, Follower};
use super::fragment::Fragments;

/// How often a followed run is looked at: well inside the second SPEC §12 allows.
pub const POLL: Duration = Duration::from_millis(250);

/// The runs being followed, each with the channel its poller sends on.
#[derive(Default)]
pub struct Hub {
    runs: Mutex<HashMap<i64, Followed>>,
    /// Where generations come from: never one value twice, so a poller
    /// started again does not revive a fragment of an earlier one.
    next: AtomicU64,
    /// The run pages' fragments, one rendering per generation.
    pub fragments: Fragments,
}

/// One followed run.
struct Followed {
    tx: broadcast::Sender<Arc<str>>,
    generation: Arc<AtomicU64>,
}

impl Hub {
    /// The generation of a followed run: it changes with every change its
    /// poller sees. `None` when nobody follows the run.
    pub fn generation(&self, run_id: i64) -> Option<u64> {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.get(&run_id)
            .map(|f| f.generation.load(Ordering::SeqCst))
    }

    fn new_generation(&self) -> u64 {
        self.next.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// A receiver of the run's events, starting its poller when none runs.
    pub fn subscribe(
        self: &Arc<Self>,
        adapter: &Arc<Adapter>,
        run_id: i64,
    ) -> crate::error::Result<broadcast::Receiver<Arc<str>>> {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = runs.get(&run_id) {
            return Ok(f.tx.subscribe());
        }
        let follower = adapter.follower(run_id)?;
        let (tx, rx) = broadcast::channel(4096);
        let generation = Arc::new(AtomicU64::new(self.new_generation()));
        runs.insert(
            run_id,
            Followed {
                tx: tx.clone(),
                generation: generation.clone(),
            },
        );
        let hub = self.clone();
        std::thread::spawn(move || hub.poll(follower, run_id, tx, generation));
        Ok(rx)
    }

    /// The poller of one run.
    fn poll(
        &self,
        mut follower: Follower,
        run_id: i64,
        tx: broadcast::Sender<Arc<str>>,
        generation: Arc<AtomicU64>,
    ) {
        loop {
            std::thread::sleep(POLL);
            {
                let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
                if tx.receiver_count() == 0 {
                    runs.remove(&run_id);
                    self.fragments.forget(run_id);
                    return;
                }
            }
            match follower.poll() {
                Ok(Some(events)) => {
                    // Before the events go out: a page that asks for the
                    // fragment on hearing one gets a new rendering.
                    let output = |e: &crate::events::Event| {
                        matches!(e, crate::events::Event::StepOutput { .. })
                    };
                    if !events.iter().all(output) {
                        generation.store(self.new_generation(), Ordering::SeqCst);
                    }
                    for e in events {
                        if let Ok(line) = serde_json::to_string(&e) {
                            let _ = tx.send(Arc::from(line));
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("following run {run_id}: {e}"),
            }
        }
    }
}
