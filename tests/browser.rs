//! The web view in a real browser (Debian's headless chromium over
//! WebDriver): a running step turns succeeded on an open page without a
//! reload, an approval given from the page lets `resume` go on, and the
//! page is not blank at desktop and phone size.

mod support;

use std::time::Duration;

use fantoccini::Locator;
use support::browser::{colours, Browser};
use support::web::Server;
use support::Test;

/// The `data-state` of a step's row on the open page.
async fn row_state(b: &Browser, step: &str) -> String {
    let script = format!(
        "var r=document.querySelector('tr[data-step=\"{step}\"]');return r?r.dataset.state:'';"
    );
    b.client
        .execute(&script, vec![])
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Waits until the step's row shows `state`; how long it took.
async fn until_row(b: &Browser, step: &str, state: &str, limit: Duration) -> Option<Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if row_state(b, step).await == state {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn js(b: &Browser, script: &str) -> serde_json::Value {
    b.client.execute(script, vec![]).await.expect("script")
}

#[tokio::test]
async fn a_run_page_follows_the_run_and_approves_from_the_browser() {
    let t = Test::new();
    let yaml = format!(
        "description: deploy, as a person watches it\nsteps:\n  - id: build\n    run: echo built\n  - id: wait\n    needs: [build]\n    run: echo waiting; while [ ! -f {go} ]; do sleep 0.05; done; echo done\n    timeout: 60s\n  - id: gate\n    needs: [wait]\n    approval: \"Ship it?\"\n  - id: ship\n    needs: [gate]\n    run: echo shipped\n",
        go = t.p("go")
    );
    t.put_runbook("deploy", &yaml);
    let engine = t.spawn(&["run", "deploy"]);
    assert!(support::wait_for(Duration::from_secs(10), || t
        .run(&["status", "--json"])
        .stdout
        .contains("\"running\"")));
    let s = Server::start(&t);
    let b = Browser::start(t.path()).await;
    b.client
        .goto(&format!("{}/runs/1?token={}", s.base, s.token))
        .await
        .expect("open the run page");
    // The token left the address bar.
    let url = b.client.current_url().await.expect("url");
    assert_eq!(url.path(), "/runs/1");
    assert!(!url.as_str().contains(&s.token));
    assert!(until_row(&b, "wait", "running", Duration::from_secs(5))
        .await
        .is_some());
    js(&b, "window.__notReloaded = 7; return 0;").await;
    t.write("go", "");
    let took = until_row(&b, "wait", "succeeded", Duration::from_secs(5))
        .await
        .expect("the running step turns succeeded on the open page");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    support::finish(engine).code(3);
    assert!(until_row(&b, "gate", "held", Duration::from_secs(5))
        .await
        .is_some());
    assert_eq!(js(&b, "return window.__notReloaded;").await, 7, "no reload");
    // The graph is drawn with the step's state.
    let node = js(
        &b,
        "var n=document.querySelector('g.node[data-step=\"wait\"]');return n?n.dataset.state:'';",
    )
    .await;
    assert_eq!(node, "succeeded");
    // The name is asked once and kept; the note goes with the approval.
    let by = b.client.find(Locator::Id("by")).await.expect("name box");
    by.send_keys("Lukas").await.expect("type");
    js(
        &b,
        "document.getElementById('by').dispatchEvent(new Event('change'));return 0;",
    )
    .await;
    let note = b
        .client
        .find(Locator::Css("tr[data-step=\"gate\"] input.note"))
        .await
        .expect("note box");
    note.send_keys("window ok").await.expect("type");
    // The page may redraw between finding the button and clicking it.
    let mut clicked = false;
    for _ in 0..5 {
        let button = b
            .client
            .find(Locator::Css(
                "tr[data-step=\"gate\"] button[data-act=approve]",
            ))
            .await
            .expect("approve button");
        if button.click().await.is_ok() {
            clicked = true;
            break;
        }
    }
    assert!(clicked, "the approve button could not be clicked");
    assert!(
        support::wait_for_async(Duration::from_secs(5), || async {
            js(&b, "return document.getElementById('flash').textContent;")
                .await
                .as_str()
                .is_some_and(|f| f.contains("approved `gate` of run 1 as Lukas"))
        })
        .await
    );
    assert_eq!(
        js(&b, "return localStorage.getItem('runbook.by');").await,
        "Lukas"
    );
    t.run(&["resume", "1"]).code(0).stdout_has("shipped");
    if until_row(&b, "ship", "succeeded", Duration::from_secs(5))
        .await
        .is_none()
    {
        let dbg = js(&b, "return [window.__opens, document.activeElement.tagName, document.getElementById('run').innerText.slice(0,800)];").await;
        panic!("the page did not show ship succeeded: {dbg}");
    }
    // Nothing came from elsewhere.
    let foreign = js(
        &b,
        &format!("return performance.getEntriesByType('resource').map(function(e){{return e.name}}).filter(function(n){{return n.indexOf('{}')!==0}});", s.base),
    )
    .await;
    assert_eq!(foreign, serde_json::json!([]), "resources from elsewhere");
    screenshots(&b, &t).await;
    b.close().await;
}

/// Desktop and phone size: not blank, and no sideways scrolling on a phone.
async fn screenshots(b: &Browser, t: &Test) {
    for (name, w, h) in [("desktop", 1280u32, 900u32), ("phone", 390, 844)] {
        b.client.set_window_size(w, h).await.expect("resize");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = b.client.screenshot().await.expect("screenshot");
        let n = colours(&png);
        assert!(n > 50, "{name} screenshot has {n} colours: blank?");
        std::fs::write(t.path().join(format!("{name}.png")), &png).expect("save");
        if let Ok(dir) = std::env::var("RUNBOOK_SCREENSHOTS") {
            let _ = std::fs::write(format!("{dir}/web-{name}.png"), &png);
        }
        let wide = js(
            b,
            "return document.documentElement.scrollWidth - window.innerWidth;",
        )
        .await;
        assert!(
            wide.as_i64().unwrap_or(99) <= 1,
            "{name}: {wide} px wider than the window"
        );
    }
}
