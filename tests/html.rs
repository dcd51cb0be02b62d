//! `handoff --format html` (issue 14, SPEC §10): one self-contained page
//! with the Markdown's content, escaped, that a real browser renders.

mod support;
use support::Test;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A held and failed run whose names, questions and output carry HTML.
fn hostile_run() -> Test {
    let t = Test::new().runbook(
        "h",
        "description: Deploy <b>bold</b> & more\nsecrets:\n  RB_ONE:\n    owner: \"<script>alert(1)</script> Ops\"\n    description: \"<img src=http://evil.example/x.png> the first key\"\n  RB_TWO:\n    owner: Maria\n    description: second key\nsteps:\n  - id: one\n    requires: [RB_ONE]\n    doc: \"<a href='http://evil.example/'>click</a> to supply it\"\n    run: 'true'\n  - id: two\n    requires: [RB_TWO]\n    run: 'true'\n  - id: ship\n    approval: \"Ship <b>now</b>?\"\n    run: 'true'\n  - id: broken\n    run: echo '<script>document.write(1)</script> http://example.com/x'; exit 1\n",
    );
    t.run(&["run", "h"]).code(1);
    t
}

/// The tags of a page: every `<...>` (untrusted `<` is escaped, so these
/// are the page's own).
fn tags(html: &str) -> Vec<&str> {
    html.split('<')
        .skip(1)
        .map(|rest| &rest[..rest.find('>').unwrap_or(rest.len())])
        .collect()
}

#[test]
fn the_html_handoff_is_self_contained_and_escaped() {
    let t = hostile_run();
    let out = t.p("handoff.html");
    t.run(&["handoff", "--format", "html", "-o", &out])
        .code(0)
        .stdout_has("wrote the handoff for run 1");
    let html = t.read("handoff.html");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("<meta name=\"viewport\" content=\"width=device-width"));
    for tag in tags(&html) {
        let lower = tag.to_ascii_lowercase();
        assert!(
            !lower.contains("src=") && !lower.contains("href=") && !lower.contains("http"),
            "a tag that fetches or links: <{tag}>"
        );
        let name = lower.split_whitespace().next().unwrap_or("");
        assert!(
            !["script", "link", "img", "iframe", "object", "embed", "base"].contains(&name),
            "<{tag}> in the page"
        );
    }
    let style = &html[html.find("<style>").unwrap()..html.find("</style>").unwrap()];
    assert!(
        !style.contains("url(") && !style.contains("@import"),
        "{style}"
    );
    // Every name, the resume command, and the untrusted text as text.
    for text in [
        "RB_ONE",
        "RB_TWO",
        "runbook resume 1",
        "runbook approve 1 ship",
        "&lt;script&gt;alert(1)&lt;/script&gt; Ops",
        "&lt;img src=http://evil.example/x.png&gt; the first key",
        "Ship &lt;b&gt;now&lt;/b&gt;?",
        "&lt;script&gt;document.write(1)&lt;/script&gt;",
        "Deploy &lt;b&gt;bold&lt;/b&gt; &amp; more",
    ] {
        assert!(html.contains(text), "{text:?} not in the page:\n{html}");
    }
    // The same content as the Markdown: every step id and secret it names.
    let md = t.run(&["handoff"]).stdout;
    for id in ["one", "two", "ship", "broken", "RB_ONE", "RB_TWO"] {
        assert!(md.contains(&format!("`{id}`")));
        assert!(html.contains(&format!("<code>{id}</code>")), "{id}");
    }
    // `--json` is still the short form of `--format json`; both together are refused.
    let json = t.run(&["handoff", "--json"]);
    assert_eq!(json.stdout, t.run(&["handoff", "--format", "json"]).stdout);
    t.run(&["handoff", "--json", "--format", "html"]).code(2);
    assert_eq!(
        t.run(&["handoff", "--format", "markdown"]).stdout,
        md,
        "markdown is the default"
    );
}

/// Debian's `chromium`, or a clear failure: this test must not pass
/// without a browser.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("chromium is not installed: `apt-get install chromium` (.ci/run installs it)")
        })
}

/// Runs headless Chromium on a file with `args`; its stdout.
fn headless(page: &Path, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_html_handoff_renders_in_headless_chromium() {
    let t = hostile_run();
    let page = t.path().join("handoff.html");
    t.run(&[
        "handoff",
        "--format",
        "html",
        "-o",
        &page.display().to_string(),
    ])
    .code(0);
    let dom = headless(&page, &["--dump-dom"]);
    // The browser parsed it into the page we meant: no script element came
    // out of the untrusted text, and the text is all there.
    assert!(dom.contains("<h1>Handoff: h — run 1 is"), "{dom}");
    assert!(!dom.to_ascii_lowercase().contains("<script"), "{dom}");
    assert!(!dom.to_ascii_lowercase().contains("<img"), "{dom}");
    for text in [
        "RB_ONE",
        "RB_TWO",
        "runbook resume 1",
        "&lt;script&gt;alert(1)&lt;/script&gt; Ops",
        "Last lines of its output",
    ] {
        assert!(
            dom.contains(text),
            "{text:?} not in the rendered page:\n{dom}"
        );
    }
    // A phone-sized screenshot comes out (look at it: SHOT=path keeps it).
    let shot = t.path().join("handoff.png");
    headless(
        &page,
        &[
            "--window-size=412,915",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Some(keep) = std::env::var_os("SHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
