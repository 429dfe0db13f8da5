//! `devmesh config show`: the effective configuration, key by key, with where each value came from.

use figment::Figment;

use super::Config;

/// Renders the configuration as TOML, each value followed by a comment naming its source.
/// Secrets are already masked by their types' serialization.
pub fn render_with_sources(config: &Config, figment: &Figment) -> String {
    let value = toml::Value::try_from(config).expect("the configuration serializes to TOML");
    let mut out = String::new();
    let toml::Value::Table(root) = value else {
        return out;
    };
    let (sections, scalars): (Vec<_>, Vec<_>) = root.into_iter().partition(|(_, v)| v.is_table());
    for (key, value) in scalars {
        line(&mut out, &key, &key, &value, figment);
    }
    for (section, value) in sections {
        write_table(&mut out, &section, value, figment);
    }
    out
}

fn write_table(out: &mut String, path: &str, value: toml::Value, figment: &Figment) {
    let toml::Value::Table(table) = value else {
        return;
    };
    out.push_str(&format!("\n[{path}]\n"));
    let (nested, scalars): (Vec<_>, Vec<_>) = table.into_iter().partition(|(_, v)| v.is_table());
    for (key, value) in scalars {
        line(out, &key, &format!("{path}.{key}"), &value, figment);
    }
    for (key, value) in nested {
        write_table(out, &format!("{path}.{key}"), value, figment);
    }
}

fn line(out: &mut String, key: &str, full_key: &str, value: &toml::Value, figment: &Figment) {
    let source = match figment.find_metadata(full_key) {
        Some(md) => match &md.source {
            Some(src) => format!("{} {}", md.name, src),
            None => md.name.to_string(),
        },
        None => super::load::DEFAULT_SOURCE.to_string(),
    };
    out.push_str(&format!("{key} = {value}  # {source}\n"));
}
