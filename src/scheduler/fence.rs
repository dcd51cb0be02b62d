//! The lease as a pass sees it (PostgreSQL, SPEC §11): no step starts
//! while it cannot be renewed, and the pass stops once it has run out or
//! another engine took the run. Without a lease each is a no-op.

use tokio_util::sync::CancellationToken;

use crate::store::LeaseWatch;

/// Completes when the lease's state changes (never without a lease).
pub(super) async fn lease_news(lease: &Option<LeaseWatch>) {
    match lease {
        Some(l) => l.changed().await,
        None => std::future::pending().await,
    }
}

/// Whether the lease lets a step start.
pub(super) fn lease_ok(lease: &Option<LeaseWatch>) -> bool {
    lease.as_ref().is_none_or(|l| l.can_start() && !l.expired())
}

/// Cancels the pass once the lease has run out or was taken over, even
/// while the scheduler waits on the database.
pub(super) fn fence_pass(
    lease: &Option<LeaseWatch>,
    cancel: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let (lease, cancel) = (lease.clone()?, cancel.clone());
    Some(tokio::spawn(async move {
        loop {
            if lease.lost().is_some() {
                cancel.cancel();
                return;
            }
            if lease.expired() {
                lease.mark_ran_out();
                cancel.cancel();
                return;
            }
            lease.changed().await;
        }
    }))
}
