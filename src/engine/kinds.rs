//! The one place an engine kind is branched on: the backend of each kind a
//! suite may name, and the owner of each kind of handle a run records.
//! Both matches are exhaustive, so a new kind cannot be half added.

use super::backend::{Backend, Handle, Owner};
use super::{container, external, process, simulated};
use crate::config::EngineKind;

/// The backend of a suite's engine kind.
pub(crate) fn backend(kind: EngineKind) -> &'static dyn Backend {
    match kind {
        EngineKind::External => &external::External,
        EngineKind::Process => &process::Process,
        EngineKind::Sim => &simulated::Simulated,
        EngineKind::Container => &container::Container,
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
