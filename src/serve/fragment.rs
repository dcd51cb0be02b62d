//! The run page's live fragment, rendered once per change of a followed
//! run however many pages ask for it. Every open page refetches the
//! fragment when the run changes; fifty pages rendering it fifty times
//! cost a quarter of a core (bench/README.md). A fragment is reused only
//! while the run's poller has seen no change since it was rendered (the
//! generation it was rendered at is still current) and for at most
//! `MAX_AGE`, so a page never gets one older than the event that made it
//! ask, nor durations staler than a second.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// The longest a rendered fragment is served again.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// One run's last rendering.
struct Cached {
    generation: u64,
    at: Instant,
    html: Bytes,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// The last fragment of each followed run.
#[derive(Default)]
pub struct Fragments {
    runs: Mutex<HashMap<i64, Slot>>,
}

impl Fragments {
    fn slot(&self, run_id: i64) -> Slot {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.entry(run_id).or_default().clone()
    }

    /// Forgets a run no longer followed.
    pub fn forget(&self, run_id: i64) {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.remove(&run_id);
    }

    /// The fragment of `run_id`: the last one when `generation` (read once
    /// the run's slot is ours, so a render in flight is waited for, not
    /// repeated) still equals the one it was made at, else a new one from
    /// `render`. Without a generation (nobody follows the run) always new.
    pub async fn get<E, Fut>(
        &self,
        run_id: i64,
        generation: impl Fn() -> Option<u64>,
        render: impl FnOnce() -> Fut,
    ) -> Result<Bytes, E>
    where
        Fut: Future<Output = Result<String, E>>,
    {
        let slot = self.slot(run_id);
        let mut cached = slot.lock().await;
        let Some(now) = generation() else {
            *cached = None;
            return render().await.map(Bytes::from);
        };
        if let Some(c) = cached.as_ref() {
            if c.generation == now && c.at.elapsed() < MAX_AGE {
                return Ok(c.html.clone());
            }
        }
        let at = Instant::now();
        let html = Bytes::from(render().await?);
        *cached = Some(Cached {
            generation: now,
            at,
            html: html.clone(),
        });
        Ok(html)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn one_render_per_generation_a_new_one_after_a_change_or_without_a_follower() {
        let fragments = Fragments::default();
        let generation = AtomicU64::new(7);
        let renders = AtomicUsize::new(0);
        let (generation, renders) = (&generation, &renders);
        let get = |followed: bool| {
            fragments.get::<(), _>(
                1,
                move || followed.then(|| generation.load(Ordering::SeqCst)),
                || async {
                    let n = renders.fetch_add(1, Ordering::SeqCst) + 1;
                    Ok(format!("render {n}"))
                },
            )
        };
        run(async {
            assert_eq!(get(true).await.unwrap(), "render 1");
            assert_eq!(get(true).await.unwrap(), "render 1");
            generation.store(8, Ordering::SeqCst);
            assert_eq!(get(true).await.unwrap(), "render 2");
            assert_eq!(get(true).await.unwrap(), "render 2");
            // Nobody follows the run: nothing tells of a change, so no reuse.
            assert_eq!(get(false).await.unwrap(), "render 3");
            assert_eq!(get(true).await.unwrap(), "render 4");
        });
        assert_eq!(renders.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_fragment_older_than_max_age_is_made_again() {
        let fragments = Fragments::default();
        let renders = AtomicUsize::new(0);
        let get = || {
            fragments.get::<(), _>(
                1,
                || Some(1),
                || async {
                    renders.fetch_add(1, Ordering::SeqCst);
                    Ok(String::new())
                },
            )
        };
        run(async {
            get().await.unwrap();
            get().await.unwrap();
            tokio::time::sleep(MAX_AGE + Duration::from_millis(50)).await;
            get().await.unwrap();
        });
        assert_eq!(renders.load(Ordering::SeqCst), 2);
    }
}
