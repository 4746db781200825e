//! `lmcache-e2e gpus`: the GPUs the multiprocessing suite would choose.

use std::time::Duration;

use crate::cli::GpusArgs;
use crate::engine::gpu;
use crate::error::Error;

pub(crate) async fn run(args: &GpusArgs) -> Result<(), Error> {
    let req = gpu::GpuRequest {
        count: args.count,
        min_free_mib: args.min_free_mib,
        max_util_pct: args.max_util_pct,
        timeout: Duration::from_secs_f64(args.timeout_secs.max(0.0)),
        poll: Duration::from_secs_f64(args.poll_secs.max(0.01)),
    };
    let chosen = gpu::choose_gpus(&req).await?;
    let indices: Vec<String> = chosen.iter().map(|g| g.index.to_string()).collect();
    super::common::Out::new().line(indices.join(","));
    Ok(())
}
