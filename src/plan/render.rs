//! One step's templates rendered into a [`Rendered`]: with placeholders
//! for the plan, with real secret values for the gate as the step starts.
//! An error names the field it is in.

use std::collections::BTreeMap;

use super::host::render_host;
use super::http::render_http;
use super::via::via_of;
use super::{Rendered, RenderedAction};
use crate::runbook::model::UploadSpec;
use crate::runbook::template::{Context, TemplateError, Templater};
use crate::runbook::{Action, Runbook, Step};

/// A template that failed, with the field it is in.
type Failed = (String, TemplateError);

/// A step's `approval` question and `title`, rendered (SPEC §14). They are
/// shown to people, so they see no secret: `secrets.NAME` is undefined here.
pub fn render_label(
    templater: &Templater,
    ctx: &Context,
    step: &Step,
    text: &str,
) -> std::result::Result<String, TemplateError> {
    let c = ctx.for_instance(&step.spec.id, step.host.as_deref(), &BTreeMap::new());
    templater.render(text, &c)
}

/// One field's template rendered; the error names the field.
fn field(
    templater: &Templater,
    c: &minijinja::Value,
    name: &str,
    text: &str,
) -> std::result::Result<String, Failed> {
    templater.render(text, c).map_err(|e| (name.to_string(), e))
}

/// Renders a step's templates with the given secrets. The error names the field.
pub fn render_step(
    templater: &Templater,
    ctx: &Context,
    runbook: &Runbook,
    step: &Step,
    secrets: &BTreeMap<String, String>,
) -> std::result::Result<Rendered, Failed> {
    let c = ctx.for_instance(&step.spec.id, step.host.as_deref(), secrets);
    let r = |name: &str, text: &str| field(templater, &c, name, text);
    let when = match &step.spec.when {
        Some(cond) => templater
            .condition(cond, &c)
            .map_err(|e| ("when".to_string(), e))?,
        None => true,
    };
    let unless = step
        .spec
        .unless
        .as_deref()
        .map(|u| r("unless", u))
        .transpose()?;
    let env = step
        .spec
        .env
        .iter()
        .map(|(k, v)| Ok((k.clone(), r("env", &v.as_text())?)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let action = render_action(templater, &c, runbook, step)?;
    let (host, place) = addressed(templater, &c, runbook, step).unzip();
    Ok(Rendered {
        when,
        unless,
        env,
        timeout: step.timeout,
        retries: step.retries,
        retry_delay: step.retry_delay,
        action,
        host,
        place,
    })
}

/// What the step does, rendered.
fn render_action(
    templater: &Templater,
    c: &minijinja::Value,
    runbook: &Runbook,
    step: &Step,
) -> std::result::Result<RenderedAction, Failed> {
    Ok(match &step.action {
        Action::Run(script) => RenderedAction::Run {
            script: field(templater, c, "run", script)?,
        },
        Action::Checkpoint => RenderedAction::Checkpoint,
        Action::Http(http) => {
            let mut rendered =
                render_http(templater, c, http).map_err(|e| ("http".to_string(), e))?;
            rendered.via = via_of(templater, c, step, http.via.as_deref())
                .map_err(|e| ("via".to_string(), e))?;
            RenderedAction::Http(rendered)
        }
        Action::Upload(upload) => render_upload(templater, c, runbook, upload)?,
    })
}

/// An upload's definition only: the source is read when the step starts
/// (source::load), so what an earlier step built is what ships.
fn render_upload(
    templater: &Templater,
    c: &minijinja::Value,
    runbook: &Runbook,
    upload: &UploadSpec,
) -> std::result::Result<RenderedAction, Failed> {
    let src = runbook.dir.join(field(templater, c, "src", &upload.src)?);
    let dest = field(templater, c, "dest", &upload.dest)?;
    if upload.delete {
        check_delete(&src, &dest)?;
    }
    crate::action::excluder(&upload.exclude).map_err(|message| {
        (
            "exclude".to_string(),
            TemplateError {
                message,
                range: None,
            },
        )
    })?;
    Ok(RenderedAction::Upload {
        src,
        dest,
        files: Vec::new(),
        delete: upload.delete,
        exclude: upload.exclude.clone(),
        template: upload.template,
        mode: upload
            .mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok()),
        source_hash: None,
    })
}

/// The step's host as addressed (`user@address:port`) and as the
/// fingerprint names it (`name address:port`); `None` for a local step or
/// a host whose fields do not render (said by the plan's host check).
fn addressed(
    templater: &Templater,
    c: &minijinja::Value,
    runbook: &Runbook,
    step: &Step,
) -> Option<(String, String)> {
    let h = step.host.as_ref()?;
    let r = render_host(templater, c, &runbook.hosts[h]).ok()?;
    // A host that gives no port has none in its fingerprint (ssh's
    // configuration decides it); one that gives a port keeps the form.
    let port = r.port.map(|p| format!(":{p}")).unwrap_or_default();
    Some((
        format!("{}@{}{port}", r.user.unwrap_or_default(), r.address),
        format!("{h} {}{port}", r.address),
    ))
}

/// `delete: true` needs a folder source and a destination that is a folder
/// of its own (never empty, `/` or `.`). The error names the field at fault.
fn check_delete(
    src: &std::path::Path,
    dest: &str,
) -> std::result::Result<(), (String, TemplateError)> {
    let fail = |field: &str, message: String| {
        Err((
            field.to_string(),
            TemplateError {
                message,
                range: None,
            },
        ))
    };
    // A source that does not exist yet is checked when the step starts.
    if src.exists() && !src.is_dir() {
        return fail(
            "delete",
            format!(
                "`delete: true` applies to folders only, and {} is not a folder: remove `delete`, or upload the folder",
                src.display()
            ),
        );
    }
    if let Some(problem) = crate::action::unsafe_root(dest) {
        return fail(
            "dest",
            format!("`delete: true` refuses this dest: {problem}"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_addressed_with_its_user_and_named_in_the_fingerprint_without_it() {
        let yaml = "hosts:\n  web:\n    address: 10.0.0.7\n    user: deploy\n    port: 2222\n  db:\n    address: db.example\nsteps:\n  - id: a\n    on: web\n    run: 'true'\n  - id: b\n    on: db\n    run: 'true'\n  - id: c\n    run: 'true'\n";
        let path = std::path::Path::new("/tmp/rb-unit/r.yaml");
        let (file, source) = crate::runbook::load::parse_text(path, yaml.to_string()).unwrap();
        let book = crate::runbook::validate::validate(file, source, &[]).unwrap();
        let ctx = Context::new(&book.vars, minijinja::Value::from(()), 0);
        let templater = Templater::for_placeholders();
        let got: Vec<(Option<String>, Option<String>)> = book
            .steps
            .iter()
            .map(|s| {
                let r = render_step(&templater, &ctx, &book, s, &BTreeMap::new()).unwrap();
                (r.host, r.place)
            })
            .collect();
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            got,
            vec![
                (some("deploy@10.0.0.7:2222"), some("web 10.0.0.7:2222")),
                (some("@db.example"), some("db db.example")),
                (None, None),
            ]
        );
    }
}
