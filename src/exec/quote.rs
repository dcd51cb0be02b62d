//! Shell quoting: the one way any text becomes part of a command line a
//! shell on a host (or here) reads. Every room of `exec/` takes it from
//! here; it imports nothing.

/// One POSIX shell word for any text (the `shlex` crate's quoting, the same
/// as the templates' `quote` filter). A NUL byte cannot reach a shell at all,
/// so it is dropped.
pub fn sh_quote(value: &str) -> String {
    let value = if value.contains('\0') {
        std::borrow::Cow::Owned(value.replace('\0', ""))
    } else {
        std::borrow::Cow::Borrowed(value)
    };
    match shlex::try_quote(&value) {
        Ok(quoted) => quoted.into_owned(),
        // Only a NUL byte makes it fail, and there is none left.
        Err(_) => String::from("''"),
    }
}

/// `export` lines for a step's environment: names are validated as
/// `[A-Za-z_][A-Za-z0-9_]*`, values are quoted.
pub fn exports(env: &[(String, String)]) -> String {
    let mut exports = String::new();
    for (k, v) in env {
        exports.push_str(&format!("{k}={}; export {k}\n", sh_quote(v)));
    }
    exports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_hostile_values() {
        // Each value, quoted, is one word that `sh` gives back unchanged.
        for value in [
            "a'b",
            "$(x)\n`y`",
            "",
            "plain",
            "it's \"x\" $HOME \\ ; rm -rf / # !",
            "'\''",
            "tab\tand\u{e9}",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s|' {}", sh_quote(value)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{value}|"));
        }
        assert_eq!(sh_quote("a\0b"), sh_quote("ab"));
    }

    #[test]
    fn exports_give_each_value_back_unchanged() {
        let env = vec![
            ("A".to_string(), "it's $(x)".to_string()),
            ("B_2".to_string(), "line\nnext".to_string()),
        ];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{}printf '%s|%s' \"$A\" \"$B_2\"", exports(&env)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's $(x)|line\nnext");
    }
}
