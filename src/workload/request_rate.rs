//! Request-rate experiments as LMCache's older harness (`lmcache-tests`) ran
//! them: one workload (QPS, duration, context length, query length) fed to
//! several engines at the same time, a per-request CSV with its columns, and
//! a plot of TTFT over time per engine (SVG, in place of its PDF).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde_json::Value;
use tokio::task::JoinSet;

use futures_util::future::BoxFuture;

use super::api::{own, Ctx, Output, Workload, WorkloadError, WorkloadKind};
use super::progress::Progress;
use crate::client::OpenAiClient;
use crate::config::metrics::MetricSpec;
use crate::config::{
    at_least_one, invalid, Api, ConfigError, Invalid, KindParams, TestKind, TestParams, Typing,
};
use crate::results::{Metric, Role};
use schemars::SchemaGenerator;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RequestRateParams {
    /// Requests per second, evenly spaced.
    pub qps: f64,
    pub duration_secs: f64,
    /// Tokens of the shared context at the head of each prompt.
    pub context_len: usize,
    /// Tokens of the question after it, unique per request.
    pub query_len: usize,
    pub output_len: u32,
    /// Requests cycle through this many contexts, so later ones can reuse KV.
    pub num_contexts: usize,
    pub endpoint: Api,
}

impl Default for RequestRateParams {
    fn default() -> Self {
        Self {
            qps: 2.0,
            duration_secs: 30.0,
            context_len: 5000,
            query_len: 50,
            output_len: 32,
            num_contexts: 4,
            endpoint: Api::Chat,
        }
    }
}

impl RequestRateParams {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        for (key, v) in [("qps", self.qps), ("duration_secs", self.duration_secs)] {
            if !(v.is_finite() && v > 0.0) {
                return invalid(Some(key), "must be a positive number");
            }
        }
        at_least_one(&[
            ("context_len", self.context_len as u64),
            ("output_len", u64::from(self.output_len)),
            ("num_contexts", self.num_contexts as u64),
        ])?;
        if self.query_len < 2 {
            return invalid(Some("query_len"), "must be at least 2");
        }
        Ok(())
    }
}

impl KindParams for RequestRateParams {
    fn validate(&self) -> Result<(), Invalid> {
        RequestRateParams::validate(self)
    }

    fn tokens_per_trial(&self) -> f64 {
        self.qps
            * self.duration_secs
            * (self.context_len + self.query_len + self.output_len as usize) as f64
    }
}

/// The kind `request_rate`.
pub(crate) struct Kind;

impl TestKind for Kind {
    fn name(&self) -> &'static str {
        "request_rate"
    }

    fn parse(&self, table: &Typing<'_>) -> Result<Box<dyn KindParams>, ConfigError> {
        table.typed::<RequestRateParams>()
    }

    fn schema(&self, g: &mut SchemaGenerator) -> serde_json::Value {
        g.subschema_for::<RequestRateParams>().to_value()
    }

    fn metrics(&self) -> &'static [MetricSpec] {
        use MetricSpec as M;
        const SPECS: &[MetricSpec] = &[
            M::new("mean_ttft", "s").smaller(),
            M::new("p50_ttft", "s").smaller(),
            M::new("p99_ttft", "s").smaller(),
            M::new("mean_throughput", "tok/s").bigger(),
            M::new("failed_requests", "requests").smaller(),
            M::new("requests", "requests"),
        ];
        SPECS
    }

    fn starter_checks(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "mean_ttft_vs_baseline",
            "metric = \"mean_ttft\"\nmax_change_pct = 10",
        )]
    }
}

impl WorkloadKind for Kind {
    fn start(&self, params: &TestParams, _attempt: u32) -> Box<dyn Workload> {
        Box::new(RequestRate::new(own::<RequestRateParams>(params).clone()))
    }
}

/// One request to one engine: a row of the CSV.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub timestamp: f64,
    pub engine: String,
    pub request_id: usize,
    pub ttft: Option<f64>,
    pub throughput: Option<f64>,
    pub error: Option<String>,
}

pub(crate) fn prompt(p: &RequestRateParams, i: usize) -> String {
    let context = i % p.num_contexts.max(1);
    let mut s = format!("Context-{context}:");
    for _ in 1..p.context_len {
        s.push_str(" lorem");
    }
    let _ = write!(s, " Question {i}:");
    for _ in 2..p.query_len {
        s.push_str(" why");
    }
    s
}

/// Sends the same schedule to every engine at once.
pub(crate) async fn run(
    engines: &[(String, OpenAiClient)],
    model: &str,
    p: &RequestRateParams,
    progress: &Arc<Progress>,
) -> Result<Vec<Row>, WorkloadError> {
    let count = (p.qps * p.duration_secs).floor().max(1.0) as usize;
    progress.start("requests", (count * engines.len()) as u64);
    let mut set = JoinSet::new();
    let start = Instant::now();
    for (name, client) in engines {
        let model = super::shared::resolve_model(client, model).await?;
        for i in 0..count {
            let at = Duration::from_secs_f64(i as f64 / p.qps);
            let (client, model, name, text, progress) = (
                client.clone(),
                model.clone(),
                name.clone(),
                prompt(p, i),
                progress.clone(),
            );
            let (api, max_tokens) = (p.endpoint, p.output_len);
            set.spawn(async move {
                tokio::time::sleep_until((start + at).into()).await;
                let o = client
                    .stream(api, &model, &text, max_tokens, &Value::Null)
                    .await;
                progress.finished(o.successful());
                let ttft = o.ttft.filter(|_| o.successful()).map(|t| t.as_secs_f64());
                let tokens = o.completion_tokens.unwrap_or(o.chunk_times.len() as u64) as f64;
                let gen = o.end.duration_since(o.start).as_secs_f64() - ttft.unwrap_or(0.0);
                Row {
                    timestamp: at.as_secs_f64(),
                    engine: name,
                    request_id: i,
                    ttft,
                    throughput: ttft.map(|_| if gen > 0.0 { tokens / gen } else { 0.0 }),
                    error: o.error,
                }
            });
        }
    }
    let mut rows = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(row) = r {
            rows.push(row);
        }
    }
    rows.sort_by(|a, b| (a.engine.as_str(), a.request_id).cmp(&(b.engine.as_str(), b.request_id)));
    Ok(rows)
}

pub(crate) fn metrics(rows: &[&Row]) -> IndexMap<String, Metric> {
    let mut ttfts: Vec<f64> = rows.iter().filter_map(|r| r.ttft).collect();
    ttfts.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        ttfts
            .get(((ttfts.len().saturating_sub(1)) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let tput: Vec<f64> = rows.iter().filter_map(|r| r.throughput).collect();
    let mean = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let mut m = IndexMap::new();
    m.insert("mean_ttft".into(), Metric::new(mean(&ttfts), "s"));
    m.insert("p50_ttft".into(), Metric::new(pct(0.5), "s"));
    m.insert("p99_ttft".into(), Metric::new(pct(0.99), "s"));
    m.insert("mean_throughput".into(), Metric::new(mean(&tput), "tok/s"));
    m.insert(
        "failed_requests".into(),
        Metric::new(
            rows.iter().filter(|r| r.ttft.is_none()).count() as f64,
            "requests",
        ),
    );
    m.insert(
        "requests".into(),
        Metric::new(rows.len() as f64, "requests"),
    );
    m
}

/// `lmcache-tests`' CSV: one row per request per engine, plus a last
/// `error` column. `gpu_memory` is the experiment's (MiB in use on the GPUs
/// at the last sample before it finished), empty where not measured.
pub(crate) fn csv(
    expr_id: &str,
    p: &RequestRateParams,
    rows: &[Row],
    gpu_memory: Option<f64>,
) -> String {
    let gpu = gpu_memory.map(|m| format!("{m:.0}")).unwrap_or_default();
    let mut s = String::from("expr_id,timestamp,engine_id,request_id,TTFT,throughput,context_len,query_len,gpu_memory,error\n");
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    for r in rows {
        let error = r
            .error
            .as_deref()
            .unwrap_or("")
            .replace(['"', '\n', '\r'], " ");
        let error = if error.contains(',') {
            format!("\"{error}\"")
        } else {
            error
        };
        let _ = writeln!(
            s,
            "{expr_id},{:.3},{},{},{},{},{},{},{gpu},{error}",
            r.timestamp,
            r.engine,
            r.request_id,
            opt(r.ttft),
            opt(r.throughput),
            p.context_len,
            p.query_len
        );
    }
    s
}

/// The chart's size, margins and scale.
struct Frame {
    w: f64,
    h: f64,
    left: f64,
    bottom: f64,
    top: f64,
    right: f64,
    max_x: f64,
    max_y: f64,
}

impl Frame {
    fn x(&self, t: f64) -> f64 {
        self.left + t / self.max_x * (self.w - self.left - self.right)
    }

    fn y(&self, v: f64) -> f64 {
        self.h - self.bottom - v / self.max_y * (self.h - self.bottom - self.top)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// TTFT over time, one line per engine.
pub(crate) fn svg(title: &str, rows: &[Row]) -> String {
    let f = Frame {
        w: 720.0,
        h: 360.0,
        left: 60.0,
        bottom: 40.0,
        top: 30.0,
        right: 20.0,
        max_x: rows
            .iter()
            .map(|r| r.timestamp)
            .fold(0.0, f64::max)
            .max(1e-9),
        max_y: rows
            .iter()
            .filter_map(|r| r.ttft)
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.1,
    };
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="12">"#,
        f.w, f.h
    );
    axes(&mut s, title, &f);
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let mut engines: Vec<&str> = rows.iter().map(|r| r.engine.as_str()).collect();
    engines.dedup();
    for (k, engine) in engines.iter().enumerate() {
        let color = colors[k % colors.len()];
        let points: Vec<String> = rows
            .iter()
            .filter(|r| r.engine == *engine)
            .filter_map(|r| {
                r.ttft
                    .map(|v| format!("{:.1},{:.1}", f.x(r.timestamp), f.y(v)))
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{color}">{}</text>"#,
            f.left + 10.0,
            f.top + 14.0 + 14.0 * k as f64,
            esc(engine)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The title, both axes, their labels and five ticks on each.
fn axes(s: &mut String, title: &str, f: &Frame) {
    let (w, h, left, bottom, top, right) = (f.w, f.h, f.left, f.bottom, f.top, f.right);
    let _ = write!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    let _ = write!(
        s,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        h - bottom,
        w - right,
        h - bottom
    );
    let _ = write!(
        s,
        r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
        h - bottom
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">time (s)</text>"#,
        w / 2.0,
        h - 8.0
    );
    let _ = write!(
        s,
        r#"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">TTFT (s)</text>"#,
        h / 2.0,
        h / 2.0
    );
    for k in 0..=4 {
        let v = f.max_y * k as f64 / 4.0;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{v:.2}</text>"#,
            left - 4.0,
            f.y(v) + 4.0
        );
        let t = f.max_x * k as f64 / 4.0;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{t:.1}</text>"#,
            f.x(t),
            h - bottom + 14.0
        );
    }
}

pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<String, WorkloadError> {
    super::shared::write_output(dir, "request_rate", name, bytes)
}

/// The request-rate test: every engine up in a phase gets the same
/// schedule at once, as lmcache-tests' experiments did; later roles of the
/// phase find their rows already there.
pub(crate) struct RequestRate {
    params: RequestRateParams,
}

impl RequestRate {
    pub(crate) fn new(params: RequestRateParams) -> Self {
        Self { params }
    }
}

/// How often GPU memory is read during an experiment.
const GPU_SAMPLE: Duration = Duration::from_secs(1);

/// Runs `work` while reading the GPU memory in use every [`GPU_SAMPLE`];
/// returns its result and the last reading taken before it finished (as
/// lmcache-tests records "GPU memory used before the experiment finished").
async fn with_gpu_memory<T>(
    ctx: &Ctx<'_>,
    work: impl std::future::Future<Output = T>,
) -> (T, Option<f64>) {
    let mut last = None;
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return (out, last),
            m = ctx.harness.gpu_memory_used_mib() => last = m.or(last),
        }
        tokio::select! {
            out = &mut work => return (out, last),
            () = tokio::time::sleep(GPU_SAMPLE) => {}
        }
    }
}

impl Workload for RequestRate {
    fn run<'a>(
        &'a mut self,
        ctx: &'a Ctx<'a>,
        role: Role,
        phase: &'a [Role],
        out: &'a mut Output,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            if out.metrics.contains_key(&role) {
                return Ok(());
            }
            let p = &self.params;
            let mut engines = Vec::new();
            for r in phase {
                let (target, client) = ctx.engine(*r)?;
                engines.push((target.name.clone(), client, *r));
            }
            let names: Vec<&str> = engines.iter().map(|(n, ..)| n.as_str()).collect();
            (ctx.say)(format!(
                "{} requests/s for {} s to {} at once",
                p.qps,
                p.duration_secs,
                names.join(", ")
            ));
            let clients: Vec<(String, OpenAiClient)> = engines
                .iter()
                .map(|(n, c, _)| (n.clone(), c.clone()))
                .collect();
            let (rows, gpu_memory) =
                with_gpu_memory(ctx, run(&clients, ctx.model, p, ctx.progress)).await;
            let rows = rows?;
            for (name, _, r) in &engines {
                let mine: Vec<&Row> = rows.iter().filter(|row| &row.engine == name).collect();
                let m = metrics(&mine);
                (ctx.say)(format!(
                    "{r}: mean TTFT {:.3} s, p99 {:.3} s, {} failed",
                    m["mean_ttft"].value, m["p99_ttft"].value, m["failed_requests"].value
                ));
                out.metrics.insert(*r, m);
            }
            let stem = ctx.test.replace('@', "-");
            let title = format!("{}: TTFT over time ({} req/s)", ctx.test, p.qps);
            let files = [
                (format!("{stem}.csv"), csv(ctx.test, p, &rows, gpu_memory)),
                (format!("{stem}_ttft.svg"), svg(&title, &rows)),
            ];
            for (name, body) in files {
                out.files.push(write(ctx.out_dir, &name, body.as_bytes())?);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_share_contexts_and_have_the_asked_lengths() {
        let p = RequestRateParams {
            context_len: 10,
            query_len: 4,
            num_contexts: 2,
            ..RequestRateParams::default()
        };
        let (a, b, c) = (prompt(&p, 0), prompt(&p, 1), prompt(&p, 2));
        assert_eq!(a.split_whitespace().count(), 10 + 4);
        assert!(
            c.starts_with(&a[..a.find("Question").unwrap()]),
            "request 2 reuses context 0"
        );
        assert!(!b.starts_with("Context-0"));
    }

    #[test]
    fn csv_and_svg_carry_every_engine() {
        let rows = vec![
            Row {
                timestamp: 0.0,
                engine: "baseline".into(),
                request_id: 0,
                ttft: Some(0.5),
                throughput: Some(10.0),
                error: None,
            },
            Row {
                timestamp: 0.5,
                engine: "baseline".into(),
                request_id: 1,
                ttft: None,
                throughput: None,
                error: Some("x".into()),
            },
            Row {
                timestamp: 0.0,
                engine: "lm<cache>".into(),
                request_id: 0,
                ttft: Some(0.1),
                throughput: Some(20.0),
                error: None,
            },
        ];
        let p = RequestRateParams::default();
        let c = csv("t", &p, &rows, Some(29_843.0));
        assert_eq!(c.lines().next().unwrap(), "expr_id,timestamp,engine_id,request_id,TTFT,throughput,context_len,query_len,gpu_memory,error");
        assert_eq!(
            c.lines().nth(2).unwrap(),
            "t,0.500,baseline,1,,,5000,50,29843,x"
        );
        assert!(csv("t", &p, &rows, None)
            .lines()
            .nth(2)
            .unwrap()
            .ends_with(",50,,x"));
        let s = svg("TTFT", &rows);
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("lm&lt;cache&gt;") && !s.contains("lm<cache>"));
        let refs: Vec<&Row> = rows.iter().filter(|r| r.engine == "baseline").collect();
        assert_eq!(metrics(&refs)["failed_requests"].value, 1.0);
    }
}
