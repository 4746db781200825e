//! `lmcache-e2e recommend`: tensor parallelism, the LMCache CPU cache and
//! the long-doc-QA workload for a model on this machine.

use crate::cli::RecommendArgs;
use crate::engine::gpu;
use crate::error::Error;
use crate::setup::recommend;

/// GPU count and memory per GPU: the flags, else nvidia-smi's.
async fn gpus(args: &RecommendArgs) -> Result<(usize, u64), Error> {
    if let (Some(n), Some(m)) = (args.gpus, args.gpu_mib) {
        return Ok((n, m));
    }
    let smi = which::which("nvidia-smi").map_err(|_| recommend::RecommendError::NoGpus)?;
    let states = gpu::query(&smi).await?;
    let mem = states
        .iter()
        .filter_map(|g| g.memory_total_mib)
        .min()
        .unwrap_or(0);
    Ok((
        args.gpus.unwrap_or(states.len()),
        args.gpu_mib.unwrap_or(mem),
    ))
}

pub(crate) async fn run(args: &RecommendArgs) -> Result<(), Error> {
    let (path, cfg) = recommend::find_config(&args.model, args.config.as_deref())?;
    let (gpus, gpu_mib) = gpus(args).await?;
    let ram = args
        .host_ram_gb
        .or_else(recommend::host_ram_gb)
        .unwrap_or(0.0);
    let r = recommend::recommend(&args.model, &cfg, gpus, gpu_mib, ram)?;
    super::common::Out::new().line(format!(
        "# {} from {}: {:.1} B parameters, {} KiB of KV per token; {gpus} GPU(s) of {gpu_mib} MiB, {ram:.0} GB RAM available\n",
        args.model,
        path.display(),
        cfg.params() as f64 / 1e9,
        cfg.kv_bytes_per_token() / 1024
    ));
    super::common::Out::new().line(recommend::render(&args.model, &r));
    Ok(())
}
