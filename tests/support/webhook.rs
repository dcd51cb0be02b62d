//! A webhook receiver on 127.0.0.1 for the notify tests: records every
//! request as it arrives (before answering), and answers as told: 200,
//! some 500s first, or never.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::http::{read_request, Request};

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// 500 to the first N requests, then 200.
    FailFirst(usize),
    /// Reads the request, records it, and never says a word.
    Never,
    /// 301 to another path of the same receiver (which answers 200).
    Redirect,
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

    /// Answers 301 to the hook's path, pointing at `/moved` (which gets 200).
    pub fn redirecting() -> Self {
        Self::with(Answer::Redirect)
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
    let Some(request) = read_request(&stream) else {
        return;
    };
    seen.lock().unwrap().push(request);
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
        Answer::Redirect if !request_path_is_moved(seen) => 301,
        Answer::Redirect => 200,
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nLocation: /moved\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    );
}

/// Whether the request just recorded went to `/moved`.
fn request_path_is_moved(seen: &Mutex<Vec<Request>>) -> bool {
    seen.lock()
        .unwrap()
        .last()
        .is_some_and(|r| r.path == "/moved")
}
