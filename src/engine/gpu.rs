//! GPU choice from `nvidia-smi`: parse its CSV queries, wait (up to a
//! timeout) until enough GPUs have the free memory and low utilisation a
//! run needs, and pick the ones with the most free memory.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::child::NoSecrets;
use crate::results::ErrorClass;

#[derive(Debug, thiserror::Error)]
pub(crate) enum GpuError {
    #[error("{count} GPU(s) asked for, but `nvidia-smi` is not on PATH; run on a GPU agent, or ask for no GPUs")]
    NoNvidiaSmi { count: usize },
    #[error("failed to run `nvidia-smi`: {0}")]
    Query(String),
    #[error("failed to parse `nvidia-smi` output line {line}: {message} (line: {text:?})")]
    Parse {
        line: usize,
        message: String,
        text: String,
    },
    #[error("{count} GPU(s) asked for, but this machine has {found}")]
    NotEnough { count: usize, found: usize },
    #[error("no {count} GPU(s) with at least {min_free_mib} MiB free and at most {max_util_pct} % utilisation after {waited:.0} s; last seen: {last}")]
    Timeout {
        count: usize,
        min_free_mib: u64,
        max_util_pct: u32,
        waited: f64,
        last: String,
    },
}

impl GpuError {
    /// The machine's GPUs or their driver.
    pub(crate) fn class(&self) -> ErrorClass {
        ErrorClass::Setup
    }
}

/// NVLink multicast off in NCCL, PyTorch's symmetric memory and NVSHMEM:
/// on shared multi-GPU hosts a program that uses it can put the host's
/// GPUs out of service (the device hosts set these for every job, and ask
/// that programs started with an environment of their own keep them).
pub(crate) const MULTICAST_OFF: &[(&str, &str)] = &[
    ("NCCL_NVLS_ENABLE", "0"),
    ("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1"),
    ("NVSHMEM_DISABLE_NVLS", "1"),
];

/// An engine's environment: the suite's, then [`MULTICAST_OFF`] where the
/// suite leaves a variable unset, with the job's own value where it has
/// one (a container inherits nothing from the job, so it is passed on).
pub(crate) fn engine_env(
    suite: &indexmap::IndexMap<String, String>,
    job: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        suite.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in MULTICAST_OFF {
        if !suite.contains_key(*k) {
            env.push((k.to_string(), job(k).unwrap_or_else(|| v.to_string())));
        }
    }
    env
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GpuState {
    pub index: u32,
    /// Absent from the three-column query form.
    pub memory_total_mib: Option<u64>,
    pub memory_free_mib: u64,
    /// Only in the header form that lists `memory.used` (reserved memory
    /// makes it less than total − free).
    pub memory_used_mib: Option<u64>,
    pub utilization_pct: u32,
    /// Only in the header form that lists `name` (`NVIDIA H200`).
    pub name: Option<String>,
}

impl GpuState {
    /// `GPU 0 NVIDIA H200 (140 GiB)`, as runs record the GPUs they saw.
    pub(crate) fn label(&self) -> String {
        let mut s = format!("GPU {}", self.index);
        if let Some(name) = &self.name {
            s.push(' ');
            s.push_str(name);
        }
        if let Some(mib) = self.memory_total_mib {
            s.push_str(&format!(" ({:.0} GiB)", mib as f64 / 1024.0));
        }
        s
    }
}

#[derive(Debug, Clone)]
pub(crate) struct GpuRequest {
    pub count: usize,
    pub min_free_mib: u64,
    pub max_util_pct: u32,
    pub timeout: Duration,
    pub poll: Duration,
}

/// The query `--query-gpu` asks for.
const QUERY_ARGS: &[&str] = &[
    "--query-gpu=index,memory.total,memory.free,utilization.gpu",
    "--format=csv,noheader,nounits",
];

fn number(field: &str) -> Option<u64> {
    // `81079 MiB`, `0 %` with units; `81079`, `0` without.
    field.split_whitespace().next()?.parse().ok()
}

/// Parses `--query-gpu` CSV: with a header (columns found by name, values
/// with units) or without one (`index, memory.free, utilization.gpu`).
pub(crate) fn parse(text: &str) -> Result<Vec<GpuState>, GpuError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let header: Option<Vec<String>> = match lines.peek() {
        Some((_, l)) if l.trim_start().starts_with("index") => {
            let cols = l
                .split(',')
                .map(|c| c.trim().split(' ').next().unwrap_or("").to_string())
                .collect();
            lines.next();
            Some(cols)
        }
        _ => None,
    };
    // Without a header: three columns (index, free, utilisation) or four
    // (index, total, free, utilisation).
    let four = header.is_none() && lines.peek().is_some_and(|(_, l)| l.split(',').count() >= 4);
    let shift = usize::from(four);
    let col = |name: &str, default: usize| {
        header
            .as_ref()
            .map_or(Some(default), |h| h.iter().position(|c| c == name))
    };
    let (ci, cf, cu) = (
        col("index", 0),
        col("memory.free", 1 + shift),
        col("utilization.gpu", 2 + shift),
    );
    let ct = match &header {
        Some(h) => h.iter().position(|c| c == "memory.total"),
        None => four.then_some(1),
    };
    let cused = header
        .as_ref()
        .and_then(|h| h.iter().position(|c| c == "memory.used"));
    let cname = header
        .as_ref()
        .and_then(|h| h.iter().position(|c| c == "name"));
    let (Some(ci), Some(cf), Some(cu)) = (ci, cf, cu) else {
        return Err(GpuError::Parse {
            line: 1,
            message: "the header lacks index, memory.free or utilization.gpu".into(),
            text: text.lines().next().unwrap_or("").into(),
        });
    };
    lines
        .map(|(i, l)| {
            let fields: Vec<&str> = l.split(',').map(str::trim).collect();
            let bad = |message: &str| GpuError::Parse {
                line: i + 1,
                message: message.into(),
                text: l.to_string(),
            };
            let get = |c: usize, what: &str| {
                fields
                    .get(c)
                    .and_then(|f| number(f))
                    .ok_or_else(|| bad(&format!("no numeric {what}")))
            };
            Ok(GpuState {
                index: get(ci, "index")? as u32,
                memory_total_mib: ct.and_then(|c| fields.get(c)).and_then(|f| number(f)),
                memory_free_mib: get(cf, "memory.free")?,
                memory_used_mib: cused.and_then(|c| fields.get(c)).and_then(|f| number(f)),
                // `[N/A]` (some boards report no utilisation) counts as busy.
                utilization_pct: fields.get(cu).and_then(|f| number(f)).unwrap_or(100) as u32,
                name: cname
                    .and_then(|c| fields.get(c))
                    .filter(|n| !n.is_empty())
                    .map(|n| n.chars().take(64).collect()),
            })
        })
        .collect()
}

/// The `count` eligible GPUs with the most free memory, if there are enough.
pub(crate) fn choose(gpus: &[GpuState], req: &GpuRequest) -> Option<Vec<GpuState>> {
    let mut ok: Vec<&GpuState> = gpus
        .iter()
        .filter(|g| g.memory_free_mib >= req.min_free_mib && g.utilization_pct <= req.max_util_pct)
        .collect();
    ok.sort_by(|a, b| {
        b.memory_free_mib
            .cmp(&a.memory_free_mib)
            .then(a.index.cmp(&b.index))
    });
    (ok.len() >= req.count).then(|| ok.iter().take(req.count).map(|g| (*g).clone()).collect())
}

fn describe(gpus: &[GpuState]) -> String {
    if gpus.is_empty() {
        return "no GPUs".into();
    }
    gpus.iter()
        .map(|g| {
            format!(
                "GPU {}: {} MiB free, {} %",
                g.index, g.memory_free_mib, g.utilization_pct
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Polls `query` (the text of `nvidia-smi` with [`QUERY_ARGS`]) until the
/// request can be met, the machine cannot ever meet it, or the timeout.
pub(crate) async fn wait_for<F, Fut>(
    req: &GpuRequest,
    mut query: F,
) -> Result<Vec<GpuState>, GpuError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<String, GpuError>>,
{
    let start = Instant::now();
    loop {
        let gpus = parse(&query().await?)?;
        if gpus.len() < req.count {
            return Err(GpuError::NotEnough {
                count: req.count,
                found: gpus.len(),
            });
        }
        if let Some(chosen) = choose(&gpus, req) {
            return Ok(chosen);
        }
        if start.elapsed() + req.poll > req.timeout {
            return Err(GpuError::Timeout {
                count: req.count,
                min_free_mib: req.min_free_mib,
                max_util_pct: req.max_util_pct,
                waited: start.elapsed().as_secs_f64(),
                last: describe(&gpus),
            });
        }
        tokio::time::sleep(req.poll).await;
    }
}

/// Runs the real `nvidia-smi`; no GPUs asked for means nothing to do.
pub(crate) async fn choose_gpus(req: &GpuRequest) -> Result<Vec<GpuState>, GpuError> {
    if req.count == 0 {
        return Ok(Vec::new());
    }
    let smi = which::which("nvidia-smi").map_err(|_| GpuError::NoNvidiaSmi { count: req.count })?;
    wait_for(req, || {
        let smi = smi.clone();
        async move { query_text(&smi).await }
    })
    .await
}

/// The query whose answer names its columns, `memory.used` among them.
const MEMORY_ARGS: &[&str] = &[
    "--query-gpu=index,name,uuid,memory.total,memory.used,memory.free,utilization.gpu",
    "--format=csv",
];

/// Every GPU `nvidia-smi` on PATH sees, with its name and memory in use;
/// `None` without `nvidia-smi` or when its answer cannot be read.
pub(crate) async fn snapshot() -> Option<Vec<GpuState>> {
    let smi = which::which("nvidia-smi").ok()?;
    parse(&smi_text(&smi, MEMORY_ARGS).await.ok()?).ok()
}

/// GPU memory in use now, summed over the GPUs `nvidia-smi` on PATH sees
/// (lmcache-tests' `gpu_memory` column); `None` without `nvidia-smi` or
/// when its answer cannot be read.
pub(crate) async fn memory_used_mib() -> Option<f64> {
    used_of(&snapshot().await?)
}

fn used_of(gpus: &[GpuState]) -> Option<f64> {
    let used: Option<Vec<u64>> = gpus.iter().map(|g| g.memory_used_mib).collect();
    used.filter(|u| !u.is_empty())
        .map(|u| u.iter().sum::<u64>() as f64)
}

/// How GPU memory settled after engines stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Settled {
    /// In use at the last look.
    pub used_mib: f64,
    /// From the first look to the one that found it back (or gave up).
    pub waited: Duration,
    /// Back within `slack_mib` of what was in use before they started.
    pub back: bool,
}

/// Polls `used` (MiB in use now) until it is back within `slack_mib` of
/// `before` or `timeout` passes: the driver frees a dead process's memory
/// a moment after it exits, and the next engine's memory check must not
/// see the last one's. `None` when memory cannot be read.
pub(crate) async fn settle<F, Fut>(
    before: f64,
    slack_mib: f64,
    timeout: Duration,
    poll: Duration,
    mut used: F,
) -> Option<Settled>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<f64>>,
{
    let start = Instant::now();
    loop {
        let now = used().await?;
        let back = now <= before + slack_mib;
        if back || start.elapsed() + poll > timeout {
            return Some(Settled {
                used_mib: now,
                waited: start.elapsed(),
                back,
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// The GPUs as `nvidia-smi` (at `smi`) sees them now.
pub(crate) async fn query(smi: &std::path::Path) -> Result<Vec<GpuState>, GpuError> {
    parse(&query_text(smi).await?)
}

async fn query_text(smi: &std::path::Path) -> Result<String, GpuError> {
    smi_text(smi, QUERY_ARGS).await
}

/// A wedged driver makes `nvidia-smi` hang: it gets this long, then is
/// killed.
const SMI_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// `nvidia-smi args`'s output; killed when it hangs or its caller gives up.
async fn smi_text(smi: &std::path::Path, args: &[&str]) -> Result<String, GpuError> {
    let run = tokio::process::Command::new(smi)
        .no_secrets()
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(SMI_TIMEOUT, run)
        .await
        .map_err(|_| {
            GpuError::Query(format!(
                "no answer within {} s (is the GPU driver wedged?)",
                SMI_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| GpuError::Query(e.to_string()))?;
    if !out.status.success() {
        return Err(GpuError::Query(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_gets_multicast_off_unless_the_suite_says_otherwise() {
        let suite: indexmap::IndexMap<String, String> = [
            ("PYTHONHASHSEED".to_string(), "0".to_string()),
            ("NCCL_NVLS_ENABLE".to_string(), "1".to_string()),
        ]
        .into_iter()
        .collect();
        let job = |k: &str| (k == "NVSHMEM_DISABLE_NVLS").then(|| "1".to_string());
        let env = engine_env(&suite, &job);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PYTHONHASHSEED"), Some("0"));
        // The suite's word stands; the rest default to off.
        assert_eq!(get("NCCL_NVLS_ENABLE"), Some("1"));
        assert_eq!(get("TORCH_SYMM_MEM_DISABLE_MULTICAST"), Some("1"));
        assert_eq!(get("NVSHMEM_DISABLE_NVLS"), Some("1"));
        assert_eq!(env.len(), 4);
        let none = engine_env(&indexmap::IndexMap::new(), &|_| None);
        assert_eq!(
            none,
            MULTICAST_OFF
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        );
    }

    mod fuzz_gpu {
        use super::*;
        use crate::results::fuzz::{mutated, timed};
        use proptest::prelude::proptest;

        proptest! {
            #[test]
            fn fuzz_nvidia_smi(bytes in mutated(include_bytes!("../../tests/fixtures/fuzz/nvidia-smi.csv"))) {
                let text = String::from_utf8_lossy(&bytes);
                if let Err(e) = timed("nvidia-smi output", || parse(&text)) {
                    assert!(e.to_string().contains("nvidia-smi"), "{e}");
                }
            }
        }
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/fixtures/nvidia-smi")
                .join(name),
        )
        .unwrap()
    }

    fn req(count: usize, timeout_ms: u64) -> GpuRequest {
        GpuRequest {
            count,
            min_free_mib: 70_000,
            max_util_pct: 20,
            timeout: Duration::from_millis(timeout_ms),
            poll: Duration::from_millis(10),
        }
    }

    fn gpu(index: u32, total: Option<u64>, free: u64, util: u32) -> GpuState {
        GpuState {
            index,
            memory_total_mib: total,
            memory_free_mib: free,
            memory_used_mib: None,
            utilization_pct: util,
            name: None,
        }
    }

    #[test]
    fn every_csv_form_of_the_real_output_parses() {
        let used = |mib, g: GpuState| GpuState {
            memory_used_mib: Some(mib),
            name: Some("NVIDIA H100 80GB HBM3".into()),
            ..g
        };
        assert_eq!(
            parse(&fixture("idle-query-gpu.csv")).unwrap(),
            vec![used(0, gpu(0, Some(81_559), 81_079, 0))]
        );
        assert_eq!(
            parse(&fixture("idle-query-gpu-noheader.csv")).unwrap(),
            vec![gpu(0, None, 81_079, 0)]
        );
        // memory.used as reported (29843), not total − free (30322).
        assert_eq!(
            parse(&fixture("busy-query-gpu.csv")).unwrap(),
            vec![used(29_843, gpu(0, Some(81_559), 51_237, 100))]
        );
        assert_eq!(
            parse(&fixture("busy-query-gpu-noheader.csv")).unwrap(),
            vec![gpu(0, None, 51_237, 100)]
        );
        // The four-column form this tool asks for.
        assert_eq!(
            parse("0, 143771, 143000, 3\n1, 81559, 81000, 0\n").unwrap()[0],
            gpu(0, Some(143_771), 143_000, 3)
        );
        let e = parse("0, lots, 3\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("memory.free"), "{e}");
    }

    #[test]
    fn a_gpu_is_labelled_with_its_name_and_size() {
        let g = &parse(&fixture("idle-query-gpu.csv")).unwrap()[0];
        assert_eq!(g.label(), "GPU 0 NVIDIA H100 80GB HBM3 (80 GiB)");
        assert_eq!(gpu(1, None, 5, 0).label(), "GPU 1");
    }

    #[tokio::test]
    async fn memory_settles_once_back_near_where_it_was_or_gives_up() {
        // 0 MiB before the engine; the driver frees its 40 GiB in steps.
        let seen = std::cell::RefCell::new(vec![41_000.0, 12_000.0, 300.0].into_iter());
        let s = settle(
            0.0,
            512.0,
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                let next = seen.borrow_mut().next();
                async move { next }
            },
        )
        .await
        .unwrap();
        assert!(s.back && s.used_mib == 300.0, "{s:?}");
        let s = settle(
            0.0,
            512.0,
            Duration::from_millis(30),
            Duration::from_millis(5),
            || async { Some(20_000.0) },
        )
        .await
        .unwrap();
        assert!(!s.back && s.used_mib == 20_000.0, "{s:?}");
        let none = settle(
            0.0,
            512.0,
            Duration::from_secs(1),
            Duration::from_millis(1),
            || async { None },
        )
        .await;
        assert_eq!(none, None, "no nvidia-smi, nothing to say");
    }

    #[test]
    fn the_most_free_eligible_gpus_are_chosen() {
        let gpus = [
            gpu(0, None, 71_000, 5),
            gpu(1, None, 80_000, 0),
            gpu(2, None, 79_000, 90),
            gpu(3, None, 75_000, 20),
        ];
        let indices =
            |c: Option<Vec<GpuState>>| c.map(|v| v.iter().map(|g| g.index).collect::<Vec<_>>());
        assert_eq!(indices(choose(&gpus, &req(2, 0))), Some(vec![1, 3]));
        assert_eq!(indices(choose(&gpus, &req(4, 0))), None);
    }

    #[tokio::test]
    async fn idle_is_chosen_busy_times_out_and_too_few_fails_at_once() {
        let idle = fixture("idle-query-gpu.csv");
        assert_eq!(
            wait_for(&req(1, 100), || async { Ok(idle.clone()) })
                .await
                .unwrap()[0]
                .index,
            0
        );

        let busy = fixture("busy-query-gpu-noheader.csv");
        let e = wait_for(&req(1, 50), || async { Ok(busy.clone()) })
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("after 0 s") && e.contains("GPU 0: 51237 MiB free, 100 %"),
            "{e}"
        );

        let calls = std::cell::Cell::new(0);
        let e = wait_for(&req(2, 10_000), || {
            calls.set(calls.get() + 1);
            async { Ok(idle.clone()) }
        })
        .await
        .unwrap_err();
        assert!(matches!(e, GpuError::NotEnough { count: 2, found: 1 }));
        assert_eq!(calls.get(), 1, "no waiting for GPUs that do not exist");
    }

    #[tokio::test]
    async fn waits_until_the_busy_gpu_frees_up() {
        let (busy, idle) = (fixture("busy-query-gpu.csv"), fixture("idle-query-gpu.csv"));
        let calls = std::cell::Cell::new(0);
        let got = wait_for(&req(1, 5_000), || {
            calls.set(calls.get() + 1);
            let text = if calls.get() < 3 {
                busy.clone()
            } else {
                idle.clone()
            };
            async move { Ok(text) }
        })
        .await
        .unwrap();
        assert_eq!(got[0].index, 0);
        assert_eq!(calls.get(), 3);
    }
}
