//! The GPUs a run waits for, and the memory its engines give back.

use std::time::Duration;

use crate::config;
use crate::engine;
use crate::results::RunResults;

use super::error::RunError;
use super::events::{Event, Events};

/// Memory in use on the GPUs may differ from this much and still count as
/// given back (the driver's and other tenants' small allocations).
const GPU_SLACK_MIB: f64 = 512.0;

/// After `names` stopped: waits up to `timeout_secs` for the GPU memory
/// they held to be free, records what was seen on each, and says it. The
/// level to come back to is the lowest any of them saw before it started.
pub(super) async fn gpu_after_stop(
    results: &mut RunResults,
    names: &[String],
    timeout_secs: f64,
    events: &Events,
) {
    let before = results
        .engines
        .iter()
        .filter(|e| names.contains(&e.name))
        .filter_map(|e| e.gpu_memory.as_ref()?.before_start_mib)
        .reduce(f64::min);
    let Some(before) = before else {
        return;
    };
    let Some(settled) = engine::gpu::settle(
        before,
        GPU_SLACK_MIB,
        Duration::from_secs_f64(timeout_secs),
        Duration::from_millis(500),
        engine::gpu::memory_used_mib,
    )
    .await
    else {
        return;
    };
    for e in results
        .engines
        .iter_mut()
        .filter(|e| names.contains(&e.name))
    {
        let g = e.gpu_memory.get_or_insert_with(Default::default);
        g.after_stop_mib = Some(settled.used_mib);
        g.after_stop_secs = Some(settled.waited.as_secs_f64());
        g.released = Some(settled.back);
    }
    events.say(&Event::GpuMemoryAfterStop {
        engines: names,
        used_mib: settled.used_mib,
        before_mib: before,
        secs: settled.waited.as_secs_f64(),
        released: settled.back,
    });
}

/// Waits for the GPUs the suite's `auto:N` containers need, as the
/// multiprocessing suite polls `nvidia-smi`.
pub(super) async fn choose_gpus(
    suite: &config::Suite,
    events: &Events,
) -> Result<Vec<engine::gpu::GpuState>, RunError> {
    let count = engine::auto_gpus_needed(suite);
    if count == 0 {
        return Ok(Vec::new());
    }
    let g = &suite.run.gpus;
    let req = engine::gpu::GpuRequest {
        count,
        min_free_mib: g.min_free_mib,
        max_util_pct: g.max_util_pct,
        timeout: Duration::from_secs_f64(g.timeout_secs.max(0.0)),
        poll: Duration::from_secs_f64(g.poll_secs.max(0.01)),
    };
    events.info(format!(
        "waiting for {count} GPU(s) with {} MiB free and at most {} % busy",
        g.min_free_mib, g.max_util_pct
    ));
    let chosen = engine::gpu::choose_gpus(&req).await?;
    events.info(format!(
        "chose GPU(s) {:?}",
        chosen.iter().map(|g| g.index).collect::<Vec<_>>()
    ));
    Ok(chosen)
}
