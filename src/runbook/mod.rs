//! The runbook as written: model, loading, validation, templates.

pub mod fleet;
pub mod inventory;
pub mod load;
pub mod model;
mod recover;
pub mod rolling;
pub mod template;
pub mod validate;

pub use validate::{Action, Runbook, Step};
