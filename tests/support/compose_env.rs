//! The hetzner sandbox's `.env`, in the forms Docker Compose reads, and the
//! comparison of what runbook's token checks sent with what Compose handed
//! the containers (`docker inspect`).

use super::sandbox::Sandbox;

/// The seed's `.env` lines in the forms Compose reads (sandbox/seed/deploy/env)
/// and the values Docker Compose v2 hands the containers for them, checked
/// against `docker compose config`: (service, its variable, the .env key,
/// the value).
pub const SEED_AS_COMPOSE_READS_IT: [(&str, &str, &str, &str); 6] = [
    // `${STACK}-webui-secret key 3f9a1c7e  # ...`: unquoted, a space, a comment.
    (
        "mcp-proxy",
        "WEBUI_SECRET_KEY",
        "WEBUI_SECRET_KEY",
        "sandbox-webui-secret key 3f9a1c7e",
    ),
    // `${OLD_GITHUB_TOKEN:-ghp_expired Sandbox Token 0000}`: a default.
    (
        "mcp-github",
        "GITHUB_PERSONAL_ACCESS_TOKEN",
        "GITHUB_TOKEN",
        "ghp_expired Sandbox Token 0000",
    ),
    // `"${STACK}-trello-key-0000"`: double quotes, interpolated.
    (
        "mcp-trello",
        "TRELLO_API_KEY",
        "TRELLO_API_KEY",
        "sandbox-trello-key-0000",
    ),
    // `expired-trello-token-${TRELLO_SUFFIX-0000}`: a default for an unset name.
    (
        "mcp-trello",
        "TRELLO_TOKEN",
        "TRELLO_API_TOKEN",
        "expired-trello-token-0000",
    ),
    // `'squ_sandbox_old_token_0000' # ...`: single quotes, then a comment.
    (
        "mcp-sonarqube",
        "SONARQUBE_TOKEN",
        "SONARQUBE_TOKEN",
        "squ_sandbox_old_token_0000",
    ),
    // `pk_${STACK}_clickup_key`: unbraced `$STACK` would stop at `_`; braced does not.
    (
        "mcp-clickup",
        "CLICKUP_API_KEY",
        "CLICKUP_API_KEY",
        "pk_sandbox_clickup_key",
    ),
];

pub fn sha256_hex(value: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value each token check sent (the simulated upstream records the
/// SHA-256 of what a check, not an MCP container, sent) is the value Compose
/// handed the container, read with `docker inspect`; and that is the value
/// Compose's rules give the seed's line. The JWT check (verify-jwt, signed
/// with runbook's reading of WEBUI_SECRET_KEY, accepted by mcp-proxy with
/// Compose's) passed in the same run.
pub fn check_env_read_as_compose_reads_it(sb: &Sandbox) {
    for (service, var, key, value) in SEED_AS_COMPOSE_READS_IT {
        let got = sb.env_of(service);
        assert_eq!(
            got.get(var).map(String::as_str),
            Some(value),
            "{service}'s {var} (from .env {key}) is not what Compose reads"
        );
        if ["GITHUB_TOKEN", "TRELLO_API_KEY", "TRELLO_API_TOKEN"].contains(&key) {
            check_sent_what_the_container_got(sb, key, service, var);
        }
    }
    assert_eq!(
        sb.env_of("open-webui")["WEBUI_SECRET_KEY"],
        SEED_AS_COMPOSE_READS_IT[0].3
    );
}

/// The last value the token check of `key` sent is `service`'s `var`.
pub fn check_sent_what_the_container_got(sb: &Sandbox, key: &str, service: &str, var: &str) {
    let recorded = std::fs::read_to_string(sb.root().join("upstream/checked.sha256"))
        .expect("the upstream records what the checks sent");
    let last = recorded
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(n, _)| *n == key)
        .map(|(_, h)| h.to_string())
        .next_back();
    assert_eq!(
        last,
        Some(sha256_hex(&sb.env_of(service)[var])),
        "the check of {key} sent another value than {service}'s {var}"
    );
}
