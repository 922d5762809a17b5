//! Reading TOML so that every problem is reported at once: the keys
//! that fail are narrowed down one by one.

use super::*;

/// The configuration text as a table without the keys the problems name
/// (`a.b.c: …`); `None` when a problem names no removable key.
pub(super) fn without_keys(text: &str, problems: &[String]) -> Option<toml::Table> {
    let mut table: toml::Table = text.parse().ok()?;
    for problem in problems {
        let (path, _) = problem.split_once(": ")?;
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop()?;
        let mut current = &mut table;
        for part in parts {
            current = current.get_mut(part)?.as_table_mut()?;
        }
        current.remove(last)?;
    }
    Some(table)
}

/// Parses a TOML text into `T`, reporting every key whose value is wrong
/// (unknown keys, wrong types, unknown variants), each with its key path —
/// not only the first one serde stops at.
///
/// Each key of the text is tried alone on top of `T`'s defaults; a key whose
/// value fails is narrowed down into its sub-keys the same way.
pub fn parse_all_problems<T>(text: &str) -> Result<T, Vec<String>>
where
    T: serde::de::DeserializeOwned + Serialize + Default,
{
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| vec![e.to_string().trim().to_owned()])?;
    let whole = toml::Value::Table(table);
    let whole_error = match whole.clone().try_into::<T>() {
        Ok(config) => return Ok(config),
        Err(e) => e,
    };
    let defaults = toml::Value::try_from(T::default()).map_err(|e| vec![format!("internal: {e}")])?;
    let mut problems = Vec::new();
    narrow::<T>(&defaults, &mut Vec::new(), &whole, &mut problems);
    if problems.is_empty() {
        problems.push(whole_error.message().trim().to_owned());
    }
    Err(problems)
}

pub(super) fn narrow<T>(defaults: &toml::Value, path: &mut Vec<String>, value: &toml::Value, problems: &mut Vec<String>)
where
    T: serde::de::DeserializeOwned,
{
    let toml::Value::Table(table) = value else { return };
    for (key, sub) in table {
        path.push(key.clone());
        let mut trial = defaults.clone();
        if place(&mut trial, path, sub.clone())
            && let Err(error) = trial.try_into::<T>()
        {
            let before = problems.len();
            if sub.is_table() && lookup(defaults, path).is_some_and(toml::Value::is_table) {
                narrow::<T>(defaults, path, sub, problems);
            }
            if problems.len() == before {
                problems.push(format!("{}: {}", path.join("."), error.message().trim()));
            }
        }
        path.pop();
    }
}

/// Puts `value` at `path` in `root`; false when a parent is not a table.
pub(super) fn place(root: &mut toml::Value, path: &[String], value: toml::Value) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let mut node = root;
    for key in parents {
        let toml::Value::Table(table) = node else { return false };
        node = table.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let toml::Value::Table(table) = node else { return false };
    table.insert(last.clone(), value);
    true
}

pub(super) fn lookup<'v>(root: &'v toml::Value, path: &[String]) -> Option<&'v toml::Value> {
    path.iter().try_fold(root, |node, key| node.get(key))
}
