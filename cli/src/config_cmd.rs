//! `rota config schema` and `rota config keys`: the JSON Schema of `rota.yaml` (for editors
//! and validators) and the list of every key in it, both derived from the config's types.

use rota_api::config::key_paths;

use crate::table;

/// Every key path with its description, as a table.
pub(crate) fn keys_table() -> String {
    let rows: Vec<Vec<String>> = key_paths()
        .into_iter()
        .map(|k| vec![k.path, k.description])
        .collect();
    table::render("", &["KEY", "DESCRIPTION"], &rows)
}

/// Every key path with its description, as data for `-o json|yaml`.
pub(crate) fn keys_data() -> Vec<KeyRow> {
    key_paths()
        .into_iter()
        .map(|k| KeyRow {
            key: k.path,
            description: k.description,
        })
        .collect()
}

/// One row of `rota config keys -o json|yaml`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct KeyRow {
    key: String,
    description: String,
}
