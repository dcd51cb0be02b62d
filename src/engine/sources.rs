//! Where secret values are looked up (the process environment, dotenv
//! files here and on hosts over SSH) and what their checks say. The values
//! themselves, and their redaction, are `crate::secrets`.

use std::collections::BTreeMap;

use crate::secrets::{Redactor, Values};

/// A place secret values are looked up, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The environment of the `runbook` process.
    Environment,
    /// A file given with `--env-file`.
    EnvFileArg(std::path::PathBuf),
    /// A local dotenv file from the runbook's `env_files`.
    Local(std::path::PathBuf),
    /// A dotenv file on a host, read over SSH.
    Remote {
        /// Host name.
        host: String,
        /// Path on the host.
        path: String,
    },
    /// A local command whose output is a dotenv file.
    Command {
        /// The command, rendered.
        command: String,
        /// How long it may run.
        timeout: std::time::Duration,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Environment => f.write_str("the environment of the `runbook` process"),
            Source::EnvFileArg(p) => write!(f, "{} (given with --env-file)", p.display()),
            Source::Local(p) => write!(f, "{} (local file)", p.display()),
            Source::Remote { host, path } => write!(f, "{path} on host `{host}`"),
            Source::Command { command, .. } => write!(f, "the output of `{command}`"),
        }
    }
}

/// Where each value was found, and what went wrong reading a source.
#[derive(Debug, Default, Clone)]
pub struct Lookup {
    /// The values found.
    pub values: Values,
    /// Name → the source it came from (its display text).
    pub found_in: BTreeMap<String, String>,
    /// Sources that could not be read, with why (a missing file is not a problem).
    pub problems: Vec<(String, String)>,
    /// Secrets left unavailable by a command that failed, with why (not
    /// yet redacted).
    pub unavailable: BTreeMap<String, String>,
}

/// The commands of one look: the runner, and each `from` secret's command.
#[derive(Debug, Clone, Default)]
pub struct Commands {
    /// Runs each distinct command once.
    pub runner: super::secret_commands::Runner,
    /// Secret name → its `from` command (rendered) and timeout, or why it
    /// cannot be rendered.
    pub from: BTreeMap<String, Result<(String, std::time::Duration), String>>,
}

/// Reads the sources in order until every wanted name has a non-empty
/// value; later sources are not read once nothing is missing.
/// A secret with a `from` command reads only the environment and
/// `--env-file` files, then its command; a failed `env_files` command
/// leaves what no source had unavailable.
pub async fn lookup(
    sources: &[Source],
    wanted: &[String],
    execs: &crate::exec::Executors,
    commands: &Commands,
) -> Lookup {
    let mut out = Lookup::default();
    let mut values = BTreeMap::new();
    let mut failed: Vec<String> = Vec::new();
    for source in sources {
        let first = matches!(source, Source::Environment | Source::EnvFileArg(_));
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|w| !values.contains_key(*w))
            .filter(|w| first || !commands.from.contains_key(*w))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let map = match read_source(source, &missing, execs, commands).await {
            Read::Map(map) => map,
            Read::Skip => continue,
            Read::Problem(why) => {
                out.problems.push((source.to_string(), why));
                continue;
            }
            Read::Failed(why) => {
                failed.push(why);
                continue;
            }
        };
        for name in missing {
            if let Some(v) = map.get(name).filter(|v| !v.is_empty()) {
                values.insert(name.clone(), v.clone());
                out.found_in.insert(name.clone(), source.to_string());
            }
        }
    }
    from_commands(wanted, commands, &mut values, &mut out).await;
    for name in wanted.iter().filter(|w| !values.contains_key(*w)) {
        if !failed.is_empty() && !out.unavailable.contains_key(name) {
            out.unavailable.insert(name.clone(), failed.join("; "));
        }
    }
    out.values = Values::from_map(values);
    out
}

/// What reading one source gave.
enum Read {
    /// Its values.
    Map(BTreeMap<String, String>),
    /// Nothing there (a file that does not exist).
    Skip,
    /// It could not be read.
    Problem(String),
    /// Its command failed, or it is a dotenv file Docker Compose refuses:
    /// what no other source has is unavailable.
    Failed(String),
}

/// Reads one source for the names still `missing`.
async fn read_source(
    source: &Source,
    missing: &[&String],
    execs: &crate::exec::Executors,
    commands: &Commands,
) -> Read {
    Read::Map(match source {
        Source::Environment => missing
            .iter()
            .filter_map(|n| std::env::var(n).ok().map(|v| (n.to_string(), v)))
            .collect(),
        Source::EnvFileArg(path) | Source::Local(path) => match std::fs::read_to_string(path) {
            Ok(text) => match crate::dotenv::parse_local(&text, &path.display().to_string()) {
                Ok(map) => map,
                // Compose refuses it too: what no other source has is
                // unavailable, with the file and line (SPEC §13).
                Err(e) => return Read::Failed(e),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Read::Skip,
            Err(e) => {
                return Read::Problem(e.to_string());
            }
        },
        Source::Remote { host, path } => {
            let command = format!(
                "if [ -f {p} ]; then cat {p}; else exit 3; fi",
                p = crate::exec::quote::sh_quote(path)
            );
            match execs.ssh.output(host, &command, None).await {
                Ok((0, bytes, _)) => match crate::dotenv::parse(
                    &String::from_utf8_lossy(&bytes),
                    &format!("{host}:{path}"),
                    None,
                ) {
                    Ok(map) => map,
                    Err(e) => return Read::Failed(e),
                },
                Ok((3, _, _)) => return Read::Skip,
                Ok((code, _, err)) => {
                    return Read::Problem(format!("cannot read it (exit {code}): {}", err.trim()));
                }
                Err(e) => {
                    return Read::Problem(e.0);
                }
            }
        }
        Source::Command { command, timeout } => {
            match command_output(command, *timeout, commands).await {
                Ok(map) => map,
                Err(why) => return Read::Failed(why),
            }
        }
    })
}

/// An `env_files` command's output, read as a dotenv file; why not, naming
/// the command and (for a refusal) the line, never the text.
async fn command_output(
    command: &str,
    timeout: std::time::Duration,
    commands: &Commands,
) -> Result<BTreeMap<String, String>, String> {
    let text = commands.runner.output(command, timeout).await?;
    crate::dotenv::parse_local(&text, &format!("the output of `{command}`"))
}

/// The `from` commands of the secrets still wanted.
async fn from_commands(
    wanted: &[String],
    commands: &Commands,
    values: &mut BTreeMap<String, String>,
    out: &mut Lookup,
) {
    for name in wanted {
        let Some(from) = commands
            .from
            .get(name)
            .filter(|_| !values.contains_key(name))
        else {
            continue;
        };
        let got = match from {
            Ok((command, timeout)) => commands
                .runner
                .output(command, *timeout)
                .await
                .map(|v| (v, command)),
            Err(why) => Err(why.clone()),
        };
        match got {
            Ok((value, command)) => {
                values.insert(name.clone(), value);
                out.found_in
                    .insert(name.clone(), format!("the output of `{command}`"));
            }
            Err(why) => {
                out.unavailable.insert(name.clone(), why);
            }
        }
    }
}

/// What a secret's check said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The upstream accepted the value.
    Accepted,
    /// The upstream refused it: status and a short message.
    Rejected(String),
    /// The check could not be made (no connection, a missing input).
    Unchecked(String),
}

/// Runs a secret's HTTP check with the values found.
pub async fn check(
    execs: &crate::exec::Executors,
    templater: &crate::runbook::template::Templater,
    ctx: &crate::runbook::template::Context,
    spec: &crate::runbook::model::HttpSpec,
    values: &Values,
) -> Verdict {
    let redactor = values.redactor();
    let missing: Vec<String> = crate::plan::http_secret_refs(templater, spec)
        .into_iter()
        .filter(|n| values.get(n).is_none())
        .collect();
    if !missing.is_empty() {
        return Verdict::Unchecked(format!(
            "its check also needs {}, which {} missing",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        ));
    }
    let c = ctx.for_step("", values.as_map());
    let request = match crate::plan::render_http(templater, &c, spec) {
        Ok(r) => r,
        Err(e) => {
            return Verdict::Unchecked(
                redactor.redact(&format!("its check cannot be rendered: {}", e.message)),
            )
        }
    };
    let url = match &request.via {
        Some(host) => match execs.tunnel_url(host, &request.url).await {
            Ok(u) => u,
            Err(e) => return Verdict::Unchecked(e),
        },
        None => request.url.clone(),
    };
    match crate::exec::http::send(
        &execs.http,
        &request,
        &url,
        Some(std::time::Duration::from_secs(20)),
    )
    .await
    {
        Err(e) => Verdict::Unchecked(
            redactor.redact(&format!("{} {} failed: {e}", request.method, request.url)),
        ),
        Ok(response) => match crate::exec::http::unmet(&request.expect, &response) {
            None => Verdict::Accepted,
            Some(_) => Verdict::Rejected(redactor.redact(&format!(
                "{} {}",
                response.status,
                short_message(&response.body, &redactor)
            ))),
        },
    }
}

/// The upstream's own words from an error body: a JSON `message`/`error`,
/// or the first part of the text.
/// Redacted after decoding (JSON escapes could hide a value from the
/// redactor) and cut with `…`, so a value cut short is redacted too.
fn short_message(body: &str, redactor: &Redactor) -> String {
    const SHORT: usize = 120;
    let text = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|doc| {
            [
                "/message",
                "/error/message",
                "/error",
                "/errors/0/message",
                "/errors/0/msg",
                "/errors/0",
            ]
            .iter()
            .find_map(|p| doc.pointer(p).and_then(|v| v.as_str()).map(str::to_string))
        })
        .unwrap_or_else(|| body.split_whitespace().collect::<Vec<_>>().join(" "));
    let text = redactor.redact(&text);
    if text.chars().count() > SHORT {
        redactor.redact(&format!(
            "{}…",
            text.chars().take(SHORT).collect::<String>()
        ))
    } else {
        text
    }
}

/// A `--env-file` must exist and be a file Docker Compose reads: one it
/// refuses stops the command before anything runs (exit 2, naming the
/// file and line, never a value), rather than its secrets coming silently
/// from a later source.
pub fn check_env_file_arg(file: &std::path::Path) -> Result<(), crate::error::Error> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(_) if !file.is_file() => {
            return Err(crate::error::Error::Usage(format!(
                "--env-file {} does not exist",
                file.display()
            )))
        }
        Err(e) => {
            return Err(crate::error::Error::Usage(format!(
                "--env-file {}: cannot read it: {e}",
                file.display()
            )))
        }
    };
    crate::dotenv::parse_local(&text, &file.display().to_string())
        .map(|_| ())
        .map_err(|e| {
            crate::error::Error::Usage(format!(
                "--env-file {e}: fix that line, or give another file"
            ))
        })
}
