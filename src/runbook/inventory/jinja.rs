//! Jinja in inventory values (`ansible_host={{ myhost }}`), rendered from
//! the host's own merged variables as Ansible renders them. A connection
//! value that uses a name the inventory does not define leaves the host
//! refused where a step uses it (never reached at a wrong address); any
//! other value that cannot be rendered is kept as written.

use super::{HostVars, Inventory};

/// The connection variables, by what they set.
const CONNECTION: [&str; 8] = [
    "ansible_host",
    "ansible_ssh_host",
    "ansible_port",
    "ansible_ssh_port",
    "ansible_user",
    "ansible_ssh_user",
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
];

/// Renders every templated string value of every host.
pub(super) fn render(inv: &mut Inventory) {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, host) in inv.hosts.iter_mut() {
        render_host(&env, name, host);
    }
}

fn render_host(env: &minijinja::Environment<'_>, name: &str, host: &mut HostVars) {
    let templated: Vec<(String, String)> = host
        .vars
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .filter(|(_, v)| v.contains("{{") || v.contains("{%"))
        .collect();
    if templated.is_empty() {
        return;
    }
    let mut ctx = host.vars.clone();
    ctx.insert("inventory_hostname".into(), name.into());
    // A value may use another templated one: a few passes settle chains.
    for _ in 0..4 {
        for (key, text) in &templated {
            if let Ok(out) = env.render_str(text, &ctx) {
                ctx.insert(key.clone(), out.into());
            }
        }
    }
    for (key, text) in &templated {
        match env.render_str(text, &ctx) {
            Ok(out) => {
                if CONNECTION.contains(&key.as_str()) {
                    // Refused by `set` (a leading `-`) counts as unusable too.
                    if let Err(e) = host.set(key, &out) {
                        refuse(host, key, name, e);
                    }
                } else {
                    host.vars.insert(key.clone(), out.into());
                }
            }
            Err(_) if CONNECTION.contains(&key.as_str()) => refuse(
                host,
                key,
                name,
                format!(
                    "`{key}={text}`, a template that uses a name the inventory does not define"
                ),
            ),
            Err(_) => {}
        }
    }
}

/// Marks the host refused for `key`, its connection field left harmless.
fn refuse(host: &mut HostVars, key: &str, name: &str, why: String) {
    match key {
        "ansible_host" | "ansible_ssh_host" => host.address = Some(name.to_string()),
        "ansible_port" | "ansible_ssh_port" => host.port = None,
        "ansible_user" | "ansible_ssh_user" => host.user = None,
        _ => host.identity_file = None,
    }
    host.unsupported
        .insert(format!("{key} (template)"), Some(why));
}
