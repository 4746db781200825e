//! Where each value of a suite came from (a preset, a file, an
//! environment variable, `--set`), and typing a table with errors that
//! name the key and blame the layer that set it, in a maintainer's words.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::error::ConfigError;

/// The layer a value came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    Preset(&'static str),
    File(PathBuf),
    Env(&'static str),
    Set,
    /// A control run's change (`[controls.NAME]`).
    Control(String),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Preset(name) => write!(f, "preset `{name}`"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Set => f.write_str("--set"),
            Source::Control(name) => write!(f, "control `{name}`"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// The origin to blame for a key: the key's own, else its nearest parent's.
pub(super) fn blame(origins: &BTreeMap<String, Source>, key: &str, base: &Source) -> String {
    let mut k = key;
    loop {
        if let Some(s) = origins.get(k) {
            return s.to_string();
        }
        // A parent key blames whatever set one of its children.
        if let Some((_, s)) = origins
            .range(format!("{k}.")..)
            .next()
            .filter(|(c, _)| c.starts_with(&format!("{k}.")))
        {
            return s.to_string();
        }
        match k.rsplit_once('.') {
            Some((parent, _)) => k = parent,
            None => return base.to_string(),
        }
    }
}

pub(super) fn typed<T: DeserializeOwned>(
    table: &Table,
    origins: &BTreeMap<String, Source>,
    base: &Source,
) -> Result<T, ConfigError> {
    typed_at(Value::Table(table.clone()), "", origins, base)
}

pub(super) fn typed_at<T: DeserializeOwned>(
    value: Value,
    prefix: &str,
    origins: &BTreeMap<String, Source>,
    base: &Source,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let key = match (prefix.is_empty(), inner.as_str()) {
            (true, _) => inner.clone(),
            (false, ".") => prefix.to_string(),
            (false, _) => format!("{prefix}.{inner}"),
        };
        let message = e.into_inner().to_string();
        // An unknown field's path is sometimes its parent and sometimes the
        // field itself: name the field once.
        let key = match unknown_field(&message) {
            Some(field) if key == "." || key.is_empty() => field,
            Some(field) if key == field || key.ends_with(&format!(".{field}")) => key,
            Some(field) => format!("{key}.{field}"),
            None => key,
        };
        ConfigError::Invalid {
            origin: blame(origins, &key, base),
            key,
            message: in_words(&message),
        }
    })
}

/// serde's and toml's wording made a maintainer's: the key is already
/// named, so toml's trailing "in `key`" goes; Rust type names become what
/// they accept; an unknown field gets the nearest known one.
pub(super) fn in_words(message: &str) -> String {
    let first = message
        .lines()
        .filter(|l| !(l.starts_with("in `") && l.ends_with('`')))
        .collect::<Vec<_>>()
        .join(" ");
    let first = first.trim();
    if let Some(field) = unknown_field(first) {
        let known: Vec<&str> = first
            .split("expected one of ")
            .nth(1)
            .or_else(|| first.split("expected ").nth(1))
            .map(|list| {
                // serde: "one of `a`, `b`, `c`", or "`a` or `b`" for two.
                list.split(", ")
                    .flat_map(|k| k.split(" or "))
                    .map(|k| k.trim_matches(['`', ' ']))
                    .collect()
            })
            .unwrap_or_default();
        return match super::near::suggest(&field, known.iter().copied()) {
            Some(near) => format!(
                "unknown key `{field}`; did you mean `{near}`? (known: {})",
                known.join(", ")
            ),
            None => format!("unknown key `{field}` (known: {})", known.join(", ")),
        };
    }
    if first == "missing field `metric`" {
        return "a check needs a `metric` and one bound (max, min, max_change_pct or min_change_pct)".into();
    }
    let words = [
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected u16", "expected a port number, 0 to 65535"),
        ("expected u8", "expected a whole number, 0 to 255"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a boolean", "expected true or false"),
        (
            "expected a sequence",
            "expected a list, e.g. [\"a\", \"b\"]",
        ),
    ];
    let mut out = first.to_string();
    for (rust, plain) in words {
        out = out.replace(rust, plain);
    }
    out
}

pub(super) fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

pub(super) fn invalid(
    key: String,
    origins: &BTreeMap<String, Source>,
    base: &Source,
    message: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        origin: blame(origins, &key, base),
        key,
        message: message.into(),
    }
}
