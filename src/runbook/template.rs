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
        minijinja::context! {
            vars => self.vars.clone(),
            env => self.env.clone(),
            hosts => self.hosts.clone(),
            secrets => Value::from_serialize(secrets),
            run => minijinja::context! { id => self.run_id },
            step => minijinja::context! { id => step_id },
        }
    }
}

/// Whether a string contains template syntax at all.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

impl Templater {
    /// A templater with strict undefined and the `quote` filter.
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.add_filter("quote", quote);
        env.add_filter("jwt_hs256", jwt_hs256);
        Templater { env }
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
    let range = err.range().filter(|r| r.end <= text.len());
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
            match &snippet {
                Some(s) => format!("template error in `{s}`: {detail}"),
                None => format!("template error: {detail}"),
            }
        }
    };
    TemplateError { message, range }
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
    fn conditions() {
        let t = Templater::new();
        assert!(t.condition("vars.dir == '/opt/x y'", &ctx()).unwrap());
        assert!(!t.condition("{{ run.id == 8 }}", &ctx()).unwrap());
    }
}
