//! A PostgreSQL state URL in libpq's form (SPEC §11):
//! `postgres://user:password@host:port/dbname?sslmode=…`. The password is
//! kept apart from everything that is shown: [`PgUrl::shown`] is the URL
//! without it, and the only thing errors, status, handoff and notify print.

use std::path::PathBuf;
use std::time::Duration;

/// How hard the connection insists on TLS, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, certificate not checked.
    Prefer,
    /// TLS always, certificate not checked.
    Require,
    /// TLS, the certificate chain checked against the root certificates.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

/// Where a state URL's password was found (libpq's order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordFrom {
    /// The URL's user part.
    Url,
    /// `PGPASSWORD`.
    Env,
    /// This line (from 1) of the pgpass file (`PGPASSFILE`'s, else `~/.pgpass`).
    Pgpass { file: PathBuf, line: usize },
}

/// A parsed state URL.
#[derive(Clone)]
pub struct PgUrl {
    /// The URL as given, less its password: what is shown.
    pub shown: String,
    /// Role name.
    pub user: String,
    /// Host name or address; a Unix-socket folder when it starts with `/`.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub dbname: String,
    /// From the URL, `PGPASSWORD` or `~/.pgpass`; never shown.
    pub password: Option<String>,
    /// Where [`PgUrl::password`] came from, when it was found.
    pub password_from: Option<PasswordFrom>,
    /// TLS.
    pub sslmode: SslMode,
    /// Root certificates for `verify-ca`/`verify-full`.
    pub sslrootcert: Option<PathBuf>,
    /// How long to wait for the server when connecting.
    pub connect_timeout: Duration,
    /// `application_name` shown in `pg_stat_activity`.
    pub application_name: String,
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Whether a `--state` value names PostgreSQL rather than a file.
pub fn is_pg_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

impl PgUrl {
    /// Parses a URL; an error says what is wrong (shown as usage, exit 2)
    /// and never holds the password.
    pub fn parse(text: &str) -> Result<PgUrl, String> {
        let rest = text
            .strip_prefix("postgresql://")
            .or_else(|| text.strip_prefix("postgres://"))
            .ok_or("a state URL starts with postgres:// or postgresql://")?;
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.split_once('/') {
            Some((a, p)) => (a, p),
            None => (before_query, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((name, pw)) => (decode(name)?, Some(decode(pw)?)),
                None => (decode(u)?, None),
            },
            None => (String::new(), None),
        };
        let (host, port) = split_host_port(hostport)?;
        let mut url = PgUrl {
            shown: shown(text, userinfo),
            user,
            host,
            port: match port {
                Some(p) => p,
                None => env_port()?,
            },
            dbname: decode(path)?,
            password_from: password.as_ref().map(|_| PasswordFrom::Url),
            password,
            sslmode: SslMode::Prefer,
            sslrootcert: None,
            connect_timeout: Duration::from_secs(10),
            application_name: "runbook".into(),
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            url.set_param(&decode(k)?, &decode(v)?)?;
        }
        url.fill_defaults();
        Ok(url)
    }

    fn set_param(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "sslmode" => {
                self.sslmode = match value {
                    "disable" => SslMode::Disable,
                    "prefer" | "allow" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(format!(
                        "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                    ))
                    }
                }
            }
            "sslrootcert" => self.sslrootcert = Some(PathBuf::from(value)),
            "host" => self.host = value.to_string(),
            "connect_timeout" => {
                let secs: u64 = value.parse().map_err(|_| {
                    format!("connect_timeout={value} is not a whole number of seconds")
                })?;
                self.connect_timeout = Duration::from_secs(secs.max(1));
            }
            "application_name" => self.application_name = value.to_string(),
            other => {
                const KNOWN: [&str; 5] = [
                    "sslmode",
                    "sslrootcert",
                    "host",
                    "connect_timeout",
                    "application_name",
                ];
                let mean = crate::runbook::suggest::nearest(other, KNOWN.into_iter())
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default();
                return Err(format!(
                    "unknown parameter {other:?} (known: {}){mean}",
                    KNOWN.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// libpq's defaults: `PGUSER`/`PGHOST`/`PGDATABASE`, the OS user, the
    /// Unix socket; the password from `PGPASSWORD` or `~/.pgpass`.
    fn fill_defaults(&mut self) {
        if self.user.is_empty() {
            self.user = env("PGUSER").unwrap_or_else(os_user);
        }
        if self.host.is_empty() {
            self.host = env("PGHOST").unwrap_or_else(|| "/var/run/postgresql".into());
        }
        if self.dbname.is_empty() {
            self.dbname = env("PGDATABASE").unwrap_or_else(|| self.user.clone());
        }
        if self.password.is_none() {
            let found = match env("PGPASSWORD") {
                Some(pw) => Some((pw, PasswordFrom::Env)),
                None => self.pgpass_password(),
            };
            (self.password, self.password_from) = found.unzip();
        }
    }

    /// The first matching line of `PGPASSFILE` or `~/.pgpass`
    /// (`host:port:database:user:password`, `*` matches anything, `\`
    /// escapes); a file others can read is ignored, as libpq does. The
    /// password, and the file and line it is on.
    fn pgpass_password(&self) -> Option<(String, PasswordFrom)> {
        use std::os::unix::fs::PermissionsExt;
        let file = pgpass_file()?;
        let meta = std::fs::metadata(&file).ok()?;
        if meta.permissions().mode() & 0o077 != 0 {
            return None;
        }
        let text = std::fs::read_to_string(&file).ok()?;
        let host = if self.host.starts_with('/') {
            "localhost"
        } else {
            &self.host
        };
        let port = self.port.to_string();
        let want = [
            host,
            port.as_str(),
            self.dbname.as_str(),
            self.user.as_str(),
        ];
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.starts_with('#'))
            .map(|(n, l)| (n + 1, pgpass_fields(l)))
            .find(|(_, f)| f.len() == 5 && (0..4).all(|i| f[i] == "*" || f[i] == want[i]))
            .map(|(line, mut f)| (f.swap_remove(4), PasswordFrom::Pgpass { file, line }))
    }

    /// Where the password sent came from, for the message of a server
    /// that refused it (never the password): `the URL`, `PGPASSWORD`, or
    /// `line N of FILE` (`PGPASSFILE FILE` when that named it); `None`
    /// when none was found.
    pub fn password_source(&self) -> Option<String> {
        Some(match self.password_from.as_ref()? {
            PasswordFrom::Url => "the URL (it goes before PGPASSWORD and the pgpass file)".into(),
            PasswordFrom::Env => "PGPASSWORD (it goes before the pgpass file)".into(),
            PasswordFrom::Pgpass { file, line } => match env("PGPASSFILE") {
                Some(_) => format!("line {line} of PGPASSFILE {}", file.display()),
                None => format!("line {line} of {}", file.display()),
            },
        })
    }

    /// Where the password was looked for, for messages: `the URL,
    /// PGPASSWORD or FILE`, naming the pgpass file actually consulted
    /// (`PGPASSFILE`'s, else `~/.pgpass`) and why it gave none.
    pub fn password_places(&self) -> String {
        use std::os::unix::fs::PermissionsExt;
        let place = match pgpass_file() {
            None => "~/.pgpass (HOME is not set)".to_string(),
            Some(f) => {
                let named = match env("PGPASSFILE") {
                    Some(_) => format!("PGPASSFILE {}", f.display()),
                    None => f.display().to_string(),
                };
                match std::fs::metadata(&f) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        format!("{named} (there is no such file)")
                    }
                    Err(e) => format!("{named} (cannot be read: {e})"),
                    Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                        format!("{named} (ignored: others may read it; chmod 0600 it)")
                    }
                    Ok(_) => format!(
                        "{named} (no line for {} as user {})",
                        self.place(),
                        self.user
                    ),
                }
            }
        };
        format!("the URL, PGPASSWORD or {place}")
    }

    /// Where the server is, for messages: host, port and database.
    pub fn place(&self) -> String {
        format!(
            "host {} port {} database {}",
            self.host, self.port, self.dbname
        )
    }
}

/// The pgpass file libpq reads: `PGPASSFILE`, else `~/.pgpass`.
fn pgpass_file() -> Option<PathBuf> {
    env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))
}

fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), String> {
    if hostport.contains(',') {
        return Err("several hosts in one state URL are not supported; name one".into());
    }
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or("an IPv6 host in brackets lacks its closing ]")?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (decode(h)?, Some(p)),
            None => (decode(hostport)?, None),
        }
    };
    let port = match port.filter(|p| !p.is_empty()) {
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("port {p:?} is not a number from 1 to 65535"))?,
        ),
        None => None,
    };
    Ok((host, port))
}

fn env_port() -> Result<u16, String> {
    match env("PGPORT") {
        Some(p) => p
            .parse()
            .map_err(|_| format!("PGPORT={p} is not a port number")),
        None => Ok(5432),
    }
}

/// The URL with its password cut out of the user part.
fn shown(text: &str, userinfo: Option<&str>) -> String {
    match userinfo.and_then(|u| u.split_once(':')) {
        Some((name, _)) => {
            let scheme_len = text.find("://").map(|i| i + 3).unwrap_or(0);
            let after = &text[scheme_len + userinfo.map(str::len).unwrap_or(0)..];
            format!("{}{}{}", &text[..scheme_len], name, after)
        }
        None => text.to_string(),
    }
}

/// Percent-decoding (`%40` is `@`).
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a % in the state URL is not followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the state URL decodes to invalid UTF-8".to_string())
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "postgres".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url_parses_and_hides_the_password() {
        let u = PgUrl::parse(
            "postgres://ops:s%40cret@db.internal:6543/team?sslmode=verify-full&application_name=x",
        )
        .unwrap();
        assert_eq!(u.user, "ops");
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.host, "db.internal");
        assert_eq!(u.port, 6543);
        assert_eq!(u.dbname, "team");
        assert_eq!(u.sslmode, SslMode::VerifyFull);
        assert_eq!(
            u.shown,
            "postgres://ops@db.internal:6543/team?sslmode=verify-full&application_name=x"
        );
        assert!(!format!("{u:?}").contains("cret"));
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(PgUrl::parse("postgres://h/db?sslmod=require")
            .unwrap_err()
            .contains("unknown parameter \"sslmod\""));
        assert!(PgUrl::parse("postgres://h/db?sslmod=require")
            .unwrap_err()
            .ends_with("; did you mean `sslmode`?"));
        assert!(!PgUrl::parse("postgres://h/db?zzz=1")
            .unwrap_err()
            .contains("did you mean"));
        assert!(PgUrl::parse("postgres://h:99999/db")
            .unwrap_err()
            .contains("port"));
        assert!(PgUrl::parse("postgres://h/db?sslmode=maybe")
            .unwrap_err()
            .contains("sslmode=maybe"));
    }

    #[test]
    fn pgpass_lines_split_on_unescaped_colons() {
        assert_eq!(
            pgpass_fields(r"h:5432:*:u:pa\:ss:word"),
            vec!["h", "5432", "*", "u", "pa:ss:word"]
        );
    }
}
