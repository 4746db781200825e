//! Fault tolerance, as k3's `workloads/vllm/fault-tolerance.sh` runs it:
//! three benchmark runs against the LMCache engine, the LMCache server
//! stopped partway into the second (where k3 sends `kill <PID>`, the run's
//! supervisor stops the service), and every request of every run must
//! complete: an engine whose KV store dies must recompute, not fail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use indexmap::IndexMap;

use super::api::{own, Ctx, Output, Workload, WorkloadError, WorkloadKind};
use super::throughput::{vllm_bench_wanted, Driver, ThroughputParams};
use crate::client::OpenAiClient;
use crate::config::metrics::MetricSpec;
use crate::config::{
    at_least_one, invalid, Api, ConfigError, Invalid, KindParams, Suite, TestKind, TestParams,
    Typing, Wants,
};
use crate::results::{Metric, Role};
use schemars::SchemaGenerator;
use serde::{Deserialize, Serialize};

/// Parameters of the fault-tolerance workload (k3's
/// `workloads/vllm/fault-tolerance.sh`): three benchmark runs against the
/// LMCache engine (warm-up, one during which the LMCache server is stopped,
/// one after), each of which must complete every request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FaultToleranceParams {
    /// The service stopped mid-run (default: the suite's only service).
    pub service: Option<String>,
    pub num_prompts: usize,
    pub input_len: usize,
    pub output_len: u32,
    pub seed: u64,
    /// The stop comes this fraction of the warm-up run's duration into the
    /// second run, and no sooner than `min_stop_after_secs` (k3: 0.4, 3 s).
    pub stop_after_fraction: f64,
    pub min_stop_after_secs: f64,
    /// `native`, or `vllm-bench` to run `vllm bench serve` as k3 does.
    pub driver: Driver,
    pub vllm_command: String,
    pub endpoint: Api,
}

impl Default for FaultToleranceParams {
    fn default() -> Self {
        Self {
            service: None,
            num_prompts: 50,
            input_len: 10_000,
            output_len: 1,
            seed: 42,
            stop_after_fraction: 0.4,
            min_stop_after_secs: 3.0,
            driver: Driver::Native,
            vllm_command: "vllm".to_string(),
            endpoint: Api::Chat,
        }
    }
}

impl FaultToleranceParams {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        at_least_one(&[
            ("num_prompts", self.num_prompts as u64),
            ("input_len", self.input_len as u64),
            ("output_len", u64::from(self.output_len)),
        ])?;
        for (key, v) in [
            ("stop_after_fraction", self.stop_after_fraction),
            ("min_stop_after_secs", self.min_stop_after_secs),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return invalid(Some(key), "must be zero or more");
            }
        }
        Ok(())
    }

    /// The benchmark each of the three runs is.
    pub(crate) fn throughput(&self) -> ThroughputParams {
        ThroughputParams {
            num_prompts: self.num_prompts,
            input_len: self.input_len,
            output_len: self.output_len,
            seed: self.seed,
            driver: self.driver,
            vllm_command: self.vllm_command.clone(),
            endpoint: self.endpoint,
            ..ThroughputParams::default()
        }
    }
}

impl KindParams for FaultToleranceParams {
    fn validate(&self) -> Result<(), Invalid> {
        FaultToleranceParams::validate(self)
    }

    /// It stops a service mid-run: one the suite has.
    fn validate_in(&self, suite: &Suite) -> Result<(), Invalid> {
        let services: Vec<&String> = suite
            .engines
            .iter()
            .filter(|(_, e)| e.role == Role::Service)
            .map(|(n, _)| n)
            .collect();
        let ok = match &self.service {
            Some(name) => services.contains(&name),
            None => services.len() == 1,
        };
        if ok {
            return Ok(());
        }
        let have = if services.is_empty() {
            "none".to_string()
        } else {
            services
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        invalid(
            Some("service"),
            format!("fault tolerance stops a service mid-run: name one of the suite's engines with role = \"service\" (it has {have})"),
        )
    }

    fn wants(&self) -> Vec<Wants> {
        vllm_bench_wanted(self.driver, &self.vllm_command)
    }

    fn tokens_per_trial(&self) -> f64 {
        let t = self.throughput();
        (t.num_prompts * (t.input_len + t.output_len as usize)) as f64
    }
}

/// The kind `fault_tolerance`.
pub(crate) struct Kind;

impl TestKind for Kind {
    fn name(&self) -> &'static str {
        "fault_tolerance"
    }

    fn parse(&self, table: &Typing<'_>) -> Result<Box<dyn KindParams>, ConfigError> {
        table.typed::<FaultToleranceParams>()
    }

    fn schema(&self, g: &mut SchemaGenerator) -> serde_json::Value {
        g.subschema_for::<FaultToleranceParams>().to_value()
    }

    fn metrics(&self) -> &'static [MetricSpec] {
        use MetricSpec as M;
        const SPECS: &[MetricSpec] = &[
            M::new("stopped_mid_run", ""),
            M::new("ft_warmup_incomplete", "requests").smaller(),
            M::new("ft_midflight_incomplete", "requests").smaller(),
            M::new("ft_without_lmcache_incomplete", "requests").smaller(),
        ];
        SPECS
    }

    fn starter_checks(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("stopped_mid_run", "metric = \"stopped_mid_run\"\nmin = 1"),
            (
                "midflight_incomplete",
                "metric = \"ft_midflight_incomplete\"\nmax = 0",
            ),
        ]
    }

    fn roles(&self) -> &'static [Role] {
        &[Role::Lmcache]
    }
}

impl WorkloadKind for Kind {
    fn start(&self, params: &TestParams, _attempt: u32) -> Box<dyn Workload> {
        Box::new(FaultTolerance::new(
            own::<FaultToleranceParams>(params).clone(),
        ))
    }
}

/// The three runs, named as k3 names their result files.
const RUNS: [&str; 3] = ["ft_warmup", "ft_midflight", "ft_without_lmcache"];

pub(crate) struct FaultTolerance {
    params: FaultToleranceParams,
}

impl FaultTolerance {
    pub(crate) fn new(params: FaultToleranceParams) -> Self {
        Self { params }
    }

    /// The service to stop: the one named, else the suite's only one.
    fn service(&self, ctx: &Ctx<'_>) -> Result<String, WorkloadError> {
        let names = ctx.harness.service_names();
        let chosen = match &self.params.service {
            Some(name) => names
                .iter()
                .find(|n| *n == name || n.starts_with(&format!("{name}@"))),
            None if names.len() == 1 => names.first(),
            None => None,
        };
        chosen.cloned().ok_or_else(|| WorkloadError::NeedsEngine {
            test: ctx.test.to_string(),
            what: match &self.params.service {
                Some(name) => format!("a service named `{name}`"),
                None => format!(
                    "exactly one service to stop (it has {}; name one with `service`)",
                    names.len()
                ),
            },
        })
    }
}

/// One benchmark run; its metrics and files.
async fn bench(
    ctx: &Ctx<'_>,
    client: &OpenAiClient,
    url: &str,
    p: &FaultToleranceParams,
    label: &str,
) -> Result<(IndexMap<String, Metric>, Vec<String>), WorkloadError> {
    let tp = p.throughput();
    match p.driver {
        Driver::Native => {
            let r =
                super::throughput::run(client, ctx.model, &tp, ctx.out_dir, label, ctx.progress)
                    .await?;
            Ok((r.metrics, r.files))
        }
        Driver::VllmBench => {
            let model = super::shared::resolve_model(client, ctx.model).await?;
            let m = super::vllm_bench::run(
                &p.vllm_command,
                &tp.bench(),
                url,
                &model,
                ctx.out_dir,
                label,
            )
            .await?;
            Ok((
                m,
                vec![
                    format!("vllm_bench/{label}.json"),
                    format!("vllm_bench/{label}.log"),
                ],
            ))
        }
    }
}

/// When the service is stopped in the second run. The native driver
/// counts its requests, so the stop comes after a fraction of them (the
/// cache-warm second run may take a fraction of the warm-up's time, and a
/// clock could miss it); `vllm bench serve` reports nothing until it ends,
/// so there it is k3's clock: the fraction of the warm-up's duration, and
/// no sooner than `min_stop_after_secs`.
enum StopWhen {
    Requests { fraction: f64 },
    Clock(Duration),
}

impl StopWhen {
    fn of(p: &FaultToleranceParams, warmup_secs: f64) -> Self {
        match p.driver {
            Driver::Native => StopWhen::Requests {
                fraction: p.stop_after_fraction,
            },
            Driver::VllmBench => StopWhen::Clock(Duration::from_secs_f64(
                (p.stop_after_fraction * warmup_secs).max(p.min_stop_after_secs),
            )),
        }
    }

    async fn wait(&self, ctx: &Ctx<'_>) {
        match self {
            StopWhen::Clock(after) => tokio::time::sleep(*after).await,
            StopWhen::Requests { fraction } => loop {
                let s = ctx.progress.snapshot();
                let sent = s.stage == "requests" && s.total > 0;
                if sent && s.done as f64 >= fraction * s.total as f64 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            },
        }
    }
}

impl std::fmt::Display for StopWhen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopWhen::Requests { fraction } => {
                write!(f, "after {:.0} % of the requests", fraction * 100.0)
            }
            StopWhen::Clock(after) => write!(f, "{:.1} s into", after.as_secs_f64()),
        }
    }
}

impl Workload for FaultTolerance {
    fn run<'a>(
        &'a mut self,
        ctx: &'a Ctx<'a>,
        role: Role,
        _phase: &'a [Role],
        out: &'a mut Output,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            if role != Role::Lmcache {
                return Ok(());
            }
            let p = &self.params;
            let service = self.service(ctx)?;
            let (target, client) = ctx.engine(role)?;
            let mut m = IndexMap::new();
            let incomplete = |metrics: &IndexMap<String, Metric>| {
                metrics
                    .get("incomplete_requests")
                    .map_or(f64::NAN, |m| m.value)
            };

            let (warm, files) = bench(ctx, &client, &target.url, p, RUNS[0]).await?;
            out.files.extend(files);
            m.insert(
                format!("{}_incomplete", RUNS[0]),
                Metric::new(incomplete(&warm), "requests"),
            );
            let took = warm.get("duration").map_or(0.0, |d| d.value);
            let when = StopWhen::of(p, took);
            (ctx.say)(format!("stopping `{service}` {when} of the second run"));

            let start = Instant::now();
            let began = AtomicBool::new(false);
            let stopper = async {
                when.wait(ctx).await;
                began.store(true, Ordering::SeqCst);
                let stopped = ctx.harness.stop_service(&service).await;
                (start.elapsed(), stopped)
            };
            let run = bench(ctx, &client, &target.url, p, RUNS[1]);
            tokio::pin!(stopper, run);
            let mut stop: Option<(Duration, Result<(), String>)> = None;
            let mid = loop {
                tokio::select! {
                    r = &mut run => break r,
                    s = &mut stopper, if stop.is_none() => stop = Some(s),
                }
            };
            let run_took = start.elapsed();
            // A stop under way when the run ended is finished, never
            // abandoned halfway (the service is restarted after the trial).
            if stop.is_none() && began.load(Ordering::SeqCst) {
                stop = Some(stopper.await);
            }
            let (mid, files) = mid?;
            out.files.extend(files);
            let mid_run = matches!(&stop, Some((at, Ok(()))) if *at <= run_took);
            match &stop {
                Some((at, Ok(()))) if mid_run => (ctx.say)(format!(
                    "`{service}` stopped {:.1} s into the second run, which took {:.1} s",
                    at.as_secs_f64(),
                    run_took.as_secs_f64()
                )),
                Some((_, Err(e))) => out.notes.push(format!("failed to stop `{service}`: {e}")),
                _ => out.notes.push(format!(
                    "the second run ended ({:.1} s) before `{service}` was stopped: no fault was injected; raise num_prompts",
                    run_took.as_secs_f64()
                )),
            }
            m.insert(
                "stopped_mid_run".into(),
                Metric::new(f64::from(u8::from(mid_run)), ""),
            );
            m.insert(
                format!("{}_incomplete", RUNS[1]),
                Metric::new(incomplete(&mid), "requests"),
            );

            let (without, files) = bench(ctx, &client, &target.url, p, RUNS[2]).await?;
            out.files.extend(files);
            m.insert(
                format!("{}_incomplete", RUNS[2]),
                Metric::new(incomplete(&without), "requests"),
            );
            out.metrics.insert(role, m);
            Ok(())
        })
    }
}
