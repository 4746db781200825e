//! Editing a suite's TOML table by dotted key, as `--set`, the
//! environment and controls change it.

use toml::{Table, Value};

/// A `--set` value is read as a TOML value (`4`, `0.5`, `true`, `["a"]`,
/// `"quoted"`), and as a plain string when it is not one.
pub(super) fn set_value(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

pub(super) fn set_path(table: &mut Table, key: &str, value: Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let (last, parents) = parts.split_last().ok_or("empty key")?;
    let mut cur = table;
    for (i, part) in parents.iter().enumerate() {
        let entry = cur
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{}` is a value, not a table", parts[..=i].join(".")))?;
    }
    cur.insert(last.to_string(), value);
    Ok(())
}
