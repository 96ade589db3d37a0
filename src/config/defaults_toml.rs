//! `config defaults`: every setting with its default, as TOML that loads
//! back to the defaults. Settings unset by default (TOML has no null) are
//! listed as comments in their table.
use std::collections::BTreeMap;

use serde_json::Value;

use super::Config;

pub fn defaults_toml() -> String {
    let defaults = Config::default();
    let rendered = toml::to_string_pretty(&defaults).unwrap_or_default();
    let mut unset = BTreeMap::new();
    if let Ok(tree) = serde_json::to_value(&defaults) {
        collect_unset(&tree, "", &mut unset);
    }
    let mut out = String::new();
    let mut table = String::new();
    for line in rendered.lines() {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            flush(&mut out, &table, &mut unset);
            table = header.to_owned();
        }
        out.push_str(line);
        out.push('\n');
    }
    flush(&mut out, &table, &mut unset);
    // Tables with nothing but unset settings have no header above.
    for (table, keys) in std::mem::take(&mut unset) {
        out.push_str(&format!("\n[{table}]\n"));
        for key in keys {
            out.push_str(&format!("# {key} =  (unset)\n"));
        }
    }
    out
}

fn flush(out: &mut String, table: &str, unset: &mut BTreeMap<String, Vec<String>>) {
    if let Some(keys) = unset.remove(table) {
        while out.ends_with("\n\n") {
            out.pop();
        }
        for key in keys {
            out.push_str(&format!("# {key} =  (unset)\n"));
        }
        out.push('\n');
    }
}

fn collect_unset(value: &Value, table: &str, unset: &mut BTreeMap<String, Vec<String>>) {
    let Value::Object(map) = value else { return };
    for (key, value) in map {
        match value {
            Value::Null => unset.entry(table.to_owned()).or_default().push(key.clone()),
            Value::Object(_) => {
                let nested = if table.is_empty() {
                    key.clone()
                } else {
                    format!("{table}.{key}")
                };
                collect_unset(value, &nested, unset);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Format;

    #[test]
    fn the_defaults_load_back_as_the_defaults() {
        let text = defaults_toml();
        let loaded: Config = figment::Figment::new()
            .merge(figment::providers::Toml::string(&text))
            .extract()
            .expect("the printed defaults load");
        assert_eq!(
            serde_json::to_value(&loaded).expect("json"),
            serde_json::to_value(Config::default()).expect("json")
        );
        for unset in ["# public_url =", "# otlp_endpoint =", "# cert_file ="] {
            assert!(text.contains(unset), "{unset} missing from:\n{text}");
        }
    }
}
