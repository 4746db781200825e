//! What `ci --dry-run` prints: the run as it would go, from the suite
//! alone, with nothing started, no port taken and nothing written.

use crate::config::{EngineConfig, Loaded, Readiness, Role, Schedule, TestKind};
use crate::engine::Planned;

/// Environment variables whose values a plan never shows.
fn secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL"]
        .iter()
        .any(|s| n.contains(s))
}

/// An argument as a shell would need it.
fn quoted(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+{}<>".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

fn command_line(e: &EngineConfig, model: &str) -> String {
    let port = e
        .port
        .map_or("<a free port>".to_string(), |p| p.to_string());
    // As the backend fills them in (engine/backend.rs).
    let health_port = e.health_port.map(|p| p.to_string());
    let args = e.args.iter().map(|a| {
        let a = a
            .replace("{port}", &port)
            .replace("{host}", &e.host)
            .replace("{model}", model);
        match &health_port {
            Some(p) => a.replace("{health_port}", p),
            None => a,
        }
    });
    let head = match crate::engine::planned(e) {
        Planned::Command(head) => head,
        Planned::Running(url) => return format!("(already running at {url})"),
    };
    std::iter::once(head)
        .chain(args.map(|a| quoted(&a)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn readiness(e: &EngineConfig, timeout: f64) -> String {
    let how = match (e.readiness, e.health_path.as_deref()) {
        (Readiness::Tcp, _) => "its port accepts".to_string(),
        (Readiness::Health, p) => format!("{} answers 2xx", p.unwrap_or("/health")),
        (Readiness::Http, Some("")) => "/v1/models lists a model".to_string(),
        (Readiness::Http, p) => format!("{} then /v1/models answer", p.unwrap_or("/health")),
    };
    format!("ready when {how}, at most {timeout:.0} s")
}

/// How a check's evidence is weighed, as the gate does it.
fn method(kind: &dyn TestKind, metric: &str, relative: bool, trials: u32) -> &'static str {
    if let Some(own) = crate::config::metrics::spec(kind, metric).method_for(relative) {
        return own.as_str();
    }
    match relative {
        true if trials > 1 => crate::results::method::T_TRIALS,
        true => "one value a side (no interval with 1 trial)",
        false => "the value itself",
    }
}

/// What the tool adds to every started engine's environment beyond its
/// suite's `env` (each only where the suite and the job leave it unset).
fn given_env_line(run: &crate::config::RunConfig) -> String {
    let off: Vec<String> = crate::engine::gpu::MULTICAST_OFF
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut line = format!(
        "every started engine: NVLink multicast off ({})",
        off.join(" ")
    );
    if let Some(dir) = &run.engine_cache {
        line.push_str(&format!(
            "; compile caches under {} (VLLM_CACHE_ROOT and the rest)",
            dir.display()
        ));
    }
    line
}

/// How trials pair the engines, and what a check that could not tell
/// exits with.
fn pairing_line(run: &crate::config::RunConfig) -> String {
    let pairing = match (run.pairing, run.schedule) {
        (crate::config::Pairing::Together, Schedule::Concurrent) => {
            "both engines served each trial at once, where the kind can (run.pairing = \"together\")"
        }
        _ => "baseline and LMCache one after the other, the order alternating",
    };
    format!(
        "paired trials: {pairing}; a check that asked for more trials and still could not tell: exit {}",
        run.inconclusive_exit
    )
}

/// Where the engines would run on this machine, from the GPUs seen now
/// (`gpus`); said only when the suite leaves it to the run.
pub(crate) fn placement_line(
    loaded: &Loaded,
    gpus: Option<&[crate::engine::gpu::GpuState]>,
) -> Option<String> {
    (loaded.suite.run.schedule == Schedule::Auto).then(|| {
        format!(
            "placement on this machine now: {}",
            super::placement::decide(&loaded.suite, gpus).why
        )
    })
}

/// Each engine in the order they start (services, baseline, LMCache):
/// how it is ready, its command line, its environment (secrets hidden).
fn engine_lines(suite: &crate::config::Suite, model: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut engines: Vec<(&String, &EngineConfig)> = suite.engines.iter().collect();
    // Services first, then baseline, then LMCache: the order they start.
    engines.sort_by_key(|(_, e)| match e.role {
        Role::Service => 0,
        Role::Baseline => 1,
        Role::Lmcache => 2,
    });
    for (name, e) in engines {
        let timeout = e
            .readiness_timeout_secs
            .unwrap_or(suite.run.readiness_timeout_secs);
        out.push(format!(
            "engine {name} ({}, {}): {}",
            e.role,
            e.kind.as_str(),
            readiness(e, timeout)
        ));
        out.push(format!("  $ {}", command_line(e, model)));
        if !e.env.is_empty() {
            let env: Vec<String> = e
                .env
                .iter()
                .map(|(k, v)| {
                    let shown = if secret(k) { "***" } else { v.as_str() };
                    format!("{k}={}", quoted(shown))
                })
                .collect();
            out.push(format!("  env {}", env.join(" ")));
        }
    }
    out
}

/// The plan, a line at a time.
pub(crate) fn lines(
    loaded: &Loaded,
    selected: &[String],
    results_dir: &std::path::Path,
) -> Vec<String> {
    let suite = &loaded.suite;
    let mut out = vec![format!(
        "plan of suite `{}` ({}): engines {}, results in {}",
        suite.run.name,
        loaded.base,
        match suite.run.schedule {
            Schedule::Concurrent => "up together",
            Schedule::Sequential => "one after the other (baseline first)",
            Schedule::Auto => "placed by the GPUs present (run.schedule = \"auto\")",
        },
        results_dir.display()
    )];
    out.push(given_env_line(&suite.run));
    out.push(pairing_line(&suite.run));
    for (model, label) in super::models::models_of(&suite.run) {
        if let Some(l) = label {
            out.push(format!("model {model} ({l})"));
        }
        out.extend(engine_lines(suite, &model));
    }
    for name in selected {
        let test = &suite.tests[name];
        let kind = loaded.params[name].kind();
        let attempts = test.attempts(kind.default_attempts());
        out.push(format!(
            "test {name} ({}): {} trial{}{}, at most {} attempt{}",
            kind.name(),
            test.trials(),
            if test.trials() == 1 { "" } else { "s" },
            if test.trials() > 1 {
                format!(" (up to {} when undecided)", test.max_trials())
            } else {
                String::new()
            },
            attempts,
            if attempts == 1 { "" } else { "s" },
        ));
        if kind.judges_outputs() {
            for caveat in super::caveats::of_suite(suite) {
                out.push(format!("  warning: {caveat}"));
            }
        }
        if test.record_only && test.checks.is_empty() {
            out.push("  warning: records only (record_only = true): no check judges it".into());
        }
        let counts_failures = kind
            .metrics()
            .iter()
            .any(|m| matches!(m.name, "failed_requests" | "incomplete_requests"));
        if counts_failures && !test.allow_failed_requests {
            out.push("  every engine's failed (incomplete) requests that no check bounds: must be 0 (allow_failed_requests = true lets them fail)".into());
        }
        out.extend(check_lines(kind, test));
    }
    out.push("nothing was started (--dry-run)".into());
    out
}

/// A test's checks, each with how its evidence is weighed.
fn check_lines(kind: &dyn TestKind, test: &crate::config::TestConfig) -> Vec<String> {
    let looks = crate::gate::evidence::Looks {
        first: test.trials() as usize,
        last: test.max_trials() as usize,
    };
    let mut out = Vec::new();
    for (check, c) in test.checks.iter().filter(|(_, c)| c.enabled) {
        let relative = c.max_change_pct.is_some() || c.min_change_pct.is_some();
        let sequential =
            match relative && c.on_inconclusive.wants_more_trials() && looks.sequential() {
                true => format!(
                    "; {} ({:.1} % each of up to {} looks)",
                    crate::gate::evidence::SEQUENTIAL,
                    (1.0 - looks.level()) * 100.0,
                    looks.count()
                ),
                false => String::new(),
            };
        out.push(format!(
            "  check {check}: {}; {}{sequential}",
            c.describe(),
            method(kind, &c.metric, relative, test.trials())
        ));
    }
    out
}

/// The controls that would run after the suite, each with what it changes
/// and the verdict it must reach.
pub(crate) fn control_lines<'a>(
    loaded: &Loaded,
    names: impl Iterator<Item = &'a String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        let c = &loaded.suite.controls[name];
        let mut changes: Vec<String> = Vec::new();
        if c.lmcache_as_baseline {
            changes.push("the LMCache engine launched as the baseline".into());
        }
        if let Some(f) = c.fault {
            changes.push(format!(
                "fault `{}` injected into the LMCache engine",
                f.as_str()
            ));
        }
        changes.extend(c.set.iter().map(|s| format!("--set {s}")));
        out.push(format!(
            "control {name} (expect {}): {}{}",
            c.expect.as_str().to_uppercase(),
            if changes.is_empty() {
                "the suite as it is".to_string()
            } else {
                changes.join(", ")
            },
            match (c.tests.is_empty(), c.fails.is_empty()) {
                (true, true) => String::new(),
                (false, true) => format!("; tests {}", c.tests.join(", ")),
                (true, false) => format!("; must fail {}", c.fails.join(" or ")),
                (false, false) => format!(
                    "; tests {}; must fail {}",
                    c.tests.join(", "),
                    c.fails.join(" or ")
                ),
            }
        ));
        if !c.about.is_empty() {
            out.push(format!("  {}", c.about));
        }
    }
    out
}
