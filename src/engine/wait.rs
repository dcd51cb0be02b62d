//! `--wait` (SPEC §10): while a run is held, look its held secrets up again
//! (the environment, env files, a host's `.env` over the run's SSH
//! connection), check the values that changed, re-read approvals, and say
//! when the run can go on. The decision is the gate's: a held step can go
//! when `EngineGate::prepare` no longer holds it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::gate::EngineGate;
use super::loaded::Loaded;
use super::lookup::{resolve_secrets, CheckCache, SecretStates};
use super::signals::Signals;
use crate::error::Result;
use crate::exec;
use crate::scheduler::{Gate, NotReady};
use crate::state::{SecretState, StepState};
use crate::store::{SecretRow, Store};

/// The first interval when none is given; it doubles while nothing changes.
const FIRST_INTERVAL: Duration = Duration::from_secs(30);
/// The longest interval it backs off to.
const LONGEST_INTERVAL: Duration = Duration::from_secs(300);

/// `--wait`, `--interval`, `--timeout`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WaitOptions {
    /// A fixed interval; default 30 s backing off to 5 min.
    pub interval: Option<Duration>,
    /// Give up after this long (from the start of the command): exit 3.
    pub timeout: Option<Duration>,
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WaitEnd {
    /// A held step can go: run a pass.
    Ready,
    /// `--timeout` passed; the run stays held.
    TimedOut,
    /// SIGINT or SIGTERM; the run stays held.
    Interrupted,
    /// Another engine (`user@host (pid N)`) asked for the run: this one
    /// steps aside (SPEC §11).
    SteppedAside(String),
}

/// Completes when the lease's state changes (never without a lease).
async fn news(lease: &Option<crate::store::LeaseWatch>) {
    match lease {
        Some(l) => l.changed().await,
        None => std::future::pending().await,
    }
}

/// What the last look saw of a secret: never its value, only a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    state: SecretState,
    reason: Option<String>,
    source: Option<String>,
    digest: Option<[u8; 32]>,
}

/// One wait of a run, between two passes.
pub(super) struct Waiter<'a> {
    pub(super) loaded: &'a Loaded,
    pub(super) execs: &'a std::sync::Arc<exec::Executors>,
    pub(super) env_files: &'a [PathBuf],
    pub(super) options: WaitOptions,
    /// When `--timeout` ends the wait.
    pub(super) deadline: Option<Instant>,
}

impl Waiter<'_> {
    /// Waits until a held step of the run can go, the deadline passes or a
    /// signal comes. `last` is what the pass before saw of the secrets;
    /// `say` prints a line for the operator.
    pub(super) async fn until_ready(
        &self,
        store: &mut Store,
        run_id: i64,
        last: &SecretStates,
        cache: &mut CheckCache,
        signals: &mut Signals,
        say: &mut dyn FnMut(&str),
    ) -> Result<WaitEnd> {
        let mut seen: BTreeMap<String, Seen> = last
            .rows
            .iter()
            .map(|r| (r.name.clone(), seen_of(r, last)))
            .collect();
        let mut approved: BTreeSet<String> = BTreeSet::new();
        let interval = self.options.interval.unwrap_or(FIRST_INTERVAL);
        // A pass that outlasted --timeout: no wait to announce.
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(WaitEnd::TimedOut);
        }
        say(&self.waiting_line(store, run_id, interval)?);
        let lease = store.keep_lease(run_id)?;
        if let Some(l) = &lease {
            l.set_waiting(true);
        }
        let end = self
            .wait_loop(
                store,
                run_id,
                &lease,
                &mut seen,
                &mut approved,
                cache,
                signals,
                say,
            )
            .await;
        if let Some(l) = &lease {
            l.set_waiting(false);
        }
        end
    }

    #[allow(clippy::too_many_arguments)]
    async fn wait_loop(
        &self,
        store: &mut Store,
        run_id: i64,
        lease: &Option<crate::store::LeaseWatch>,
        seen: &mut BTreeMap<String, Seen>,
        approved: &mut BTreeSet<String>,
        cache: &mut CheckCache,
        signals: &mut Signals,
        say: &mut dyn FnMut(&str),
    ) -> Result<WaitEnd> {
        let mut interval = self.options.interval.unwrap_or(FIRST_INTERVAL);
        let mut next_look = Instant::now() + interval;
        loop {
            if let Some(by) = lease.as_ref().and_then(|l| l.wanted_by()) {
                return Ok(WaitEnd::SteppedAside(by));
            }
            let now = Instant::now();
            if self.deadline.is_some_and(|d| now >= d) {
                return Ok(WaitEnd::TimedOut);
            }
            let until_look = next_look.saturating_duration_since(now);
            let nap = match self.deadline {
                Some(d) => until_look.min(d - now),
                None => until_look,
            };
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = signals.received() => return Ok(WaitEnd::Interrupted),
                _ = news(lease) => continue,
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(WaitEnd::TimedOut);
            }
            // A look (SSH, a check that answers slowly) ends at the deadline too.
            let look = self.look(store, run_id, cache, seen, approved, say);
            let deadline = async {
                match self.deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let (ready, changed) = tokio::select! {
                r = look => r?,
                _ = signals.received() => return Ok(WaitEnd::Interrupted),
                _ = deadline => return Ok(WaitEnd::TimedOut),
            };
            if ready {
                return Ok(WaitEnd::Ready);
            }
            interval = next_interval(interval, self.options.interval, changed);
            next_look = Instant::now() + interval;
        }
    }

    /// The line that starts a wait: what it waits for, how often it looks.
    fn waiting_line(&self, store: &Store, run_id: i64, interval: Duration) -> Result<String> {
        let mut what: Vec<String> = Vec::new();
        let (secret_rows, _) = store.secrets(run_id)?;
        let unavailable = |m: &String| {
            secret_rows
                .iter()
                .any(|r| &r.name == m && r.state == SecretState::Unavailable)
        };
        for s in store.steps(run_id)? {
            if s.state != StepState::Held {
                continue;
            }
            for m in &s.missing {
                match unavailable(m) {
                    true => what.push(format!("{m} (unavailable)")),
                    false => what.push(format!("{m} (missing)")),
                }
            }
            for r in &s.rejected {
                what.push(format!("{r} (rejected)"));
            }
            if s.missing.is_empty() && s.rejected.is_empty() {
                what.push(format!("approval of `{}`", s.id));
            }
        }
        // Once each, in the order the steps name them.
        let mut named = BTreeSet::new();
        what.retain(|w| named.insert(w.clone()));
        let every = match self.options.interval {
            Some(i) => format!("every {}", humantime::format_duration(i)),
            None => format!(
                "every {}, backing off to {}",
                humantime::format_duration(interval),
                humantime::format_duration(LONGEST_INTERVAL)
            ),
        };
        let until = self
            .options
            .timeout
            .map(|t| format!(", for at most {}", humantime::format_duration(t)))
            .unwrap_or_default();
        Ok(format!(
            "waiting for {}; looking again {every}{until} (Ctrl-C stops waiting, the run stays held)",
            what.join(", ")
        ))
    }

    /// One look: the held steps' secrets and approvals as they are now.
    /// (whether a held step can go, whether anything changed).
    async fn look(
        &self,
        store: &mut Store,
        run_id: i64,
        cache: &mut CheckCache,
        seen: &mut BTreeMap<String, Seen>,
        approved: &mut BTreeSet<String>,
        say: &mut dyn FnMut(&str),
    ) -> Result<(bool, bool)> {
        let plan = &self.loaded.plan;
        let rows = store.steps(run_id)?;
        let held: Vec<usize> = rows
            .iter()
            .filter(|r| r.state == StepState::Held)
            .filter_map(|r| plan.steps.iter().position(|p| p.id == r.id))
            .collect();
        if held.is_empty() {
            // Reset or changed from elsewhere: a pass sorts it out.
            return Ok((true, true));
        }
        let mut needed: Vec<String> = held
            .iter()
            .flat_map(|&i| plan.steps[i].requires.clone())
            .collect();
        needed.sort();
        needed.dedup();
        // Held on approvals only: no secret to look up (no SSH round trip).
        let secrets = if needed.is_empty() {
            SecretStates {
                lookup: Default::default(),
                rows: Vec::new(),
                per_host: Default::default(),
            }
        } else {
            resolve_secrets(self.loaded, self.execs, self.env_files, &needed, cache).await
        };
        let mut changed = false;
        for name in &needed {
            let Some(row) = secrets.rows.iter().find(|r| &r.name == name) else {
                continue;
            };
            let now = seen_of(row, &secrets);
            if let Some(line) = change_line(seen.get(name), &now, name) {
                say(&line);
                changed = true;
            }
            seen.insert(name.clone(), now);
        }
        let mut approvals = Vec::new();
        for &i in &held {
            let id = &plan.steps[i].id;
            if let Some(a) = store.approval(run_id, id)? {
                if approved.insert(id.clone()) {
                    say(&format!("`{id}`: approved by {}", a.by));
                    changed = true;
                }
                approvals.push(id.clone());
            }
        }
        if changed {
            let files: Vec<String> = self
                .env_files
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            store.save_secrets(run_id, &secrets.rows, &files)?;
        }
        let mut gate = EngineGate {
            loaded: self.loaded,
            secrets: &secrets,
            approvals,
            redactor: Arc::new(secrets.redactor()),
        };
        let ready = held
            .iter()
            .any(|&i| !matches!(gate.prepare(i), Err(NotReady::Held(_))));
        Ok((ready, changed))
    }
}

/// The interval after a look: the given one, or 30 s after a change and
/// twice the last one (up to 5 min) while nothing changes.
fn next_interval(last: Duration, fixed: Option<Duration>, changed: bool) -> Duration {
    match fixed {
        Some(fixed) => fixed,
        None if changed => FIRST_INTERVAL,
        None => (last * 2).min(LONGEST_INTERVAL),
    }
}

fn seen_of(row: &SecretRow, secrets: &SecretStates) -> Seen {
    Seen {
        state: row.state,
        reason: row.reason.clone(),
        source: row.source.clone(),
        digest: secrets.lookup.values.get(&row.name).map(CheckCache::digest),
    }
}

/// The line for a secret whose look changed (`GITHUB_TOKEN: accepted`,
/// `GITHUB_TOKEN: still rejected (401 Bad credentials)`); `None` when
/// nothing a person would care about changed.
fn change_line(before: Option<&Seen>, now: &Seen, name: &str) -> Option<String> {
    let why = || now.reason.clone().unwrap_or_default();
    let same_state = before.is_some_and(|b| b.state == now.state);
    let new_value = before.is_some_and(|b| b.digest != now.digest);
    let text = match now.state {
        SecretState::Accepted if !same_state => "accepted".to_string(),
        SecretState::Found if !same_state => {
            format!("found in {}", now.source.as_deref().unwrap_or("a source"))
        }
        SecretState::Rejected if !same_state => format!("rejected ({})", why()),
        SecretState::Rejected if new_value => format!("still rejected ({})", why()),
        SecretState::Unchecked if !same_state || before.map(|b| &b.reason) != Some(&now.reason) => {
            format!("could not be checked ({})", why())
        }
        SecretState::Unavailable
            if !same_state || before.map(|b| &b.reason) != Some(&now.reason) =>
        {
            format!("unavailable ({})", why())
        }
        SecretState::Missing if before.is_some_and(|b| b.state != SecretState::Missing) => {
            "missing again".to_string()
        }
        SecretState::Missing if before.is_some_and(|b| b.reason != now.reason) => {
            format!("still missing ({})", why())
        }
        _ => return None,
    };
    Some(format!("{name}: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(state: SecretState, reason: &str, value: &str) -> Seen {
        Seen {
            state,
            reason: Some(reason.to_string()).filter(|r| !r.is_empty()),
            source: Some("the environment".into()),
            digest: Some(CheckCache::digest(value)).filter(|_| !value.is_empty()),
        }
    }

    #[test]
    fn the_interval_backs_off_to_five_minutes_unless_given() {
        let mut i = FIRST_INTERVAL;
        let mut seen = vec![i.as_secs()];
        for _ in 0..5 {
            i = next_interval(i, None, false);
            seen.push(i.as_secs());
        }
        assert_eq!(seen, [30, 60, 120, 240, 300, 300]);
        assert_eq!(next_interval(i, None, true), FIRST_INTERVAL);
        let fixed = Some(Duration::from_secs(7));
        assert_eq!(next_interval(i, fixed, false).as_secs(), 7);
    }

    #[test]
    fn a_line_per_change_and_none_without() {
        let rejected = seen(SecretState::Rejected, "401 Bad credentials", "old");
        let again = seen(SecretState::Rejected, "401 Bad credentials", "new");
        let ok = seen(SecretState::Accepted, "", "newer");
        assert_eq!(change_line(Some(&rejected), &rejected, "T"), None);
        assert_eq!(
            change_line(Some(&rejected), &again, "T").as_deref(),
            Some("T: still rejected (401 Bad credentials)")
        );
        assert_eq!(
            change_line(Some(&again), &ok, "T").as_deref(),
            Some("T: accepted")
        );
        let missing = seen(SecretState::Missing, "not set in any source", "");
        assert_eq!(change_line(Some(&missing), &missing, "T"), None);
        assert_eq!(
            change_line(Some(&ok), &missing, "T").as_deref(),
            Some("T: missing again")
        );
    }
}
