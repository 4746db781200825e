//! The suite format as a JSON Schema, generated from the types that read
//! it (`lmcache-e2e config schema`; committed as
//! `schemas/suite.schema.json`, which editors use for TOML: taplo and Even
//! Better TOML). A test table's keys depend on its `kind`: each kind's
//! parameters are spelled out under an if/then of their own.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::kind::TestKind;
use super::suite::{CheckConfig, Suite, TestConfig};

/// The schema of a suite file, every subschema inline (draft 7, which TOML
/// editors read).
pub(crate) fn suite(kinds: &[&dyn TestKind]) -> Value {
    let mut settings = schemars::generate::SchemaSettings::draft07();
    settings.inline_subschemas = true;
    let mut g = settings.into_generator();
    let mut schema = g.root_schema_for::<Suite>();
    schema.insert("title".into(), json!("lmcache-e2e suite"));
    let mut value = schema.to_value();
    // A test's keys depend on the kinds the suite is loaded with, which no
    // type knows: the tests' schema is built from them here.
    if let Some(tests) = value.pointer_mut("/properties/tests") {
        tests["additionalProperties"] = test(&mut g, kinds);
    }
    value
}

/// One kind's table: the keys every test has, and the kind's parameters,
/// nothing else.
fn kind(g: &mut SchemaGenerator, kind: &dyn TestKind, common: &Map<String, Value>) -> Value {
    let name = kind.name();
    let params = kind.schema(g);
    let mut props = params
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    props.extend(common.clone());
    props.insert("kind".into(), json!({ "const": name }));
    json!({
        "if": { "properties": { "kind": { "const": name } }, "required": ["kind"] },
        "then": { "properties": props, "additionalProperties": false },
    })
}

impl JsonSchema for TestConfig {
    fn schema_name() -> Cow<'static, str> {
        "TestConfig".into()
    }

    /// Stands in until [`suite`] puts the kinds' schema in its place.
    fn json_schema(_g: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "object" })
    }
}

/// A test: the keys every test has, and each kind's own under an if/then.
fn test(g: &mut SchemaGenerator, kinds: &[&dyn TestKind]) -> Value {
    let count = |what: &str| json!({ "type": "integer", "minimum": 1, "description": what });
    let mut common = Map::new();
    common.insert(
        "enabled".into(),
        json!({ "type": "boolean", "default": true }),
    );
    common.insert(
        "checks".into(),
        json!({ "type": "object", "additionalProperties": g.subschema_for::<CheckConfig>().to_value() }),
    );
    common.insert(
        "max_attempts".into(),
        count("runs of the test while only retryable checks fail"),
    );
    common.insert(
        "trials".into(),
        count("paired trials per engine (long_doc_qa, throughput)"),
    );
    common.insert(
        "max_trials".into(),
        count("the most trials more-trials may grow the test to"),
    );
    common.insert(
        "allow_failed_requests".into(),
        json!({ "type": "boolean", "default": false, "description": "let requests fail without failing the test (by default each engine's failed_requests, incomplete_requests, that no check bounds must be 0)" }),
    );
    common.insert(
        "record_only".into(),
        json!({ "type": "boolean", "default": false, "description": "measure without checks (the test is then a warning); without it a test with no checks is refused" }),
    );
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    let each: Vec<Value> = kinds.iter().map(|k| kind(g, *k, &common)).collect();
    json!({
        "type": "object",
        "description": "A test: its kind, its parameters and the checks that gate on its metrics",
        "required": ["kind"],
        "properties": { "kind": { "type": "string", "enum": names } },
        "allOf": each,
    })
}
