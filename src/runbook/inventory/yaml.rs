//! The YAML form of an Ansible inventory.

use super::ini::expand_range;
use super::{check_name, HostVars, Raw};

/// The YAML form: top-level groups (usually `all`), each with `hosts`
/// (name → variables), `vars` and `children` (name → group).
use serde_norway::Value;

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        // `!vault |` and other tags: the tagged value (an encrypted
        // password is still a password login).
        Value::Tagged(t) => scalar(&t.value),
        _ => None,
    }
}

/// A YAML value as JSON for templates (a tag dropped, keys as text).
fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Tagged(t) => to_json(&t.value),
        Value::Sequence(items) => items.iter().map(to_json).collect(),
        Value::Mapping(map) => map
            .iter()
            .filter_map(|(k, v)| Some((scalar(k)?, to_json(v))))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => serde_json::to_value(other).unwrap_or(serde_json::Value::Null),
    }
}

/// The variables of a YAML mapping (a host's, a group's `vars`, a
/// `group_vars` file).
pub(super) fn vars_of(v: &Value) -> Result<HostVars, String> {
    let mut vars = HostVars::default();
    if let Value::Mapping(map) = v {
        for (k, v) in map {
            if let Some(k) = k.as_str() {
                let text = scalar(v).unwrap_or_default();
                vars.set_value(k, &text, to_json(v))?;
            }
        }
    }
    Ok(vars)
}

pub(super) fn parse_yaml(text: &str) -> Result<Raw, String> {
    let doc: Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let mut raw = Raw::default();
    fn group(raw: &mut Raw, name: &str, body: &Value) -> Result<(), String> {
        check_name(name)?;
        raw.group(name);
        let map = match body {
            Value::Mapping(m) => m,
            Value::Null => return Ok(()),
            _ => {
                return Err(format!(
                    "group `{name}` is not a mapping of hosts, vars and children"
                ))
            }
        };
        for (key, value) in map {
            match key.as_str() {
                Some("hosts") => {
                    if let Value::Mapping(hosts) = value {
                        for (h, v) in hosts {
                            // As Ansible: a name must be a string (`123:`
                            // is refused), a host's body a mapping or empty.
                            let Value::String(h) = h else {
                                return Err(format!("group `{name}`: host name `{}` is not text; quote it (Ansible refuses it too)", scalar(h).unwrap_or_default()));
                            };
                            if !matches!(v, Value::Mapping(_) | Value::Null) {
                                return Err(format!("group `{name}`: host `{h}` has a value that is not a mapping of variables (write `{h}: {{ ansible_host: ... }}`; Ansible refuses it too)"));
                            }
                            for host in expand_range(h)? {
                                check_name(&host)?;
                                raw.add_host(name, &host, vars_of(v)?);
                            }
                        }
                    } else if !matches!(value, Value::Null) {
                        return Err(format!("group `{name}`: `hosts` is not a mapping"));
                    }
                }
                Some("vars") => {
                    let vars = vars_of(value)?;
                    let entry = raw.vars.entry(name.to_string()).or_default();
                    *entry = entry.overlay(&vars);
                }
                Some("children") => {
                    if let Value::Mapping(children) = value {
                        for (c, body) in children {
                            let c = scalar(c).ok_or_else(|| {
                                format!("group `{name}`: a child group name is not text")
                            })?;
                            raw.children
                                .entry(name.to_string())
                                .or_default()
                                .push(c.clone());
                            group(raw, &c, body)?;
                        }
                    } else if !matches!(value, Value::Null) {
                        return Err(format!("group `{name}`: `children` is not a mapping"));
                    }
                }
                other => {
                    return Err(format!(
                        "group `{name}`: unknown key `{}` (a group has hosts, vars and children)",
                        other.unwrap_or("?")
                    ))
                }
            }
        }
        Ok(())
    }
    match &doc {
        Value::Mapping(top) => {
            for (name, body) in top {
                let name = scalar(name).ok_or("a top-level group name is not text")?;
                group(&mut raw, &name, body)?;
            }
        }
        Value::Null => {}
        _ => return Err("the inventory is not a mapping of groups (e.g. `all:`)".into()),
    }
    Ok(raw)
}
