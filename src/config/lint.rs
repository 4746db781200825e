//! Every unknown key, wrong type and unknown choice of a suite at once,
//! found by walking its table against the suite's JSON Schema (the one
//! editors read), so a maintainer fixes all in one pass instead of one
//! serde error a run.

use serde_json::Value as Json;
use toml::Value;

/// (key, what is wrong) for each problem, in the table's order.
pub(super) fn problems(table: &toml::Table, schema: &Json) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(&Value::Table(table.clone()), schema, "", &mut out);
    out
}

fn walk(value: &Value, schema: &Json, path: &str, out: &mut Vec<(String, String)>) {
    // A test's keys depend on its kind: the branch whose kind matches.
    for branch in schema
        .get("allOf")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        if matches_if(value, branch.get("if")) {
            if let Some(then) = branch.get("then") {
                walk(value, then, path, out);
            }
        }
    }
    if let Some(why) = wrong_type(value, schema) {
        out.push((path.to_string(), why));
        return;
    }
    if let Some(why) = not_a_choice(value, schema) {
        out.push((path.to_string(), why));
        return;
    }
    match value {
        Value::Table(t) => table(t, schema, path, out),
        Value::Array(items) => {
            if let Some(item) = schema.get("items").filter(|i| i.is_object()) {
                for (i, v) in items.iter().enumerate() {
                    walk(v, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn table(t: &toml::Table, schema: &Json, path: &str, out: &mut Vec<(String, String)>) {
    let props = schema.get("properties").and_then(Json::as_object);
    let extra = schema.get("additionalProperties");
    for (k, v) in t {
        let key = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match (props.and_then(|p| p.get(k)), extra) {
            (Some(s), _) => walk(v, s, &key, out),
            (None, Some(s)) if s.is_object() => walk(v, s, &key, out),
            (None, Some(Json::Bool(false))) => {
                let known: Vec<&str> = props
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let hint = match super::near::suggest(k, known.iter().copied()) {
                    Some(near) => format!("; did you mean `{near}`?"),
                    None => format!(" (known: {})", known.join(", ")),
                };
                out.push((key, format!("unknown key `{k}`{hint}")));
            }
            _ => {}
        }
    }
}

/// Whether a table takes an `if` branch: each `const` it names matches.
fn matches_if(value: &Value, cond: Option<&Json>) -> bool {
    let Some(props) = cond
        .and_then(|c| c.get("properties"))
        .and_then(Json::as_object)
    else {
        return false;
    };
    props.iter().all(|(k, s)| {
        match (
            value.get(k).and_then(Value::as_str),
            s.get("const").and_then(Json::as_str),
        ) {
            (Some(v), Some(c)) => v == c,
            _ => false,
        }
    })
}

fn toml_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

fn wrong_type(v: &Value, schema: &Json) -> Option<String> {
    let types: Vec<&str> = match schema.get("type")? {
        Json::String(s) => vec![s.as_str()],
        Json::Array(a) => a.iter().filter_map(Json::as_str).collect(),
        _ => return None,
    };
    let fits = types.iter().any(|t| {
        matches!(
            (*t, v),
            ("string", Value::String(_))
                | ("integer", Value::Integer(_))
                | ("number", Value::Integer(_) | Value::Float(_))
                | ("boolean", Value::Boolean(_))
                | ("array", Value::Array(_))
                | ("object", Value::Table(_))
        )
    });
    if fits {
        return None;
    }
    let wanted: Vec<String> = types
        .iter()
        .filter(|t| **t != "null")
        .map(|t| match *t {
            "integer" => match schema.get("minimum").and_then(Json::as_i64) {
                Some(m) => format!("a whole number, {m} or more"),
                None => "a whole number".to_string(),
            },
            "number" => "a number".into(),
            "boolean" => "true or false".into(),
            "array" => "a list".into(),
            "object" => "a table".into(),
            _ => "a string".into(),
        })
        .collect();
    Some(format!(
        "expected {}, not {} ({v})",
        wanted.join(" or "),
        toml_type(v)
    ))
}

/// A string that must be one of a list of choices and is not.
fn not_a_choice(v: &Value, schema: &Json) -> Option<String> {
    let s = v.as_str()?;
    let mut choices: Vec<&str> = Vec::new();
    let alternatives = schema.get("oneOf").or_else(|| schema.get("anyOf"));
    for alt in
        std::iter::once(schema).chain(alternatives.and_then(Json::as_array).into_iter().flatten())
    {
        if let Some(e) = alt.get("enum").and_then(Json::as_array) {
            choices.extend(e.iter().filter_map(Json::as_str));
        }
        if let Some(c) = alt.get("const").and_then(Json::as_str) {
            choices.push(c);
        }
    }
    if choices.is_empty() || choices.contains(&s) {
        return None;
    }
    let hint = match super::near::suggest(s, choices.iter().copied()) {
        Some(near) => format!("did you mean `{near}`? "),
        None => String::new(),
    };
    Some(format!(
        "`{s}` is not one of the choices; {hint}choices: {}",
        choices.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_mistakes_are_found_in_one_pass() {
        let kinds = crate::workload::test_kinds();
        let schema = super::super::schema::suite(&kinds);
        let table: toml::Table = toml::from_str(
            r#"
[run]
schedul = "sequential"
[engines.lm]
role = "lmcahce"
kind = "sim"
[tests.ldqa]
kind = "long_doc_qa"
trials = 1.5
max_change_pct = 10
[tests.ldqa.checks.c]
metric = "query_ttft_per_prompt"
severty = "warning"
"#,
        )
        .unwrap();
        let found = problems(&table, &schema);
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "run.schedul",
                "engines.lm.role",
                "tests.ldqa.trials",
                "tests.ldqa.max_change_pct",
                "tests.ldqa.checks.c.severty",
            ],
            "{found:?}"
        );
        assert!(found[0].1.contains("did you mean `schedule`?"), "{found:?}");
        assert!(found[1].1.contains("did you mean `lmcache`?"), "{found:?}");
        assert!(
            found[2]
                .1
                .contains("expected a whole number, 1 or more, not a number (1.5)"),
            "{found:?}"
        );
    }
}
