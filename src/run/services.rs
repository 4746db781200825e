//! What a workload may ask of the run beyond HTTP: its services stopped
//! mid-test as a fault (fault tolerance), restarted by the orchestrator
//! once the trial is over so the tests after find them as they were, and
//! the GPU memory in use.

use std::sync::Mutex;

use futures_util::future::BoxFuture;

use crate::engine::{EngineSpec, Supervisor};
use crate::workload::Harness;

pub(super) struct ServiceControl<'a> {
    supervisor: &'a Supervisor,
    specs: Vec<EngineSpec>,
    /// Stopped by a workload and not yet restarted.
    stopped: Mutex<Vec<String>>,
}

impl<'a> ServiceControl<'a> {
    pub(super) fn new(supervisor: &'a Supervisor, specs: Vec<EngineSpec>) -> Self {
        Self {
            supervisor,
            specs,
            stopped: Mutex::new(Vec::new()),
        }
    }

    /// The services stopped since the last call, to be started again.
    pub(super) fn take_stopped(&self) -> Vec<&EngineSpec> {
        let names = std::mem::take(&mut *self.stopped.lock().unwrap_or_else(|p| p.into_inner()));
        self.specs
            .iter()
            .filter(|s| names.contains(&s.name))
            .collect()
    }
}

impl Harness for ServiceControl<'_> {
    fn service_names(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.name.clone()).collect()
    }

    fn stop_service<'b>(&'b self, name: &'b str) -> BoxFuture<'b, Result<(), String>> {
        Box::pin(async move {
            if !self.specs.iter().any(|s| s.name == name) {
                return Err(format!("no service named `{name}`"));
            }
            // Marked before the signal, so its exit is never taken for a
            // death, and restarted even if the stop is cut short.
            self.stopped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(name.to_string());
            self.supervisor
                .stop(Some(&[name.to_string()]), std::future::pending())
                .await;
            Ok(())
        })
    }

    fn gpu_memory_used_mib(&self) -> BoxFuture<'_, Option<f64>> {
        Box::pin(crate::engine::gpu::memory_used_mib())
    }
}

/// Before a model's engines are resolved there are none.
pub(super) struct NoServices;

pub(super) static NO_SERVICES: NoServices = NoServices;

impl Harness for NoServices {
    fn service_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn stop_service<'b>(&'b self, name: &'b str) -> BoxFuture<'b, Result<(), String>> {
        Box::pin(async move { Err(format!("no service named `{name}`")) })
    }

    fn gpu_memory_used_mib(&self) -> BoxFuture<'_, Option<f64>> {
        Box::pin(crate::engine::gpu::memory_used_mib())
    }
}
