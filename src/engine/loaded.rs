//! A runbook loaded, validated and planned for one command, with the
//! template context its steps render in and the executors its run uses
//! (every host's address rendered, `~` expanded).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Ctx;
use crate::error::{Error, Result};
use crate::exec;
use crate::plan::{self, Plan};
use crate::runbook::template::{Context, Templater};
use crate::runbook::{load, validate, Runbook};

/// A runbook loaded, validated and planned.
pub(super) struct Loaded {
    pub(super) runbook: Runbook,
    pub(super) plan: Plan,
    pub(super) templater: Templater,
    pub(super) ctx: Context,
}

impl Ctx {
    /// Loads, validates and plans the runbook at `path`; every problem at
    /// once (validation's and the templates').
    pub(super) fn load(
        &self,
        path: &Path,
        vars: &[(String, String)],
        run_id: i64,
    ) -> Result<Loaded> {
        let (file, source) = load::load(path)?;
        let (runbook, mut problems) = validate::validate_all(file, source, vars);
        let templater = Templater::new();
        let ctx = context(&runbook, &templater, run_id);
        let built = plan::build(&runbook, &ctx, &Templater::for_placeholders());
        // Every problem at once: the templates' along with validation's.
        if !problems.is_empty() {
            if let Err(Error::Invalid { diagnostics, .. }) = built {
                for d in diagnostics {
                    if !problems.contains(&d) {
                        problems.push(d);
                    }
                }
            }
            return Err(Error::Invalid {
                diagnostics: problems,
                source_text: runbook.source.text.clone(),
            });
        }
        let plan = built?;
        Ok(Loaded {
            runbook,
            plan,
            templater,
            ctx,
        })
    }
}

/// Where each host is, with its address rendered and `~` expanded.
pub(super) fn host_targets(runbook: &Runbook, ctx: &Context) -> Vec<exec::ssh::HostTarget> {
    let base = ctx.for_step("", &BTreeMap::new());
    let templater = Templater::new();
    runbook
        .hosts
        .iter()
        .map(|(name, h)| {
            let r =
                plan::render_host(&templater, &base, h).unwrap_or_else(|_| plan::RenderedHost {
                    address: h.address.clone(),
                    user: h.user.clone(),
                    port: None,
                    identity_file: h.identity_file.clone(),
                    known_hosts_file: h.known_hosts_file.clone(),
                });
            (name, h, r)
        })
        .map(|(name, h, r)| exec::ssh::HostTarget {
            name: name.clone(),
            address: r.address,
            user: r.user,
            port: r.port,
            identity_file: r
                .identity_file
                .as_deref()
                .map(|p| expand_path(p, &runbook.dir)),
            accept_new: h.known_hosts == crate::runbook::model::KnownHosts::AcceptNew,
            known_hosts_file: r
                .known_hosts_file
                .as_deref()
                .map(|p| expand_path(p, &runbook.dir)),
        })
        .collect()
}

/// `~/x` → `$HOME/x`; a relative path is relative to the runbook's folder.
fn expand_path(path: &str, dir: &Path) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    dir.join(path)
}

/// The template context: vars, env, and hosts with rendered addresses.
pub(super) fn context(runbook: &Runbook, templater: &Templater, run_id: i64) -> Context {
    let bare = Context::new(&runbook.vars, minijinja::Value::from(()), run_id);
    let base = bare.for_step("", &BTreeMap::new());
    let hosts: BTreeMap<String, serde_json::Value> = runbook
        .hosts
        .iter()
        .map(|(name, h)| {
            let r = plan::render_host(templater, &base, h).ok();
            (
                name.clone(),
                serde_json::json!({
                    "name": name,
                    "address": r.as_ref().map(|r| r.address.clone()),
                    // Empty when not given (SPEC §14): ssh's configuration decides.
                    "user": r.as_ref().and_then(|r| r.user.clone()).unwrap_or_default(),
                    "port": r.as_ref().and_then(|r| r.port).map(|p| p.to_string()).unwrap_or_default(),
                    "vars": h.vars,
                }),
            )
        })
        .collect();
    Context {
        hosts: minijinja::Value::from_serialize(&hosts),
        ..bare
    }
}

/// The run's executors: SSH connections, HTTP client, local folder.
pub(super) fn executors(loaded: &Loaded) -> Result<exec::Executors> {
    raise_open_files(loaded.runbook.hosts.len());
    Ok(exec::Executors {
        ssh: exec::ssh::SshPool::new(host_targets(&loaded.runbook, &loaded.ctx))
            .map_err(Error::Usage)?,
        http: exec::http::client(),
        dir: loaded.runbook.dir.clone(),
    })
}

/// A fleet holds a master connection, a shell and their pipes per host:
/// a few hundred hosts pass the common soft limit of 1,024 open files, so
/// the soft limit is raised towards the hard one (never above it).
fn raise_open_files(hosts: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let wanted = (hosts as u64).saturating_mul(16).saturating_add(256);
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < wanted {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard), hard);
        }
    }
}
