//! Templates: `{{ }}` with strict undefined, and the `quote` filter for shells.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior, Value};

/// A template failure, with the expression that failed when known.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// What went wrong, in words.
    pub message: String,
    /// Byte range of the failing expression inside the template text.
    pub range: Option<std::ops::Range<usize>>,
}

/// Renders runbook templates.
pub struct Templater {
    env: Environment<'static>,
}

/// The placeholder a secret's value is replaced by while a runbook is
/// validated and fingerprinted: the real values are only known at run time.
pub fn placeholder(name: &str) -> String {
    format!("[secret:{name}]")
}

impl Default for Templater {
    fn default() -> Self {
        Self::new()
    }
}

/// The names a template sees, built once per run and cheap to clone.
#[derive(Clone)]
pub struct Context {
    /// `vars`
    pub vars: Value,
    /// `env`: the process environment.
    pub env: Value,
    /// `hosts`
    pub hosts: Value,
    /// `run.id`
    pub run_id: i64,
}

impl Context {
    /// Builds the context from vars, the process environment and hosts.
    pub fn new(
        vars: &indexmap::IndexMap<String, serde_json::Value>,
        hosts: Value,
        run_id: i64,
    ) -> Self {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Context {
            vars: Value::from_serialize(vars),
            env: Value::from_serialize(&env),
            hosts,
            run_id,
        }
    }

    /// The full context for one step, with the secrets it may see.
    pub fn for_step(&self, step_id: &str, secrets: &BTreeMap<String, String>) -> Value {
        self.for_instance(step_id, None, secrets)
    }

    /// The context for a step on a host: `step.host` is the host's name
    /// (empty for a local step), so an instance on a group can tell which
    /// host it is.
    pub fn for_instance(
        &self,
        step_id: &str,
        host: Option<&str>,
        secrets: &BTreeMap<String, String>,
    ) -> Value {
        let base = minijinja::context! {
            vars => self.vars.clone(),
            env => self.env.clone(),
            hosts => self.hosts.clone(),
            secrets => Value::from_serialize(secrets),
            run => minijinja::context! { id => self.run_id },
            step => minijinja::context! { id => step_id, host => host.unwrap_or_default() },
        };
        // `host`: the step's host (SPEC §14); undefined for a local step,
        // so using it there is a validation error like any unknown name.
        match host
            .and_then(|h| self.hosts.get_attr(h).ok())
            .filter(|v| !v.is_undefined())
        {
            Some(h) => minijinja::context! { host => h, ..base },
            None => base,
        }
    }
}

/// Whether a string contains template syntax at all.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

impl Templater {
    /// A templater for real values, with strict undefined and the filters.
    pub fn new() -> Self {
        Self::build(false)
    }

    /// A templater for validation, where secrets are [`placeholder`]s:
    /// `from_json` of a placeholder gives a stand-in whose every field is a
    /// placeholder too, so a runbook that reads fields of a JSON secret
    /// validates before the secret exists. Never used to render what runs.
    pub fn for_placeholders() -> Self {
        Self::build(true)
    }

    fn build(placeholders: bool) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.add_filter("quote", quote);
        env.add_filter("jwt_hs256", jwt_hs256);
        env.add_filter("from_json", move |value: Value| {
            from_json(value, placeholders)
        });
        Templater { env }
    }

    /// The secrets a template uses, read from its syntax: each `secrets.NAME`
    /// (also inside filters and nested lookups like `secrets.NAME.field`).
    /// Text that merely looks like it (`cat secrets.json`) is not a use.
    /// `condition` reads `text` as a `when` (a bare expression unless it
    /// has `{{`). A template that does not parse uses nothing: rendering
    /// reports its error.
    pub fn secret_names(&self, text: &str, condition: bool) -> Vec<String> {
        let names = if is_template(text) {
            match self.env.template_from_str(text) {
                Ok(t) => t.undeclared_variables(true),
                Err(_) => return Vec::new(),
            }
        } else if condition && !text.contains("}}") {
            match self.env.compile_expression(text) {
                Ok(e) => e.undeclared_variables(true),
                Err(_) => return Vec::new(),
            }
        } else {
            return Vec::new();
        };
        let mut out: Vec<String> = names
            .iter()
            .filter_map(|n| n.strip_prefix("secrets."))
            .map(|rest| rest.split('.').next().unwrap_or(rest).to_string())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The `env` variables a template reads (`env.NAME`), from its syntax;
    /// none for a template that does not parse.
    pub fn env_names(&self, text: &str) -> Vec<String> {
        if !is_template(text) {
            return Vec::new();
        }
        let Ok(t) = self.env.template_from_str(text) else {
            return Vec::new();
        };
        let mut out: Vec<String> = t
            .undeclared_variables(true)
            .iter()
            .filter_map(|n| n.strip_prefix("env."))
            .map(|rest| rest.split('.').next().unwrap_or(rest).to_string())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Renders `text`; plain text comes back unchanged without parsing.
    pub fn render(&self, text: &str, ctx: &Value) -> Result<String, TemplateError> {
        if !is_template(text) {
            return Ok(text.to_string());
        }
        self.env
            .render_str(text, ctx.clone())
            .map_err(|e| describe(e, text))
    }

    /// Evaluates a `when` condition: a bare expression (`vars.x == "y"`) or a
    /// template whose output is `true`/`false`.
    pub fn condition(&self, text: &str, ctx: &Value) -> Result<bool, TemplateError> {
        if is_template(text) {
            let out = self.render(text, ctx)?;
            return match out.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(true),
                "false" | "no" | "0" | "" | "none" => Ok(false),
                other => Err(TemplateError {
                    message: format!("`when` rendered to `{other}`, expected true or false"),
                    range: None,
                }),
            };
        }
        if text.contains("}}") {
            // A stray `}}` in a bare expression trips a panic in minijinja's lexer.
            return Err(TemplateError {
                message: "a `when` expression has a `}}` without `{{`".to_string(),
                range: None,
            });
        }
        let expr = self
            .env
            .compile_expression(text)
            .map_err(|e| describe(e, text))?;
        expr.eval(ctx.clone())
            .map(|v| v.is_true())
            .map_err(|e| describe(e, text))
    }
}

/// The `quote` filter: one shell word, safe inside `sh -c`.
fn quote(value: Value) -> Result<String, minijinja::Error> {
    let text = value.to_string();
    shlex::try_quote(&text)
        .map(|q| q.into_owned())
        .map_err(|_| {
            minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                "cannot shell-quote a value that contains a NUL byte",
            )
        })
}

/// The `from_json` filter: a JSON text (a service-account credential) as a
/// value whose fields templates can read, e.g.
/// `{{ (secrets.GCP_SA | from_json).client_email }}`. With `placeholders`,
/// a secret's placeholder gives a stand-in object instead (see
/// [`Templater::for_placeholders`]).
fn from_json(value: Value, placeholders: bool) -> Result<Value, minijinja::Error> {
    let invalid = |m: String| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, m);
    let text = value
        .as_str()
        .ok_or_else(|| invalid(format!("from_json needs a string, not {}", value.kind())))?;
    if placeholders {
        if let Some(name) = text
            .strip_prefix("[secret:")
            .and_then(|r| r.strip_suffix(']'))
        {
            return Ok(Value::from_object(Stand(name.to_string())));
        }
    }
    // serde_json's message names a line and column, never the text itself.
    serde_json::from_str::<serde_json::Value>(text)
        .map(|v| Value::from_serialize(&v))
        .map_err(|e| invalid(format!("the value is not JSON ({e})")))
}

/// What `from_json` gives for a secret's placeholder: every field is a
/// stand-in too, and it renders as a placeholder.
#[derive(Debug)]
struct Stand(String);

impl minijinja::value::Object for Stand {
    fn get_value(self: &std::sync::Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from_object(Stand(format!("{}.{key}", self.0))))
    }

    fn render(self: &std::sync::Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result
    where
        Self: Sized + 'static,
    {
        f.write_str(&placeholder(&self.0))
    }
}

/// The `jwt_hs256(key)` filter: a map of claims signed as an HS256 JWT, e.g.
/// `{{ {"id": vars.user_id} | jwt_hs256(secrets.WEBUI_SECRET_KEY) }}`.
fn jwt_hs256(claims: Value, key: String) -> Result<String, minijinja::Error> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::Mac;
    let payload = serde_json::to_string(&claims).map_err(|e| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("claims are not JSON: {e}"),
        )
    })?;
    let signing = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).map_err(|e| {
        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
    })?;
    mac.update(signing.as_bytes());
    Ok(format!(
        "{signing}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    ))
}

fn describe(err: minijinja::Error, text: &str) -> TemplateError {
    let mut range = err.range().filter(|r| r.end <= text.len());
    if err.kind() == minijinja::ErrorKind::UndefinedError {
        // minijinja's span of `a.b.c` may start after `a`: name it whole.
        range = range.map(|r| whole_path_start(text, r.start)..r.end);
    }
    let snippet = range
        .clone()
        .and_then(|r| text.get(r))
        .map(|s| s.trim().to_string());
    let message = match (err.kind(), &snippet) {
        (minijinja::ErrorKind::UndefinedError, Some(s)) => {
            format!("`{s}` is undefined")
        }
        (minijinja::ErrorKind::UndefinedError, None) => {
            "a name in the template is undefined".to_string()
        }
        _ => {
            let detail = err
                .detail()
                .map(str::to_string)
                .unwrap_or_else(|| err.kind().to_string());
            let hint = if detail.contains("end of comment") {
                // `${#VAR}` in a shell script: `{#` opens a Jinja comment.
                " (`{#` starts a template comment: write shell text such as `${#VAR}` as `{% raw %}${#VAR}{% endraw %}`)"
            } else {
                ""
            };
            match &snippet {
                Some(s) => format!("template error in `{s}`: {detail}{hint}"),
                None => format!("template error: {detail}{hint}"),
            }
        }
    };
    TemplateError { message, range }
}

/// Where the name path (`host.vars.x`, `vars.m["k"].y`) that ends in the
/// field at `start` begins: back over names, dots and `[...]` lookups.
fn whole_path_start(text: &str, start: usize) -> usize {
    let bytes = text.as_bytes();
    if !matches!(bytes.get(start), Some(b'.' | b'[')) {
        return start;
    }
    let mut i = start;
    while i > 0 {
        match bytes[i - 1] {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => i -= 1,
            b']' => match text[..i - 1].rfind('[') {
                Some(open) => i = open,
                None => break,
            },
            _ => break,
        }
    }
    if text.is_char_boundary(i) {
        i
    } else {
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Value {
        let mut vars = indexmap::IndexMap::new();
        vars.insert("dir".to_string(), serde_json::json!("/opt/x y"));
        Context::new(&vars, Value::from(()), 7).for_step("a", &BTreeMap::new())
    }

    #[test]
    fn strict_undefined_is_an_error() {
        let err = Templater::new()
            .render("{{ vars.nope }}", &ctx())
            .unwrap_err();
        assert!(err.message.contains("vars.nope"), "{}", err.message);
    }

    #[test]
    fn an_undefined_field_is_named_whole() {
        let mut vars = indexmap::IndexMap::new();
        vars.insert("m".to_string(), serde_json::json!({ "x": 1 }));
        let c = Context::new(&vars, Value::from(()), 7).for_step("a", &BTreeMap::new());
        let text = "echo {{ vars.m.nope }} {{ (vars.m).gone }}";
        let err = Templater::new().render(text, &c).unwrap_err();
        assert_eq!(err.message, "`vars.m.nope` is undefined");
        assert_eq!(err.range.map(|r| &text[r]), Some("vars.m.nope"));
        let text = "{{ vars.m[\"k\"].y }}";
        let err = Templater::new().render(text, &c).unwrap_err();
        assert!(
            !err.message.contains("`.") && !err.message.contains("`["),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_shell_length_says_how_to_keep_it() {
        let err = Templater::new()
            .render("echo ${#TOKEN}", &ctx())
            .unwrap_err();
        assert!(
            err.message.contains("{% raw %}${#VAR}{% endraw %}"),
            "{}",
            err.message
        );
        let ok = "echo {% raw %}${#TOKEN}{% endraw %}";
        assert_eq!(
            Templater::new().render(ok, &ctx()).unwrap(),
            "echo ${#TOKEN}"
        );
    }

    #[test]
    fn default_filter_works_on_undefined() {
        let out = Templater::new()
            .render("{{ env.RUNBOOK_SURELY_UNSET | default('x') }}", &ctx())
            .unwrap();
        assert_eq!(out, "x");
    }

    #[test]
    fn quote_filter_makes_one_word() {
        let out = Templater::new()
            .render("ls {{ vars.dir | quote }}", &ctx())
            .unwrap();
        assert_eq!(out, "ls '/opt/x y'");
    }

    #[test]
    fn values_are_not_rendered_again() {
        let mut vars = indexmap::IndexMap::new();
        vars.insert("v".to_string(), serde_json::json!("{{ run.id }}"));
        let c = Context::new(&vars, Value::from(()), 7).for_step("a", &BTreeMap::new());
        assert_eq!(
            Templater::new().render("{{ vars.v }}", &c).unwrap(),
            "{{ run.id }}"
        );
    }

    #[test]
    fn jwt_matches_a_known_token() {
        // jwt.io's HS256 example claims and key; claims serialise with sorted
        // keys. Expected value computed independently with Python's hmac.
        let t = Templater::new()
            .render(
                "{{ {\"sub\": \"1234567890\", \"name\": \"John Doe\", \"iat\": 1516239022} | jwt_hs256(\"your-256-bit-secret\") }}",
                &ctx(),
            )
            .unwrap();
        assert_eq!(
            t,
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE1MTYyMzkwMjIsIm5hbWUiOiJKb2huIERvZSIsInN1YiI6IjEyMzQ1Njc4OTAifQ.fdOPQ05ZfRhkST2-rIWgUpbqUsVhkkNVNcuG7Ki0s-8"
        );
    }

    #[test]
    fn secret_names_come_from_the_syntax() {
        let t = Templater::new();
        assert_eq!(
            t.secret_names("cat secrets.json", false),
            Vec::<String>::new()
        );
        assert_eq!(
            t.secret_names(
                "{{ (secrets.SA | from_json).email }} {{ secrets.B | quote }} secrets.C",
                false
            ),
            vec!["B".to_string(), "SA".to_string()]
        );
        assert_eq!(
            t.secret_names("secrets.FLAG == 'on'", true),
            vec!["FLAG".to_string()]
        );
        assert_eq!(
            t.secret_names("secrets.FLAG == 'on'", false),
            Vec::<String>::new()
        );
    }

    #[test]
    fn from_json_reads_fields_and_stands_in_for_placeholders() {
        let mut secrets = BTreeMap::new();
        secrets.insert("SA".to_string(), r#"{"email": "a@b"}"#.to_string());
        let c =
            Context::new(&indexmap::IndexMap::new(), Value::from(()), 1).for_step("a", &secrets);
        let text = "{{ (secrets.SA | from_json).email }}";
        assert_eq!(Templater::new().render(text, &c).unwrap(), "a@b");
        secrets.insert("SA".to_string(), placeholder("SA"));
        let c =
            Context::new(&indexmap::IndexMap::new(), Value::from(()), 1).for_step("a", &secrets);
        assert_eq!(
            Templater::for_placeholders().render(text, &c).unwrap(),
            "[secret:SA.email]"
        );
        // A real value that looks like a placeholder is not JSON: an error, never a stand-in.
        let err = Templater::new().render(text, &c).unwrap_err();
        assert!(err.message.contains("not JSON"), "{}", err.message);
    }

    #[test]
    fn conditions() {
        let t = Templater::new();
        assert!(t.condition("vars.dir == '/opt/x y'", &ctx()).unwrap());
        assert!(!t.condition("{{ run.id == 8 }}", &ctx()).unwrap());
    }
}
