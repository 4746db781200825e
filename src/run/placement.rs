//! Where the engines run when `run.schedule = "auto"`: from the GPUs
//! `nvidia-smi` sees, one engine per GPU when there are enough, else the
//! first engine alone on one GPU and the others beside it when its measured
//! memory fits again, else one after the other. Pure: GPU states in, a
//! layout and its reason out.

use crate::config::{Role, Schedule, Suite};
use crate::engine::gpu::GpuState;

/// How the engines share the machine's GPUs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Layout {
    /// As `run.schedule` is written (or no GPU was seen).
    AsWritten(Schedule),
    /// Each placed engine on a GPU of its own (engine base name, GPU
    /// index), all started together.
    PerGpu(Vec<(String, u32)>),
    /// One GPU for all: the first engine starts alone; the others start
    /// beside it when the memory it was seen to take is free once more,
    /// else each after the last stopped.
    Shared { gpu: u32 },
}

/// The layout and the reason for it, as the plan and the run say it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Placement {
    pub layout: Layout,
    pub why: String,
}

/// What must be free beside an engine already up, for the next to start
/// next to it: its measured memory plus a tenth (the LMCache engine's
/// connector buffers) plus the driver's slack.
pub(crate) fn fits(first_took_mib: f64, free_mib: f64) -> bool {
    first_took_mib > 0.0 && free_mib - SLACK_MIB >= first_took_mib * 1.1
}

const SLACK_MIB: f64 = 1024.0;

/// Engines that take a GPU: those the run starts as processes, services
/// aside (they go with the LMCache engine).
fn placed(suite: &Suite) -> Vec<(String, Role)> {
    let mut v: Vec<(String, Role)> = suite
        .engines
        .iter()
        .filter(|(_, e)| e.kind.row().takes_gpu)
        .filter(|(_, e)| e.role != Role::Service)
        .map(|(n, e)| (n.clone(), e.role))
        .collect();
    v.sort_by_key(|(_, r)| *r);
    v
}

/// Decides the layout from the suite and the GPUs seen now (`None`: no
/// `nvidia-smi`).
pub(crate) fn decide(suite: &Suite, gpus: Option<&[GpuState]>) -> Placement {
    let written = |why: String| Placement {
        layout: Layout::AsWritten(suite.run.schedule),
        why,
    };
    if suite.run.schedule != Schedule::Auto {
        return written(format!(
            "as written (run.schedule = \"{}\")",
            suite.run.schedule.as_str()
        ));
    }
    let engines = placed(suite);
    let gpus = match gpus {
        Some(g) if !g.is_empty() => g,
        _ => {
            return Placement {
                layout: Layout::AsWritten(Schedule::Concurrent),
                why: "no GPU seen (no `nvidia-smi` answer): engines up together".into(),
            }
        }
    };
    if engines.len() < 2 {
        return Placement {
            layout: Layout::AsWritten(Schedule::Concurrent),
            why: format!("{} engine(s) to place: up together", engines.len()),
        };
    }
    let mut by_free: Vec<&GpuState> = gpus.iter().collect();
    by_free.sort_by_key(|g| (std::cmp::Reverse(g.memory_free_mib), g.index));
    if gpus.len() >= engines.len() {
        let pairs: Vec<(String, u32)> = engines
            .iter()
            .zip(&by_free)
            .map(|((n, _), g)| (n.clone(), g.index))
            .collect();
        let said: Vec<String> = pairs
            .iter()
            .map(|(n, g)| format!("`{n}` on GPU {g}"))
            .collect();
        return Placement {
            layout: Layout::PerGpu(pairs),
            why: format!(
                "{} GPUs for {} engines: one engine per GPU, started together ({})",
                gpus.len(),
                engines.len(),
                said.join(", ")
            ),
        };
    }
    let gpu = by_free[0];
    Placement {
        layout: Layout::Shared { gpu: gpu.index },
        why: format!(
            "{} GPU(s) for {} engines: all on GPU {} ({} MiB free); `{}` starts alone, the others beside it if the memory it takes is free again, else one after the other",
            gpus.len(),
            engines.len(),
            gpu.index,
            gpu.memory_free_mib,
            engines[0].0
        ),
    }
}

/// The GPU each engine is given (`CUDA_VISIBLE_DEVICES`), by base name:
/// services go with the LMCache engine.
pub(crate) fn gpu_of(suite: &Suite, layout: &Layout, engine: &str) -> Option<u32> {
    let e = suite.engines.get(engine)?;
    match layout {
        Layout::AsWritten(_) => None,
        Layout::Shared { gpu } => e.kind.row().takes_gpu.then_some(*gpu),
        Layout::PerGpu(pairs) => {
            let find = |n: &str| pairs.iter().find(|(p, _)| p == n).map(|(_, g)| *g);
            match e.role {
                Role::Service => pairs
                    .iter()
                    .find(|(n, _)| {
                        suite
                            .engines
                            .get(n)
                            .is_some_and(|x| x.role == Role::Lmcache)
                    })
                    .map(|(_, g)| *g),
                _ => find(engine),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, free: u64) -> GpuState {
        GpuState {
            index,
            memory_total_mib: Some(143771),
            memory_free_mib: free,
            memory_used_mib: None,
            utilization_pct: 0,
            name: None,
        }
    }

    fn suite(schedule: &str) -> Suite {
        let text = format!(
            "[run]\nschedule = \"{schedule}\"\n\
             [engines.server]\nrole = \"service\"\nkind = \"process\"\ncommand = \"true\"\n\
             [engines.lmcache]\nrole = \"lmcache\"\nkind = \"process\"\ncommand = \"true\"\n\
             [engines.baseline]\nrole = \"baseline\"\nkind = \"process\"\ncommand = \"true\"\n"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn enough_gpus_give_each_engine_its_own_the_roomiest_first() {
        let s = suite("auto");
        let p = decide(&s, Some(&[gpu(0, 1000), gpu(1, 80000), gpu(2, 70000)]));
        assert_eq!(
            p.layout,
            Layout::PerGpu(vec![("baseline".into(), 1), ("lmcache".into(), 2)])
        );
        assert!(p.why.contains("one engine per GPU"), "{}", p.why);
        // The LMCache server shares its engine's GPU.
        assert_eq!(gpu_of(&s, &p.layout, "server"), Some(2));
        assert_eq!(gpu_of(&s, &p.layout, "baseline"), Some(1));
    }

    #[test]
    fn one_gpu_is_shared_and_no_gpu_or_a_written_schedule_is_kept() {
        let s = suite("auto");
        let p = decide(&s, Some(&[gpu(0, 143000)]));
        assert_eq!(p.layout, Layout::Shared { gpu: 0 });
        assert!(p.why.contains("`baseline` starts alone"), "{}", p.why);
        assert_eq!(
            decide(&s, None).layout,
            Layout::AsWritten(Schedule::Concurrent)
        );
        let written = suite("sequential");
        assert_eq!(
            decide(&written, Some(&[gpu(0, 1), gpu(1, 1)])).layout,
            Layout::AsWritten(Schedule::Sequential)
        );
    }

    #[test]
    fn the_next_engine_fits_beside_when_the_first_took_less_than_is_free() {
        // vLLM at 0.25 of an H200 took 35,651 MiB; 107,505 MiB were free.
        assert!(fits(35651.0, 107505.0));
        // An L4 at 0.9: 20,700 MiB taken, 1,900 free.
        assert!(!fits(20700.0, 1900.0));
        assert!(!fits(0.0, 100000.0), "nothing measured is no evidence");
    }
}
