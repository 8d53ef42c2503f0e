//! Adding and removing providers in `outlast.toml` in place: comments and layout are kept, the
//! result is validated before it replaces the file, and a provider that still holds shards is
//! never removed.

use std::path::Path;

use outlast_provider::ProviderSpec;
use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table};

use crate::config::Config;
use crate::error::EngineError;
use crate::store::Store;

fn edit_error(path: &Path, field: &str, message: impl Into<String>) -> EngineError {
    EngineError::Config { path: path.to_path_buf(), field: field.into(), message: message.into() }
}

fn read_doc(path: &Path) -> Result<DocumentMut, EngineError> {
    let text = std::fs::read_to_string(path).map_err(|e| edit_error(path, "(file)", e.to_string()))?;
    let doc = text.parse::<DocumentMut>().map_err(|e| edit_error(path, "(syntax)", e.to_string()))?;
    Ok(doc)
}

/// Validates `doc` as a whole configuration, then writes it over `path` atomically.
fn replace_config(path: &Path, doc: &DocumentMut) -> Result<Config, EngineError> {
    let text = doc.to_string();
    let cfg = Config::parse(&text, path)?;
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, &text).map_err(|e| EngineError::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| EngineError::io(format!("replacing {}", path.display()), e))?;
    Ok(cfg)
}

/// The configuration the config at `path` would become with `spec` added, validated, without
/// writing anything: a face checks it before it sets up the new location.
pub fn config_with(path: &Path, spec: &ProviderSpec) -> Result<Config, EngineError> {
    Config::parse(&with_provider(path, spec)?.to_string(), path)
}

/// Appends `spec` to the providers of the config at `path`. Refused (file unchanged) when the
/// name is taken or the result would not validate.
pub fn add_provider(path: &Path, spec: &ProviderSpec) -> Result<Config, EngineError> {
    replace_config(path, &with_provider(path, spec)?)
}

/// The config document at `path` with `spec` appended to its providers.
fn with_provider(path: &Path, spec: &ProviderSpec) -> Result<DocumentMut, EngineError> {
    let mut doc = read_doc(path)?;
    let mut t = Table::new();
    t["name"] = toml_edit::value(spec.name.as_str());
    t["domain"] = toml_edit::value(spec.domain.as_str());
    t["scheme"] = toml_edit::value(spec.scheme.as_str());
    let inline = |m: &std::collections::BTreeMap<String, String>| {
        let mut it = InlineTable::new();
        for (k, v) in m {
            it.insert(k, v.as_str().into());
        }
        it
    };
    t["options"] = toml_edit::value(inline(&spec.options));
    if !spec.env.is_empty() {
        t["env"] = toml_edit::value(inline(&spec.env));
    }
    match doc.get_mut("providers") {
        Some(Item::ArrayOfTables(a)) => a.push(t),
        Some(_) => return Err(edit_error(path, "providers", "is not an array of [[providers]] tables")),
        None => {
            let mut a = ArrayOfTables::new();
            a.push(t);
            doc.insert("providers", Item::ArrayOfTables(a));
        }
    }
    Ok(doc)
}

/// Removes provider `name` from the config at `path`. Refused while the store's index places
/// any shard there (evacuate it first), or when the providers left could not hold `n` shards.
pub async fn remove_provider(path: &Path, store: &Store, name: &str) -> Result<Config, EngineError> {
    // Both what the index records there and what manifests place there: a provider whose
    // blobs vanished has no rows left, yet objects still name it until evacuated.
    let shards = store.index().count_blobs_on(name).await?.shards;
    let placed = store.objects_placed_on(name).await?;
    if shards > 0 || placed > 0 {
        return Err(edit_error(
            path,
            "providers",
            format!(
                "`{name}` still holds {shards} shard blobs and is placed in {placed} objects; move them first with `outlast evacuate {name} --to OTHER`"
            ),
        ));
    }
    let mut doc = read_doc(path)?;
    let Some(Item::ArrayOfTables(a)) = doc.get_mut("providers") else {
        return Err(edit_error(path, "providers", "no [[providers]] tables"));
    };
    let Some(i) = a.iter().position(|t| t.get("name").and_then(|v| v.as_str()) == Some(name)) else {
        return Err(edit_error(path, "providers", format!("no provider named `{name}`")));
    };
    a.remove(i);
    let cfg = replace_config(path, &doc)?;
    store.index().clear_draining(name).await?;
    Ok(cfg)
}
