//! The runbook as written: model, loading, validation, templates.

mod book;
mod expand;
pub mod files;
pub mod fleet;
pub mod inventory;
pub mod load;
pub mod model;
mod recover;
pub mod rolling;
pub mod source;
pub mod suggest;
pub mod template;
pub mod validate;

pub use validate::{Action, Runbook, Step};
