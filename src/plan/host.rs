//! A host's connection fields rendered (`address`, `user`, `port`, the
//! key and known_hosts files): what ssh is given and the fingerprint names.

use crate::runbook::template::{TemplateError, Templater};

/// A host's connection fields with templates rendered.
#[derive(Debug, Clone)]
pub struct RenderedHost {
    /// Address.
    pub address: String,
    /// Login user.
    pub user: Option<String>,
    /// Port, when the runbook or inventory gives one (else ssh's own
    /// configuration decides, as for Ansible).
    pub port: Option<u16>,
    /// Private key, when one is set (an empty value means none).
    pub identity_file: Option<String>,
    /// known_hosts file, when one is set.
    pub known_hosts_file: Option<String>,
}

/// Renders `address`, `user` and `port` of a host.
pub fn render_host(
    templater: &Templater,
    c: &minijinja::Value,
    spec: &crate::runbook::model::HostSpec,
) -> std::result::Result<RenderedHost, TemplateError> {
    let address = templater
        .render(&spec.address, c)
        .map_err(|e| TemplateError {
            message: format!("address: {}", e.message),
            ..e
        })?;
    let user = spec
        .user
        .as_deref()
        .map(|u| templater.render(u, c))
        .transpose()?;
    // ssh would read these as one of its options (`-oProxyCommand=...`).
    for (what, value) in [("address", Some(&address)), ("user", user.as_ref())] {
        if value.is_some_and(|v| v.trim_start().starts_with('-')) {
            return Err(TemplateError {
                message: format!(
                    "{what} starts with `-`, which ssh would read as an option; write the host's real {what}"
                ),
                range: None,
            });
        }
    }
    let port = match &spec.port {
        None => None,
        Some(p) => {
            let text = templater.render(&p.as_text(), c)?;
            Some(text.trim().parse::<u16>().map_err(|_| TemplateError {
                message: format!("port `{text}` is not a port number (1-65535)"),
                range: None,
            })?)
        }
    };
    let optional = |v: &Option<String>| -> std::result::Result<Option<String>, TemplateError> {
        Ok(v.as_deref()
            .map(|t| templater.render(t, c))
            .transpose()?
            .filter(|s| !s.trim().is_empty()))
    };
    Ok(RenderedHost {
        address,
        user: user.filter(|u| !u.trim().is_empty()),
        port,
        identity_file: optional(&spec.identity_file)?,
        known_hosts_file: optional(&spec.known_hosts_file)?,
    })
}
