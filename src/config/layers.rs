//! Loading a suite in layers: a file or preset, then the reference's
//! environment variables, then `--set KEY=VALUE`; each value keeps the layer
//! it came from so `config show` can say where it came from and errors can
//! name the key and the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use toml::{Table, Value};

use super::error::ConfigError;
use super::kind::{EnvType, Typing};
use super::kind::{TestKind, TestParams};
use super::origin::{blame, invalid, typed, Source};
use super::preflight::{needs_of, Need};
use super::presets;
use super::suite::{Suite, TestConfig};
use super::table::{set_path, set_value};
use crate::results::Role;

/// A loaded suite, with the typed parameters of each test and the origin
/// of every value that did not come from a default.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub suite: Suite,
    pub params: IndexMap<String, TestParams>,
    pub base: Source,
    origins: BTreeMap<String, Source>,
}

/// Where a suite comes from and what overrides it.
pub(crate) struct LoadRequest<'a> {
    pub preset: Option<&'a str>,
    pub file: Option<&'a Path>,
    /// TOML files merged over the suite (e.g. a thresholds file), after the
    /// environment and before `sets`.
    pub overlays: &'a [std::path::PathBuf],
    pub sets: &'a [String],
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The kinds a test may be (`workload`'s registry).
    pub kinds: &'a [&'static dyn TestKind],
}

pub(crate) fn load(req: &LoadRequest<'_>) -> Result<Loaded, ConfigError> {
    load_as(req, None)
}

/// The suite as its control `name` changes it, over every layer of `req`.
pub(crate) fn load_control(req: &LoadRequest<'_>, name: &str) -> Result<Loaded, ConfigError> {
    load_as(req, Some(name))
}

/// The environment's overrides (`MODEL`, ...), unless the suite or a `--set`
/// refuses them.
fn apply_env(
    req: &LoadRequest<'_>,
    table: &mut Table,
    origins: &mut BTreeMap<String, Source>,
    base: &Source,
) -> Result<(), ConfigError> {
    // The environment overrides need the roles and kinds the file declares.
    let first: Suite = typed(table, origins, base)?;
    // A suite (or a --set) can refuse them: a CI job's stray MODEL must not
    // change what a pinned suite runs.
    let set_off = req.sets.iter().any(|s| {
        s.split_once('=')
            .is_some_and(|(k, v)| k.trim() == "run.env_overrides" && v.trim() == "false")
    });
    let overrides = if first.run.env_overrides && !set_off {
        env_overrides(&first, req.kinds)
    } else {
        Vec::new()
    };
    for (var, key, ty) in overrides {
        let Some(raw) = (req.env)(var).filter(|v| !v.is_empty()) else {
            continue;
        };
        let value = env_value(var, &raw, ty)?;
        set_path(table, &key, value).map_err(|message| ConfigError::BadEnv {
            var: var.to_string(),
            value: raw.clone(),
            message,
        })?;
        origins.insert(key, Source::Env(var));
    }
    Ok(())
}

/// Each `--overlay` file merged over the suite, in order.
fn apply_overlays(
    overlays: &[PathBuf],
    table: &mut Table,
    origins: &mut BTreeMap<String, Source>,
) -> Result<(), ConfigError> {
    for path in overlays {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let source = Source::File(path.clone());
        let overlay: Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            origin: source.to_string(),
            message: e.to_string(),
        })?;
        merge(table, overlay.clone());
        mark_leaves(&Value::Table(overlay), "", &source, origins);
    }
    Ok(())
}

/// Each `--set key=value`, all of their mistakes at once.
fn apply_sets(
    sets: &[String],
    table: &mut Table,
    origins: &mut BTreeMap<String, Source>,
) -> Result<(), ConfigError> {
    let before = table.clone();
    let mut bad_sets = Vec::new();
    for set in sets {
        let Some((key, raw)) = set.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
            bad_sets.push(ConfigError::BadSet(set.clone()));
            continue;
        };
        let key = key.trim().to_string();
        match set_path(table, &key, set_value(raw.trim())) {
            Ok(()) => mark_leaves(&table_get(table, &key), &key, &Source::Set, origins),
            Err(message) => bad_sets.push(ConfigError::Invalid {
                key: key.clone(),
                origin: Source::Set.to_string(),
                message,
            }),
        }
    }
    bad_sets.extend(new_without_kind(&before, table));
    match bad_sets.len() {
        0 => Ok(()),
        1 => Err(bad_sets.remove(0)),
        _ => Err(ConfigError::Many(bad_sets)),
    }
}

fn load_as(req: &LoadRequest<'_>, control: Option<&str>) -> Result<Loaded, ConfigError> {
    let (text, base) = match (req.file, req.preset) {
        (Some(path), _) => (
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?,
            Source::File(path.to_path_buf()),
        ),
        (None, preset) => {
            let name = preset.unwrap_or("sim");
            let p = presets::find(name).ok_or_else(|| ConfigError::UnknownPreset(name.into()))?;
            (p.toml.to_string(), Source::Preset(p.name))
        }
    };
    let mut table: Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        origin: base.to_string(),
        message: e.to_string(),
    })?;
    let mut origins = BTreeMap::new();
    mark_leaves(&Value::Table(table.clone()), "", &base, &mut origins);

    apply_env(req, &mut table, &mut origins, &base)?;
    apply_overlays(req.overlays, &mut table, &mut origins)?;
    apply_sets(req.sets, &mut table, &mut origins)?;

    if let Some(name) = control {
        super::control::apply(&mut table, name, &mut origins)?;
    }
    misnamed_checks(&table, &origins, &base)?;
    every_mistake(&table, &origins, &base, req.kinds)?;
    let suite: Suite = typed(&table, &origins, &base)?;
    let params = validate(&suite, &origins, &base, &suite_dir_of(&base), req.kinds)?;
    Ok(Loaded {
        suite,
        params,
        base,
        origins,
    })
}

impl Loaded {
    /// Every effective value, defaults included, as `key = value` with its
    /// origin, in suite order.
    pub(crate) fn show(&self) -> Vec<(String, String, Source)> {
        let mut value = Value::try_from(&self.suite).unwrap_or(Value::Table(Table::new()));
        // Show each test's parameters with their defaults filled in.
        for (name, params) in &self.params {
            let resolved = params.params().to_toml();
            if let (Some(Value::Table(resolved)), Some(Value::Table(test))) = (
                resolved,
                value
                    .get_mut("tests")
                    .and_then(|t| t.get_mut(name.as_str())),
            ) {
                for (k, v) in resolved {
                    test.insert(k, v);
                }
            }
        }
        let mut out = Vec::new();
        flatten(&value, "", &mut |key, v| {
            let source = self.origin_of(key);
            out.push((key.to_string(), v.to_string(), source));
        });
        out
    }

    /// The directory relative paths in the suite are resolved against: the
    /// suite file's own, or the working directory for a preset.
    pub(crate) fn suite_dir(&self) -> PathBuf {
        suite_dir_of(&self.base)
    }

    /// The environment variables that overrode a suite value, with the key.
    pub(crate) fn env_overridden(&self) -> Vec<(&'static str, &str)> {
        self.origins
            .iter()
            .filter_map(|(k, s)| match s {
                Source::Env(var) => Some((*var, k.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Everything the engines and the tests `selected` need here, in suite
    /// order.
    pub(crate) fn needs(&self, selected: &[String]) -> Vec<Need> {
        needs_of(&self.suite, &self.params, &self.suite_dir(), selected)
    }

    /// The needs this machine does not meet, as the suite's problems, at
    /// once, before an engine spends minutes starting.
    pub(crate) fn preflight(&self, selected: &[String]) -> Result<(), ConfigError> {
        let missing: Vec<ConfigError> = self
            .needs(selected)
            .into_iter()
            .filter(|n| n.found.is_none())
            .map(|n| ConfigError::Invalid {
                origin: self.blame(&n.key),
                key: n.key,
                message: n.fix,
            })
            .collect();
        match missing.len() {
            0 => Ok(()),
            1 => Err(missing.into_iter().next().expect("one")),
            _ => Err(ConfigError::Many(missing)),
        }
    }

    /// The layer to blame for a key's value (its own, or its parent's).
    pub(crate) fn blame(&self, key: &str) -> String {
        blame(&self.origins, key, &self.base)
    }

    fn origin_of(&self, key: &str) -> Source {
        self.origins.get(key).cloned().unwrap_or(Source::Default)
    }
}

fn suite_dir_of(base: &Source) -> PathBuf {
    match base {
        Source::File(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
        _ => PathBuf::new(),
    }
}

fn env_overrides(
    suite: &Suite,
    kinds: &[&'static dyn TestKind],
) -> Vec<(&'static str, String, EnvType)> {
    let mut out = vec![
        ("BUILD_ID", "run.build_id".to_string(), EnvType::Str),
        ("VENV_DIR", "setup.venv".to_string(), EnvType::Str),
        ("RESULTS_DIR", "run.results_dir".to_string(), EnvType::Str),
        // A suite that runs several models runs just MODEL when it is set.
        if suite.run.models.is_empty() {
            ("MODEL", "run.model".to_string(), EnvType::Str)
        } else {
            ("MODEL", "run.models".to_string(), EnvType::List)
        },
        (
            "MAX_WAIT_SECONDS",
            "run.readiness_timeout_secs".to_string(),
            EnvType::Float,
        ),
    ];
    for (var, role) in [
        ("VLLM_PORT", Role::Lmcache),
        ("VLLM_BASELINE_PORT", Role::Baseline),
    ] {
        if let Some((name, engine)) = suite.engine_with_role(role) {
            if engine.kind.started() {
                out.push((var, format!("engines.{name}.port"), EnvType::Int));
            }
        }
    }
    for (name, test) in &suite.tests {
        let Some(kind) = kind_named(kinds, &test.kind) else {
            continue;
        };
        for v in kind.env() {
            if let Some(check) = v.key.strip_prefix("checks.") {
                let check = check.split('.').next().unwrap_or_default();
                if !test.checks.contains_key(check) {
                    continue;
                }
            }
            out.push((v.var, format!("tests.{name}.{}", v.key), v.ty));
        }
    }
    out
}

fn env_value(var: &str, raw: &str, ty: EnvType) -> Result<Value, ConfigError> {
    let bad = |what: &str| ConfigError::BadEnv {
        var: var.to_string(),
        value: raw.to_string(),
        message: format!("expected {what}"),
    };
    Ok(match ty {
        EnvType::Str => Value::String(raw.to_string()),
        EnvType::List => Value::Array(vec![Value::String(raw.to_string())]),
        EnvType::Int => Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?),
        EnvType::Float => Value::Float(raw.trim().parse().map_err(|_| bad("a number"))?),
    })
}

/// Every unknown key, wrong type and unknown choice at once, each blamed
/// on the layer that set it (serde would stop at the first).
fn every_mistake(
    table: &Table,
    origins: &BTreeMap<String, Source>,
    base: &Source,
    kinds: &[&'static dyn TestKind],
) -> Result<(), ConfigError> {
    let kinds: Vec<&dyn TestKind> = kinds.iter().map(|k| *k as &dyn TestKind).collect();
    let mut found: Vec<ConfigError> = super::lint::problems(table, &super::schema::suite(&kinds))
        .into_iter()
        .map(|(key, message)| ConfigError::Invalid {
            origin: blame(origins, &key, base),
            key,
            message,
        })
        .collect();
    match found.len() {
        0 => Ok(()),
        1 => Err(found.remove(0)),
        _ => Err(ConfigError::Many(found)),
    }
}

/// A test or engine that only `--set` made, without the `kind` every one
/// needs: a misspelt name, most likely, so the nearest known one is named.
fn new_without_kind(before: &Table, after: &Table) -> Vec<ConfigError> {
    let mut out = Vec::new();
    for section in ["tests", "engines"] {
        let names = |t: &Table| -> Vec<String> {
            t.get(section)
                .and_then(Value::as_table)
                .map(|s| s.keys().cloned().collect())
                .unwrap_or_default()
        };
        let known = names(before);
        for name in names(after).into_iter().filter(|n| !known.contains(n)) {
            let made = after.get(section).and_then(|s| s.get(&name));
            if made.and_then(|m| m.get("kind")).is_some() {
                continue;
            }
            let hint = match super::near::suggest(&name, known.iter().map(String::as_str)) {
                Some(near) => format!("did you mean `{near}`? "),
                None => String::new(),
            };
            out.push(ConfigError::Invalid {
                key: format!("{section}.{name}"),
                origin: Source::Set.to_string(),
                message: format!(
                    "the suite has no {} `{name}`; {hint}its {section}: {} (a new one needs its kind)",
                    if section == "tests" { "test" } else { "engine" },
                    known.join(", ")
                ),
            });
        }
    }
    out
}

fn table_get(table: &Table, key: &str) -> Value {
    let mut cur = Value::Table(table.clone());
    for part in key.split('.') {
        match cur.get(part) {
            Some(v) => cur = v.clone(),
            None => return Value::Table(Table::new()),
        }
    }
    cur
}

/// Deep merge: tables merge key by key, anything else replaces.
fn merge(dst: &mut Table, src: Table) {
    for (k, v) in src {
        match (dst.get_mut(&k), v) {
            (Some(Value::Table(d)), Value::Table(s)) => merge(d, s),
            (_, v) => {
                dst.insert(k, v);
            }
        }
    }
}

fn mark_leaves(value: &Value, prefix: &str, source: &Source, out: &mut BTreeMap<String, Source>) {
    flatten(value, prefix, &mut |key, _| {
        out.insert(key.to_string(), source.clone());
    });
}

fn flatten(value: &Value, prefix: &str, f: &mut dyn FnMut(&str, &Value)) {
    match value {
        Value::Table(t) if !t.is_empty() => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &key, f);
            }
        }
        Value::Table(_) if prefix.is_empty() => {}
        v => f(prefix, v),
    }
}

/// A check without a metric is a new check; when its name is a near miss
/// of one that has a metric, it was meant to change that one (a thresholds
/// file with `[tests.long_doc_qa.checks.query_tfft] max = 0.3`).
fn misnamed_checks(
    table: &Table,
    origins: &BTreeMap<String, Source>,
    base: &Source,
) -> Result<(), ConfigError> {
    let Some(tests) = table.get("tests").and_then(Value::as_table) else {
        return Ok(());
    };
    for (test, body) in tests {
        let Some(checks) = body.get("checks").and_then(Value::as_table) else {
            continue;
        };
        let named: Vec<&str> = checks
            .iter()
            .filter(|(_, c)| c.get("metric").is_some())
            .map(|(n, _)| n.as_str())
            .collect();
        for (name, _) in checks.iter().filter(|(_, c)| c.get("metric").is_none()) {
            if let Some(near) = super::near::suggest(name, named.iter().copied()) {
                return Err(invalid(
                    format!("tests.{test}.checks.{name}"),
                    origins,
                    base,
                    format!("the suite has no check `{name}` to change; did you mean `{near}`? (a new check needs a `metric` and one bound)"),
                ));
            }
        }
    }
    Ok(())
}

/// Why `url` cannot be a server's address, if it cannot.
fn bad_server_url(url: &str) -> Option<String> {
    match reqwest::Url::parse(url.trim()) {
        Err(e) => Some(format!(
            "{url:?} is not a URL ({e}); give it as \"http://host:port\""
        )),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            Some(format!("{url:?} must start with http:// or https://"))
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Some(format!("{url:?} has no host")),
        Ok(_) => None,
    }
}

/// Everything wrong with a suite, found in one pass so a maintainer fixes
/// it all at once: each problem names its key and the layer that set it.
struct Problems<'a> {
    origins: &'a BTreeMap<String, Source>,
    base: &'a Source,
    found: Vec<ConfigError>,
}

impl Problems<'_> {
    fn bad(&mut self, key: String, message: impl Into<String>) {
        self.found
            .push(invalid(key, self.origins, self.base, message));
    }

    fn into_result<T>(self, ok: T) -> Result<T, ConfigError> {
        match self.found.len() {
            0 => Ok(ok),
            1 => Err(self.found.into_iter().next().expect("one")),
            _ => Err(ConfigError::Many(self.found)),
        }
    }
}

fn kind_named(kinds: &[&'static dyn TestKind], name: &str) -> Option<&'static dyn TestKind> {
    kinds.iter().copied().find(|k| k.name() == name)
}

fn validate(
    suite: &Suite,
    origins: &BTreeMap<String, Source>,
    base: &Source,
    dir: &Path,
    kinds: &[&'static dyn TestKind],
) -> Result<IndexMap<String, TestParams>, ConfigError> {
    let mut p = Problems {
        origins,
        base,
        found: Vec::new(),
    };
    validate_engines(suite, &mut p);
    validate_run(suite, &mut p);
    for (key, why) in super::control::problems(suite) {
        p.bad(key, why);
    }
    let mut params = IndexMap::new();
    for (name, test) in &suite.tests {
        let Some(kind) = kind_named(kinds, &test.kind) else {
            p.bad(
                format!("tests.{name}.kind"),
                unknown_kind(&test.kind, kinds),
            );
            continue;
        };
        validate_checks(suite, name, test, kind, &mut p);
        if let Some(typed) = validate_test(suite, name, test, kind, &mut p) {
            params.insert(name.clone(), typed);
        }
    }
    // A suite with problems gets what it lacks on this machine said with
    // them, so one look fixes all (a suite without problems is checked for
    // the tests a run selects, by `Loaded::preflight`).
    if !p.found.is_empty() {
        let all: Vec<String> = params.keys().cloned().collect();
        for need in needs_of(suite, &params, dir, &all) {
            if need.found.is_none() {
                p.bad(need.key, need.fix);
            }
        }
    }
    p.into_result(params)
}

fn validate_engines(suite: &Suite, p: &mut Problems<'_>) {
    if suite.engines.is_empty() {
        p.bad("engines".into(), "a suite needs at least one engine");
    }
    // Services may be many; baseline and LMCache are one each.
    for role in [Role::Baseline, Role::Lmcache] {
        let names: Vec<&String> = suite
            .engines
            .iter()
            .filter(|(_, e)| e.role == role)
            .map(|(n, _)| n)
            .collect();
        if names.len() > 1 {
            p.bad(
                format!("engines.{}.role", names[1]),
                format!(
                    "only one engine may have role `{role}` (also `{}`)",
                    names[0]
                ),
            );
        }
    }
    for (name, e) in &suite.engines {
        validate_engine(name, e, p);
    }
    if suite.run.schedule != super::suite::Schedule::Sequential {
        let mut seen: IndexMap<(String, u16), &String> = IndexMap::new();
        for (name, e) in &suite.engines {
            if let (Some(port), false) = (e.port.filter(|p| *p != 0), !e.kind.started()) {
                if let Some(other) = seen.insert((e.host.clone(), port), name) {
                    p.bad(
                        format!("engines.{name}.port"),
                        format!("`{other}` uses port {port} too; give each engine its own port, or set run.schedule = \"sequential\""),
                    );
                }
            }
        }
    }
}

fn validate_engine(name: &str, e: &super::engine::EngineConfig, p: &mut Problems<'_>) {
    if let Some((key, why)) = e.lacks() {
        p.bad(format!("engines.{name}.{key}"), why);
    }
    if let Some(path) = e
        .health_path
        .as_deref()
        .filter(|p| !p.is_empty() && (!p.starts_with('/') || p.contains(['?', '#', ' '])))
    {
        p.bad(
            format!("engines.{name}.health_path"),
            format!(
                "must be a path such as \"/health\" (or \"\" for /v1/models alone), not {path:?}"
            ),
        );
    }
    if let Some(bad) = e
        .files
        .keys()
        .find(|f| f.is_empty() || *f == "." || *f == ".." || f.contains(['/', '\\', '\0']))
    {
        p.bad(
            format!("engines.{name}.files"),
            format!("{bad:?} is not a plain file name (no directories): the files go into RESULTS_DIR/engines/{name}/"),
        );
    }
    if e.readiness == super::engine::Readiness::Health && e.health_path.as_deref() == Some("") {
        p.bad(
            format!("engines.{name}.health_path"),
            "readiness = \"health\" polls the health route alone: give it a path such as \"/healthcheck\"",
        );
    }
    if let Some(why) = e.url.as_deref().and_then(bad_server_url) {
        p.bad(format!("engines.{name}.url"), why);
    }
    if let Some((key, why)) = e.misplaced() {
        p.bad(format!("engines.{name}.{key}"), why);
    }
    if let Some(t) = e
        .readiness_timeout_secs
        .filter(|t| !(t.is_finite() && *t > 0.0))
    {
        p.bad(
            format!("engines.{name}.readiness_timeout_secs"),
            format!("must be a positive number of seconds, not {t}"),
        );
    }
}

fn validate_run(suite: &Suite, p: &mut Problems<'_>) {
    let run = &suite.run;
    for (key, v) in [
        ("run.readiness_timeout_secs", run.readiness_timeout_secs),
        ("run.request_timeout_secs", run.request_timeout_secs),
    ] {
        if !(v.is_finite() && v > 0.0) {
            p.bad(
                key.into(),
                format!("must be a positive number of seconds, not {v}"),
            );
        }
    }
    for (key, v) in [
        ("run.grace_period_secs", run.grace_period_secs),
        ("run.starting_report_secs", run.starting_report_secs),
        ("run.gpu_release_timeout_secs", run.gpu_release_timeout_secs),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            p.bad(key.into(), format!("must be zero or more seconds, not {v}"));
        }
    }
    if !matches!(run.inconclusive_exit, 0 | 1) {
        p.bad(
            "run.inconclusive_exit".into(),
            format!("must be 0 or 1, not {}", run.inconclusive_exit),
        );
    }
}

/// What `kind = "…"` must be, with the nearest kind when it is a typo.
fn unknown_kind(name: &str, kinds: &[&'static dyn TestKind]) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    let hint = match super::near::suggest(name, names.iter().copied()) {
        Some(near) => format!("did you mean `{near}`? "),
        None => String::new(),
    };
    format!("unknown kind `{name}`; {hint}kinds: {}", names.join(", "))
}

/// What a test without checks is told: nothing could fail it, the checks
/// to start from, and the way to measure without a verdict.
fn no_checks(name: &str, kind: &dyn TestKind) -> String {
    let starters: Vec<String> = kind
        .starter_checks()
        .iter()
        .map(|(check, body)| {
            format!("[tests.{name}.checks.{check}]\n{body}").replace('\n', "\n      ")
        })
        .collect();
    format!(
        "the test has no checks, so nothing it measures could fail it; add checks, for a start:\n\n      {}\n\n    (`lmcache-e2e list --checks` lists what it can gate on), or set record_only = true to measure without a verdict",
        starters.join("\n\n      ")
    )
}

/// Every check bounds a metric its test records, of an engine the suite has.
fn validate_checks(
    suite: &Suite,
    name: &str,
    test: &TestConfig,
    kind: &dyn TestKind,
    p: &mut Problems<'_>,
) {
    let prefix = format!("tests.{name}");
    let has = |role: Role| suite.engine_with_role(role).is_some();
    for role in kind.roles() {
        if !has(*role) {
            p.bad(
                prefix.clone(),
                format!(
                    "a {} test runs against the {role} engine, but no engine has role = \"{role}\"; add one under [engines]",
                    kind.name()
                ),
            );
        }
    }
    if test.enabled && test.checks.is_empty() && !test.record_only {
        p.bad(format!("{prefix}.checks"), no_checks(name, kind));
    }
    let pairs = kind.pairs_trials();
    for (check_name, c) in &test.checks {
        let key = format!("{prefix}.checks.{check_name}");
        let bounds = [c.max, c.min, c.max_change_pct, c.min_change_pct];
        let relative = c.max_change_pct.is_some() || c.min_change_pct.is_some();
        if bounds.iter().filter(|b| b.is_some()).count() != 1 {
            p.bad(
                key.clone(),
                "set exactly one of max, min, max_change_pct, min_change_pct",
            );
        }
        if !super::metrics::knows(kind, &c.metric) {
            let known = super::metrics::names(kind);
            let hint = match super::near::suggest(&c.metric, known.iter().copied()) {
                Some(near) => format!("did you mean `{near}`? "),
                None => String::new(),
            };
            p.bad(
                format!("{key}.metric"),
                format!(
                    "{} tests record no metric `{}`; {hint}they record {}, and any vLLM or LMCache counter (`vllm:…`, `lmcache…`); `lmcache-e2e list --checks` lists them",
                    kind.name(),
                    c.metric,
                    known.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
                ),
            );
        }
        let whose = if relative {
            vec![Role::Baseline, Role::Lmcache]
        } else {
            vec![c.engine]
        };
        for role in whose
            .into_iter()
            .filter(|r| !has(*r) && *r != Role::Service)
        {
            p.bad(
                format!("{key}.{}", if relative { "metric" } else { "engine" }),
                format!("the check bounds the {role} engine's value, but no engine has role = \"{role}\""),
            );
        }
        if c.on_inconclusive.wants_more_trials() && !pairs {
            p.bad(
                format!("{key}.on_inconclusive"),
                format!("more trials need paired trials, which {} tests do not run; use \"warn\" or \"fail\"", kind.name()),
            );
        }
    }
}

/// The test's own parameters, typed and checked; `None` when they are not.
fn validate_test(
    suite: &Suite,
    name: &str,
    test: &TestConfig,
    kind: &'static dyn TestKind,
    p: &mut Problems<'_>,
) -> Option<TestParams> {
    let prefix = format!("tests.{name}");
    let pairs = kind.pairs_trials();
    match test.trials {
        Some(0) => p.bad(format!("{prefix}.trials"), "must be at least 1"),
        Some(t) if t > 1 && !pairs => p.bad(
            format!("{prefix}.trials"),
            format!(
                "{} tests run no paired trials: they are judged per question or per output",
                kind.name()
            ),
        ),
        _ => {}
    }
    if let Some(m) = test.max_trials {
        if !pairs {
            p.bad(
                format!("{prefix}.max_trials"),
                format!("{} tests run no paired trials", kind.name()),
            );
        } else if m < test.trials() {
            p.bad(
                format!("{prefix}.max_trials"),
                format!("must be at least trials ({})", test.trials()),
            );
        }
    }
    let typing = Typing {
        table: Value::Table(test.params.clone()),
        prefix: &prefix,
        origins: p.origins,
        base: p.base,
    };
    let typed = match kind.parse(&typing) {
        Ok(t) => TestParams::new(kind, t),
        Err(e) => {
            p.found.push(e);
            return None;
        }
    };
    let mut ok = true;
    for bad in [typed.params().validate_in(suite), typed.params().validate()]
        .into_iter()
        .filter_map(Result::err)
    {
        ok = false;
        let key = match bad.key {
            Some(k) => format!("{prefix}.{k}"),
            None => prefix.clone(),
        };
        p.bad(key, bad.message);
    }
    ok.then_some(typed)
}
#[cfg(test)]
mod tests {
    use super::*;

    mod fuzz_suite {
        use super::*;
        use crate::results::fuzz::{mutated, timed};
        use proptest::prelude::{proptest, Strategy};

        proptest! {
            // A suite file, `--set`s and the reference's environment
            // variables of anyone's writing: loaded, or an error naming the
            // file, the `--set` or the variable; never a panic.
            #[test]
            fn fuzz_suite_toml(
                bytes in mutated(include_bytes!("../../presets/sim.toml")),
                set in "[a-z_.]{1,30}=[-0-9a-z\"\\[\\]{},. ]{0,20}".prop_map(String::from),
                var in proptest::sample::select(vec!["MODEL", "NUM_DOCUMENTS", "MAX_WAIT_SECONDS", "VLLM_PORT", "OUTPUT_LEN"]),
                value in "[-0-9a-z.e/ ]{0,12}",
            ) {
                let text = String::from_utf8_lossy(&bytes);
                if let Err(e) = timed("a suite", || load_str(&text, &[&set], &[(var, value.as_str())])) {
                    let e = e.to_string();
                    assert!(e.contains("suite.toml") || e.contains("--set") || e.contains(var), "{e}");
                }
            }
        }
    }

    fn load_str(text: &str, sets: &[&str], env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("suite.toml");
        std::fs::write(&path, text).unwrap();
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        load(&LoadRequest {
            overlays: &[],
            preset: None,
            file: Some(&path),
            sets: &sets,
            env: &lookup,
            kinds: &crate::workload::test_kinds(),
        })
    }

    const SUITE: &str = r#"
[engines.base]
role = "baseline"
kind = "sim"
[engines.lm]
role = "lmcache"
kind = "sim"
[tests.ldqa]
kind = "long_doc_qa"
num_documents = 3
[tests.ldqa.checks.query_ttft]
metric = "query_ttft_per_prompt"
max = 0.22
"#;

    #[test]
    fn env_and_set_override_the_file_and_are_attributed() {
        let l = load_str(
            SUITE,
            &[
                "tests.ldqa.num_documents=7",
                "engines.lm.sim.cache_tokens=0",
            ],
            &[
                ("MAX_LMCACHE_TTFT", "0.5"),
                ("VLLM_PORT", "8123"),
                ("DOCUMENT_LENGTH", "64"),
            ],
        )
        .unwrap();
        let p = l.params["ldqa"]
            .get::<crate::workload::long_doc_qa::LongDocQaParams>()
            .expect("ldqa is a long_doc_qa test");
        assert_eq!(p.num_documents, 7);
        assert_eq!(p.document_length, 64);
        assert_eq!(l.suite.tests["ldqa"].checks["query_ttft"].max, Some(0.5));
        assert_eq!(l.suite.engines["lm"].port, Some(8123));
        assert_eq!(l.suite.engines["lm"].sim.as_ref().unwrap().cache_tokens, 0);
        let shown = l.show();
        let find = |k: &str| shown.iter().find(|(key, _, _)| key == k).cloned().unwrap();
        assert_eq!(find("tests.ldqa.num_documents").2, Source::Set);
        assert_eq!(
            find("tests.ldqa.checks.query_ttft.max").2,
            Source::Env("MAX_LMCACHE_TTFT")
        );
        assert_eq!(find("engines.lm.port").2, Source::Env("VLLM_PORT"));
        assert!(matches!(find("engines.base.kind").2, Source::File(_)));
        assert_eq!(
            find("tests.ldqa.output_len"),
            (
                "tests.ldqa.output_len".into(),
                "200".into(),
                Source::Default
            )
        );
    }

    #[test]
    fn a_table_the_kind_does_not_use_is_refused_by_key() {
        let err = load_str(
            &SUITE.replace(
                "kind = \"sim\"\n[engines.lm]",
                "kind = \"sim\"\n[engines.base.container]\nimage = \"x\"\n[engines.lm]",
            ),
            &[],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`engines.base.container`") && err.contains("kind `sim` does not use"),
            "{err}"
        );
        let err = load_str(
            SUITE,
            &[
                "engines.lm.kind=\"process\"",
                "engines.lm.command=\"vllm\"",
                "engines.lm.sim.cache_tokens=0",
            ],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`engines.lm.sim`"),
            "the sim table on a process: {err}"
        );
    }

    #[test]
    fn unknown_keys_are_named_with_the_file() {
        let err = load_str(
            &SUITE.replace("num_documents = 3", "num_document = 3"),
            &[],
            &[],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("tests.ldqa.num_document"), "{msg}");
        assert!(msg.contains("suite.toml"), "{msg}");

        let err = load_str(
            &SUITE.replace(
                "kind = \"sim\"\n[engines.lm]",
                "kind = \"sim\"\nprot = 1\n[engines.lm]",
            ),
            &[],
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("engines.base.prot"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_key_and_origin() {
        let err = load_str(SUITE, &["engines.lm.port=\"high\""], &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`engines.lm.port`") && msg.contains("--set"),
            "{msg}"
        );

        let err = load_str(SUITE, &[], &[("VLLM_BASELINE_PORT", "nine")]).unwrap_err();
        assert!(err.to_string().contains("VLLM_BASELINE_PORT"), "{err}");
    }

    #[test]
    fn a_check_needs_exactly_one_bound() {
        let err = load_str(&format!("{SUITE}min = 0.1\n"), &[], &[]).unwrap_err();
        assert!(
            err.to_string().contains("tests.ldqa.checks.query_ttft"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_named() {
        let lookup = |_: &str| None;
        let err = load(&LoadRequest {
            overlays: &[],
            preset: None,
            file: Some(Path::new("/nonexistent/suite.toml")),
            sets: &[],
            env: &lookup,
            kinds: &crate::workload::test_kinds(),
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/suite.toml"), "{err}");
    }

    #[test]
    fn an_overlay_file_merges_thresholds_and_is_named_as_their_origin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thresholds.toml");
        std::fs::write(&path, "[tests.long_doc_qa.checks.query_ttft]\nmax = 0.3\n").unwrap();
        let lookup = |_: &str| None;
        let loaded = load(&LoadRequest {
            overlays: std::slice::from_ref(&path),
            preset: Some("sim"),
            file: None,
            sets: &[],
            env: &lookup,
            kinds: &crate::workload::test_kinds(),
        })
        .unwrap();
        let check = &loaded.suite.tests["long_doc_qa"].checks["query_ttft"];
        assert_eq!(check.max, Some(0.3));
        // The rest of the check (its metric) still comes from the preset.
        assert_eq!(check.metric, "query_ttft_per_prompt");
        let shown = loaded.show();
        let (_, _, origin) = shown
            .iter()
            .find(|(k, _, _)| k == "tests.long_doc_qa.checks.query_ttft.max")
            .unwrap();
        assert!(origin.to_string().contains("thresholds.toml"), "{origin}");
        std::fs::write(&path, "[tests\n").unwrap();
        let err = load(&LoadRequest {
            overlays: &[path],
            preset: Some("sim"),
            file: None,
            sets: &[],
            env: &lookup,
            kinds: &crate::workload::test_kinds(),
        })
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("thresholds.toml"), "{err}");
    }

    #[test]
    fn every_preset_loads() {
        let lookup = |_: &str| None;
        for p in crate::config::PRESETS {
            load(&LoadRequest {
                overlays: &[],
                preset: Some(p.name),
                file: None,
                sets: &[],
                env: &lookup,
                kinds: &crate::workload::test_kinds(),
            })
            .unwrap_or_else(|e| panic!("preset {}: {e}", p.name));
        }
    }
}
