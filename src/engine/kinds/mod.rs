//! The one place an engine kind is branched on: the backend of each kind a
//! suite may name, and the owner of each kind of handle a run records.
//! Both matches are exhaustive, so a new kind cannot be half added.

pub(super) mod container;
mod external;
pub(super) mod process;
mod simulated;
#[cfg(test)]
mod toy;

use crate::config::EngineKind;
use crate::engine::backend::{Backend, Handle, Owner};

/// The backend of a suite's engine kind.
pub(crate) fn backend(kind: EngineKind) -> &'static dyn Backend {
    match kind {
        EngineKind::External => &external::External,
        EngineKind::Process => &process::Process,
        EngineKind::Sim => &simulated::Simulated,
        EngineKind::Container => &container::Container,
        #[cfg(test)]
        EngineKind::Toy => &toy::Toy,
    }
}

/// What owns a started engine's handle: a `sim` runs as a process group,
/// an `external` one is never started.
pub(crate) fn owner(h: &Handle) -> &'static dyn Owner {
    match h {
        Handle::ProcessGroup { .. } => &process::Process,
        Handle::Container { .. } => &container::Container,
    }
}
