//! Control runs: the suite as one of its `[controls.NAME]` changes it (a
//! fault injected, the LMCache engine launched as the baseline, `set`
//! overrides, a subset of tests), and the checks that a control makes
//! sense for the suite it is in.

use std::collections::BTreeMap;

use toml::{Table, Value};

use super::engine::{EngineKind, FaultRoute};
use super::error::ConfigError;
use super::origin::Source;
use super::suite::{ControlConfig, Expect, Suite};
use crate::results::Role;

/// Rewrites the suite's table into control `name`'s; every value it
/// changes is marked as the control's.
pub(super) fn apply(
    table: &mut Table,
    name: &str,
    origins: &mut BTreeMap<String, Source>,
) -> Result<(), ConfigError> {
    let control = read(table, name)?;
    let source = Source::Control(name.to_string());
    for set in &control.set {
        let (key, raw) = set
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| bad(name, "set", format!("{set:?} is not KEY=VALUE")))?;
        let key = key.trim();
        super::table::set_path(table, key, super::table::set_value(raw.trim()))
            .map_err(|m| bad(name, "set", format!("{key}: {m}")))?;
        origins.insert(key.to_string(), source.clone());
    }
    let lmcache = engines_with_role(table, Role::Lmcache);
    if control.lmcache_as_baseline {
        let baseline = engines_with_role(table, Role::Baseline)
            .into_iter()
            .next()
            .ok_or_else(|| {
                bad(
                    name,
                    "lmcache_as_baseline",
                    "the suite has no baseline engine".into(),
                )
            })?;
        for engine in &lmcache {
            as_baseline(table, &baseline, engine);
            origins.insert(format!("engines.{engine}"), source.clone());
        }
    }
    if let Some(fault) = control.fault {
        // LMCache's services too (the MP server writes the KV it restores
        // into vLLM's GPU memory itself), where a hook can reach them.
        let services: Vec<String> = engines_with_role(table, Role::Service)
            .into_iter()
            .filter(|n| injectable(table, n))
            .collect();
        for engine in lmcache.iter().chain(&services) {
            let key = format!("engines.{engine}.fault");
            super::table::set_path(table, &key, Value::String(fault.as_str().into()))
                .map_err(|m| bad(name, "fault", m))?;
            origins.insert(key, source.clone());
        }
    }
    if !control.tests.is_empty() {
        let tests: Vec<String> = table
            .get("tests")
            .and_then(Value::as_table)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        for test in tests.iter().filter(|t| !control.tests.contains(t)) {
            let key = format!("tests.{test}.enabled");
            super::table::set_path(table, &key, Value::Boolean(false))
                .map_err(|m| bad(name, "tests", m))?;
            origins.insert(key, source.clone());
        }
    }
    Ok(())
}

fn read(table: &Table, name: &str) -> Result<ControlConfig, ConfigError> {
    let controls = table.get("controls").and_then(Value::as_table);
    let Some(value) = controls.and_then(|c| c.get(name)) else {
        let known: Vec<&String> = controls.map(|c| c.keys().collect()).unwrap_or_default();
        return Err(ConfigError::Invalid {
            key: format!("controls.{name}"),
            origin: "--control".into(),
            message: if known.is_empty() {
                "the suite has no [controls]".into()
            } else {
                format!(
                    "no such control; the suite's: {}",
                    known
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        });
    };
    value
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| bad(name, "", e.message().to_string()))
}

fn bad(control: &str, key: &str, message: String) -> ConfigError {
    let key = match key {
        "" => format!("controls.{control}"),
        k => format!("controls.{control}.{k}"),
    };
    ConfigError::Invalid {
        key,
        origin: format!("control `{control}`"),
        message,
    }
}

/// Whether the engine's kind takes an injected fault.
fn injectable(table: &Table, engine: &str) -> bool {
    let kind = table
        .get("engines")
        .and_then(|e| e.get(engine))
        .and_then(|e| e.get("kind"))
        .and_then(Value::as_str);
    matches!(kind, Some("process" | "sim"))
}

fn engines_with_role(table: &Table, role: Role) -> Vec<String> {
    let Some(engines) = table.get("engines").and_then(Value::as_table) else {
        return Vec::new();
    };
    engines
        .iter()
        .filter(|(_, e)| e.get("role").and_then(Value::as_str) == Some(role.as_str()))
        .map(|(n, _)| n.clone())
        .collect()
}

/// The baseline's table under the LMCache engine's name, role and port.
fn as_baseline(table: &mut Table, baseline: &str, engine: &str) {
    let Some(engines) = table.get_mut("engines").and_then(Value::as_table_mut) else {
        return;
    };
    let Some(Value::Table(mut copy)) = engines.get(baseline).cloned() else {
        return;
    };
    let port = engines.get(engine).and_then(|e| e.get("port")).cloned();
    copy.insert("role".into(), Value::String(Role::Lmcache.as_str().into()));
    match port {
        Some(p) => copy.insert("port".into(), p),
        None => copy.remove("port"),
    };
    engines.insert(engine.to_string(), Value::Table(copy));
}

/// What is wrong with the suite's controls and engine faults: (key, why).
pub(super) fn problems(suite: &Suite) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, e) in &suite.engines {
        if e.fault.is_some() {
            if let Some(why) = cannot_inject(e.kind) {
                out.push((format!("engines.{name}.fault"), why));
            }
        }
    }
    let lmcache = suite.engine_with_role(Role::Lmcache);
    for (name, c) in &suite.controls {
        let key = |k: &str| format!("controls.{name}.{k}");
        for t in c.tests.iter().filter(|t| !suite.tests.contains_key(*t)) {
            out.push((key("tests"), format!("the suite has no test `{t}`")));
        }
        for f in &c.fails {
            if let Some(why) = unknown_check(suite, f) {
                out.push((key("fails"), why));
            }
        }
        if !c.fails.is_empty() && c.expect == Expect::Pass {
            out.push((
                key("fails"),
                "only a control expected to fail names the checks that must fail".into(),
            ));
        }
        if (c.fault.is_some() || c.lmcache_as_baseline) && lmcache.is_none() {
            out.push((
                key("fault"),
                "the suite has no LMCache engine to change".into(),
            ));
        }
        if c.lmcache_as_baseline && suite.engine_with_role(Role::Baseline).is_none() {
            out.push((
                key("lmcache_as_baseline"),
                "the suite has no baseline engine".into(),
            ));
        }
        if let (Some(_), Some((engine, e))) = (c.fault, lmcache) {
            if let Some(why) = cannot_inject(e.kind) {
                out.push((key("fault"), format!("engine `{engine}`: {why}")));
            }
        }
        if let Some(set) = c.set.iter().find(|s| !s.contains('=')) {
            out.push((key("set"), format!("{set:?} is not KEY=VALUE")));
        }
    }
    out
}

fn cannot_inject(kind: EngineKind) -> Option<String> {
    match kind.row().fault {
        FaultRoute::SimOption | FaultRoute::PythonHook => None,
        FaultRoute::Refused => Some(format!(
            "a fault is injected into a `sim` or `process` engine (a Python start-up hook on its PYTHONPATH), not a `{}` one",
            kind.as_str()
        )),
    }
}

/// Why `test.check` names no check of the suite, if it does not.
fn unknown_check(suite: &Suite, name: &str) -> Option<String> {
    let Some((test, check)) = name.split_once('.') else {
        return Some(format!("{name:?}: name a check as TEST.CHECK"));
    };
    match suite.tests.get(test) {
        None => Some(format!("{name:?}: the suite has no test `{test}`")),
        Some(t) if !t.checks.contains_key(check) => Some(format!(
            "{name:?}: test `{test}` has no check `{check}` (its checks: {})",
            t.checks.keys().cloned().collect::<Vec<_>>().join(", ")
        )),
        Some(_) => None,
    }
}
