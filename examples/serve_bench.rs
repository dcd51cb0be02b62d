//! The helper of `bench/serve.sh` (issue 25, point 5). Not part of the tool.
//!
//! ```text
//! serve_bench floor FILE          a trivial axum server on the same runtime set-up
//!                                 as `runbook serve`: GET /api/runs/{id}/events is a
//!                                 server-sent-event stream that sends nothing but
//!                                 keep-alives; any other GET reads FILE from disk and
//!                                 sends it. Prints its address on the first line.
//! serve_bench time URL N          GETs URL N times one after another (the token from
//!                                 $RUNBOOK_TOKEN as `Authorization: Bearer`), prints
//!                                 the median, fastest and slowest time and the size.
//! serve_bench pages BASE RUN N S  N run pages following run RUN on the server at BASE
//!                                 for S seconds, each doing what the page's script does
//!                                 (src/serve/run.html): load the page, open the event
//!                                 stream, refetch the run's fragment on every (re)connect
//!                                 and 100 ms after an event but `step_output` (the events
//!                                 within those 100 ms gathered into one fetch), one fetch
//!                                 at a time per page, a change while one is in flight
//!                                 gathered into one more. Prints what the pages received.
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async move {
        match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["floor", file] => floor(file.into()).await,
            ["time", url, n] => time(url, n.parse()?).await,
            ["pages", base, run, n, secs] => pages(base, run, n.parse()?, secs.parse()?).await,
            _ => {
                Err("usage: serve_bench floor FILE | time URL N | pages BASE RUN N SECONDS".into())
            }
        }
    });
    if let Err(e) = result {
        eprintln!("serve_bench: {e}");
        std::process::exit(2);
    }
}

async fn floor(file: std::path::PathBuf) -> Res<()> {
    let file = Arc::new(file);
    let app = Router::new()
        .fallback(get(move || {
            let file = file.clone();
            async move {
                let body = tokio::fs::read(&*file).await.unwrap_or_default();
                ([("content-type", "text/html; charset=utf-8")], body)
            }
        }))
        .route(
            "/api/runs/{id}/events",
            get(|| async {
                let never =
                    futures_util::stream::pending::<Result<Event, std::convert::Infallible>>();
                Sse::new(never).keep_alive(KeepAlive::default())
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn client() -> Res<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(token) = std::env::var("RUNBOOK_TOKEN") {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse()?,
        );
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .build()?)
}

async fn time(url: &str, n: usize) -> Res<()> {
    let client = client()?;
    let mut times = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let t0 = Instant::now();
        let response = client.get(url).send().await?;
        if !response.status().is_success() {
            return Err(format!("{url}: {}", response.status()).into());
        }
        size = response.bytes().await?.len();
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "median {:.2} ms  fastest {:.2} ms  slowest {:.2} ms  {} bytes",
        times[n / 2],
        times[0],
        times[n - 1],
        size
    );
    Ok(())
}

#[derive(Default)]
struct Counts {
    events: AtomicU64,
    fragments: AtomicU64,
    bytes: AtomicU64,
}

async fn pages(base: &str, run: &str, n: usize, secs: u64) -> Res<()> {
    let client = client()?;
    let counts = Arc::new(Counts::default());
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (client, counts) = (client.clone(), counts.clone());
        let (base, run) = (base.to_string(), run.to_string());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = page(client, &base, &run, counts).await {
                eprintln!("page: {e}");
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    for t in &tasks {
        t.abort();
    }
    println!(
        "{n} pages, {secs} s: {} events, {} fragment fetches, {} bytes",
        counts.events.load(Ordering::Relaxed),
        counts.fragments.load(Ordering::Relaxed),
        counts.bytes.load(Ordering::Relaxed)
    );
    Ok(())
}

/// One open page: the fetches its script makes.
async fn page(client: reqwest::Client, base: &str, run: &str, counts: Arc<Counts>) -> Res<()> {
    let full = client.get(format!("{base}/runs/{run}")).send().await?;
    counts
        .bytes
        .fetch_add(full.bytes().await?.len() as u64, Ordering::Relaxed);
    let (wake, mut woken) = tokio::sync::mpsc::channel::<()>(1);
    let refresher = {
        let (client, counts) = (client.clone(), counts.clone());
        let url = format!("{base}/runs/{run}?fragment=1");
        tokio::spawn(async move {
            while woken.recv().await.is_some() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                while woken.try_recv().is_ok() {}
                if let Ok(r) = client.get(&url).send().await {
                    let len = r.bytes().await.map(|b| b.len()).unwrap_or(0);
                    counts.fragments.fetch_add(1, Ordering::Relaxed);
                    counts.bytes.fetch_add(len as u64, Ordering::Relaxed);
                }
            }
        })
    };
    let result = follow(
        &client,
        &format!("{base}/api/runs/{run}/events"),
        &counts,
        &wake,
    )
    .await;
    refresher.abort();
    result
}

/// Reads the event stream; wakes the refresher as the page's script would.
async fn follow(
    client: &reqwest::Client,
    url: &str,
    counts: &Counts,
    wake: &tokio::sync::mpsc::Sender<()>,
) -> Res<()> {
    let mut stream = client.get(url).send().await?;
    let _ = wake.try_send(());
    let mut pending = String::new();
    while let Some(chunk) = stream.chunk().await? {
        counts
            .bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            if let Some(data) = line.strip_prefix("data:") {
                counts.events.fetch_add(1, Ordering::Relaxed);
                if !data.contains("\"event\":\"step_output\"") {
                    let _ = wake.try_send(());
                }
            }
        }
    }
    Ok(())
}
