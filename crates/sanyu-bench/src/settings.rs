//! Every bench states the settings it runs with that differ from the
//! defaults a deployment starts from.

use sanyu_platform::Config;
use serde_json::Value;

/// Print every setting of `config` that differs from `Config::default()`,
/// one `path = value` per line (addresses, URLs and keys as `(set)`).
pub fn print_changed(config: &Config) {
    let (Ok(ours), Ok(defaults)) = (
        serde_json::to_value(config),
        serde_json::to_value(Config::default()),
    ) else {
        println!("settings changed from the defaults: (could not be listed)");
        return;
    };
    let mut changed = Vec::new();
    diff("", &ours, &defaults, &mut changed);
    println!("settings changed from the defaults ({}):", changed.len());
    for line in changed {
        println!("  {line}");
    }
}

fn diff(path: &str, ours: &Value, defaults: &Value, out: &mut Vec<String>) {
    match (ours, defaults) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(&p, v, b.get(k).unwrap_or(&Value::Null), out);
            }
        }
        (Value::Object(a), _) => {
            for (k, v) in a {
                diff(&format!("{path}.{k}"), v, &Value::Null, out);
            }
        }
        (a, b) if a != b => {
            let hidden = ["url", "secret", "key", "password", "listen", "endpoint"]
                .iter()
                .any(|w| path.rsplit('.').next().is_some_and(|leaf| leaf.contains(w)));
            if hidden {
                out.push(format!("{path} = (set)"));
            } else {
                out.push(format!("{path} = {a}"));
            }
        }
        _ => {}
    }
}
