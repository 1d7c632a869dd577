//! The tasks, and the registry the worker dispatches from. A new task is a
//! file here and one `.with(...)` line in [`registry`].

pub mod noop;
pub mod sleep;

use crate::queue::task::Registry;

/// Every task this build of alertflow can run.
pub fn registry() -> Registry {
    Registry::new().with(noop::Noop).with(sleep::Sleep)
}
