//! A server that lies: a proxy between the real `fastchat` CLI and the real server (or
//! balancer) that rewrites any answer, or answers in the server's place, and records
//! every request the client sent. Tests play the malicious server with it and check that
//! the client still does the right thing.
//!
//! It speaks just enough HTTP/1.1 for the CLI: one request per connection (it answers
//! with `Connection: close`), bodies by `Content-Length`, event streams passed through as
//! they come.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request as the client sent it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// With the query string.
    pub path: String,
    pub body: Vec<u8>,
}

impl Request {
    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn matches(&self, method: &str, path_prefix: &str) -> bool {
        self.method == method && self.path.starts_with(path_prefix)
    }
}

/// An answer to rewrite: its status and JSON body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

type Rewrite = Box<dyn FnMut(&Request, &mut Reply) + Send>;
type RewriteEvent = Box<dyn FnMut(&mut Value) + Send>;

enum Rule {
    /// Rewrites every answer to a matching request.
    Rewrite {
        method: String,
        path: String,
        rewrite: Rewrite,
    },
    /// Answers the next matching request in the server's place.
    AnswerOnce {
        method: String,
        path: String,
        reply: Option<Reply>,
    },
}

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    /// Rewrites the data of every server-sent event passed through.
    event_rewrites: Vec<RewriteEvent>,
    requests: Vec<Request>,
}

pub struct Proxy {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    /// Dropped with the proxy: its runtime, on a thread of its own, stops serving.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Proxy {
    /// A proxy on a free port in front of `upstream` (`http://host:port`). It runs on a
    /// thread of its own, so that a test may block on the CLI while it serves.
    pub async fn start(upstream: &str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (upstream, state) = (
            upstream.trim_end_matches('/').to_owned(),
            Arc::clone(&shared),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the proxy's runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("a tokio listener");
                let http = reqwest::Client::new();
                let accept = async {
                    while let Ok((stream, _)) = listener.accept().await {
                        let (upstream, state, http) =
                            (upstream.clone(), Arc::clone(&state), http.clone());
                        tokio::spawn(async move {
                            let _ = serve(stream, &upstream, &state, &http).await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Proxy {
            url,
            shared,
            _stop: stop,
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rewrites every JSON answer to `method` on paths starting with `path`.
    pub fn rewrite(
        &self,
        method: &str,
        path: &str,
        rewrite: impl FnMut(&Request, &mut Reply) + Send + 'static,
    ) {
        self.shared().rules.push(Rule::Rewrite {
            method: method.to_owned(),
            path: path.to_owned(),
            rewrite: Box::new(rewrite),
        });
    }

    /// Answers the next `method` on a path starting with `path` itself, with `status`
    /// and `body`, without asking the server.
    pub fn answer_once(&self, method: &str, path: &str, status: u16, body: Value) {
        self.shared().rules.push(Rule::AnswerOnce {
            method: method.to_owned(),
            path: path.to_owned(),
            reply: Some(Reply { status, body }),
        });
    }

    /// Rewrites the JSON data of every event on the event streams passed through.
    pub fn rewrite_events(&self, rewrite: impl FnMut(&mut Value) + Send + 'static) {
        self.shared().event_rewrites.push(Box::new(rewrite));
    }

    /// Every request the client sent so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.shared().requests.clone()
    }
}

/// Reads one request: the head, then as many body bytes as `Content-Length` says.
async fn read_request(stream: &mut TcpStream) -> Option<(Request, Vec<(String, String)>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head_len) = parsed.parse(&buffer).ok()? {
            let method = parsed.method?.to_owned();
            let path = parsed.path?.to_owned();
            let headers: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(name, _)| name == "content-length")
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let mut body = buffer[head_len..].to_vec();
            while body.len() < length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(length);
            return Some((Request { method, path, body }, headers));
        }
    }
}

async fn write_head(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
) -> std::io::Result<()> {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Status");
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await
}

async fn serve(
    mut stream: TcpStream,
    upstream: &str,
    shared: &Mutex<Shared>,
    http: &reqwest::Client,
) -> std::io::Result<()> {
    let Some((request, headers)) = read_request(&mut stream).await else {
        return Ok(());
    };
    let own_answer = {
        let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.requests.push(request.clone());
        shared.rules.iter_mut().find_map(|rule| match rule {
            Rule::AnswerOnce {
                method,
                path,
                reply,
            } if request.matches(method, path) => reply.take(),
            _ => None,
        })
    };
    if let Some(reply) = own_answer {
        let body = serde_json::to_vec(&reply.body).unwrap_or_default();
        let content_type = if reply.status >= 400 {
            "application/problem+json"
        } else {
            "application/json"
        };
        let headers = [
            ("content-type".to_owned(), content_type.to_owned()),
            ("content-length".to_owned(), body.len().to_string()),
        ];
        write_head(&mut stream, reply.status, &headers).await?;
        return stream.write_all(&body).await;
    }

    let method =
        reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut forward = http.request(method, format!("{upstream}{}", request.path));
    for (name, value) in &headers {
        if matches!(
            name.as_str(),
            "authorization" | "content-type" | "last-event-id" | "accept"
        ) {
            forward = forward.header(name.as_str(), value.as_str());
        }
    }
    let Ok(mut answer) = forward.body(request.body.clone()).send().await else {
        write_head(
            &mut stream,
            502,
            &[("content-length".to_owned(), "0".to_owned())],
        )
        .await?;
        return Ok(());
    };
    let status = answer.status().as_u16();
    let mut reply_headers: Vec<(String, String)> = [
        "content-type",
        "retry-after",
        "www-authenticate",
        "cache-control",
    ]
    .iter()
    .filter_map(|name| {
        let value = answer.headers().get(*name)?.to_str().ok()?;
        Some(((*name).to_owned(), value.to_owned()))
    })
    .collect();
    let streaming = reply_headers
        .iter()
        .any(|(name, value)| name == "content-type" && value.starts_with("text/event-stream"));
    if streaming {
        write_head(&mut stream, status, &reply_headers).await?;
        let mut pending = String::new();
        while let Ok(Some(chunk)) = answer.chunk().await {
            pending.push_str(&String::from_utf8_lossy(&chunk));
            // Whole events only: each ends with a blank line.
            while let Some(end) = pending.find("\n\n") {
                let block: String = pending.drain(..end + 2).collect();
                let block = rewrite_event(shared, &block);
                stream.write_all(block.as_bytes()).await?;
            }
        }
        return Ok(());
    }
    let mut body = answer.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    if let Ok(json) = serde_json::from_slice::<Value>(&body) {
        let mut reply = Reply { status, body: json };
        let mut rewritten = false;
        {
            let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
            for rule in &mut shared.rules {
                if let Rule::Rewrite {
                    method,
                    path,
                    rewrite,
                } = rule
                {
                    if request.matches(method, path) {
                        rewrite(&request, &mut reply);
                        rewritten = true;
                    }
                }
            }
        }
        if rewritten {
            body = serde_json::to_vec(&reply.body).unwrap_or_default();
            write_reply(&mut stream, reply.status, &mut reply_headers, &body).await?;
            return Ok(());
        }
    }
    write_reply(&mut stream, status, &mut reply_headers, &body).await
}

async fn write_reply(
    stream: &mut TcpStream,
    status: u16,
    headers: &mut Vec<(String, String)>,
    body: &[u8],
) -> std::io::Result<()> {
    headers.push(("content-length".to_owned(), body.len().to_string()));
    write_head(stream, status, headers).await?;
    stream.write_all(body).await
}

/// An event block with its `data:` JSON rewritten by every event rewrite.
fn rewrite_event(shared: &Mutex<Shared>, block: &str) -> String {
    let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
    if shared.event_rewrites.is_empty() {
        return block.to_owned();
    }
    block
        .split_inclusive('\n')
        .map(|line| {
            let Some(data) = line.strip_prefix("data: ") else {
                return line.to_owned();
            };
            let Ok(mut json) = serde_json::from_str::<Value>(data.trim_end()) else {
                return line.to_owned();
            };
            for rewrite in &mut shared.event_rewrites {
                rewrite(&mut json);
            }
            format!("data: {json}\n")
        })
        .collect()
}
