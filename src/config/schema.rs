//! The suite format as a JSON Schema, generated from the types that read
//! it (`lmcache-e2e config schema`; committed as
//! `schemas/suite.schema.json`, which editors use for TOML: taplo and Even
//! Better TOML). A test table's keys depend on its `kind`: each kind's
//! parameters are spelled out under an if/then of their own.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::params::{
    DeterminismParams, FaultToleranceParams, LmEvalParams, LongDocQaParams, MmluParams,
    RequestRateParams, ThroughputParams,
};
use super::{CheckConfig, Suite, TestConfig};

/// The schema of a suite file, every subschema inline (draft 7, which TOML
/// editors read).
pub(crate) fn suite() -> Value {
    let mut settings = schemars::generate::SchemaSettings::draft07();
    settings.inline_subschemas = true;
    let mut schema = settings.into_generator().into_root_schema_for::<Suite>();
    schema.insert("title".into(), json!("lmcache-e2e suite"));
    schema.to_value()
}

/// One kind's table: the keys every test has, and the kind's parameters,
/// nothing else.
fn kind<P: JsonSchema>(g: &mut SchemaGenerator, name: &str, common: &Map<String, Value>) -> Value {
    let params = g.subschema_for::<P>().to_value();
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

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
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
        let kinds = vec![
            kind::<LongDocQaParams>(g, "long_doc_qa", &common),
            kind::<MmluParams>(g, "mmlu", &common),
            kind::<ThroughputParams>(g, "throughput", &common),
            kind::<DeterminismParams>(g, "determinism", &common),
            kind::<LmEvalParams>(g, "lm_eval", &common),
            kind::<RequestRateParams>(g, "request_rate", &common),
            kind::<FaultToleranceParams>(g, "fault_tolerance", &common),
        ];
        json_schema!({
            "type": "object",
            "description": "A test: its kind, its parameters and the checks that gate on its metrics",
            "required": ["kind"],
            "properties": { "kind": g.subschema_for::<super::TestKind>().to_value() },
            "allOf": kinds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed schema is the one the types give: editing a suite
    /// type without regenerating it fails here.
    #[test]
    fn the_committed_schema_is_current() {
        let committed: Value =
            serde_json::from_str(include_str!("../../schemas/suite.schema.json"))
                .expect("schemas/suite.schema.json parses");
        assert!(
            committed == suite(),
            "schemas/suite.schema.json is stale: run `lmcache-e2e config schema > schemas/suite.schema.json`"
        );
    }
}
