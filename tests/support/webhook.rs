//! A webhook receiver on 127.0.0.1 for the notify tests: records every
//! request as it arrives (before answering), and answers as told: 200,
//! some 500s first, or never.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::http::Request;

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// 500 to the first N requests, then 200.
    FailFirst(usize),
    /// Reads the request, records it, and never says a word.
    Never,
}

/// The receiver; its threads end with the test process.
pub struct Webhook {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

/// The path of the hook's URL: like a Slack webhook, a credential.
pub const HOOK_PATH: &str = "/services/T0RBTEST/B0RBTEST/hook-credential-x9y8";

impl Webhook {
    /// Answers 200 to everything.
    pub fn start() -> Self {
        Self::with(Answer::FailFirst(0))
    }

    /// Answers 500 to the first `n` requests, then 200.
    pub fn failing_first(n: usize) -> Self {
        Self::with(Answer::FailFirst(n))
    }

    /// Never answers.
    pub fn silent() -> Self {
        Self::with(Answer::Never)
    }

    fn with(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let count = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                let count = count.clone();
                std::thread::spawn(move || serve(stream, answer, &seen, &count));
            }
        });
        Webhook { port, requests }
    }

    /// The hook's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{HOOK_PATH}", self.port)
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The JSON bodies received so far.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.received()
            .iter()
            .map(|r| {
                serde_json::from_str(&r.body)
                    .unwrap_or_else(|e| panic!("a POST that is not JSON ({e}): {}", r.body))
            })
            .collect()
    }
}

fn serve(stream: TcpStream, answer: Answer, seen: &Mutex<Vec<Request>>, count: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    seen.lock().unwrap().push(Request {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    });
    let n = count.fetch_add(1, Ordering::SeqCst);
    let status = match answer {
        Answer::Never => {
            // Keep the connection open and say nothing until the client gives up.
            let mut sink = [0u8; 64];
            let mut s = stream;
            while s.read(&mut sink).unwrap_or(0) > 0 {}
            return;
        }
        Answer::FailFirst(k) if n < k => 500,
        Answer::FailFirst(_) => 200,
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    );
}
