//! The balancer in front of real api servers: least-loaded routing, a live server set,
//! failover without loss, health checks, and streams that end when their client leaves.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fastchat_tests::api::TEST_PASSWORD;
use fastchat_tests::api::{direct_message, opaque_envelope};
use fastchat_tests::{
    eventually, metric_values, metric_where, paths, Answer, Api, ApiServer, BalancerProcess,
    Cluster, TestUser,
};
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
/// Quick keep-alives, so servers notice departed clients (and the balancer passes them
/// on), and room for one user to hold many streams, as these tests do.
const QUICK: &[(&str, &str)] = &[
    ("FASTCHAT_SSE_KEEPALIVE_SECS", "1"),
    ("FASTCHAT_STREAMS_PER_SESSION", "100"),
    ("FASTCHAT_STREAMS_PER_USER", "1000"),
];

async fn streams_on(servers: &[ApiServer]) -> Vec<f64> {
    let mut counts = Vec::new();
    for server in servers {
        counts.push(server.open_streams().await.unwrap_or(-1.0));
    }
    counts
}

#[tokio::test]
async fn streams_spread_evenly_and_a_new_server_takes_the_new_ones() {
    let mut cluster = Cluster::start_with(3, QUICK).await;
    let balancer = BalancerProcess::spawn(Some(&cluster.db.url), &[]);
    let addrs: Vec<String> = cluster.servers.iter().map(ApiServer::addr).collect();
    balancer
        .wait_healthy(&addrs.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let api = Api::new(&balancer.url);
    let watcher = api.user("watcher").await;

    let mut streams = Vec::new();
    for _ in 0..30 {
        streams.push(watcher.events(None).await);
    }
    let counts = eventually(WAIT, "30 streams to land", || async {
        let counts = streams_on(&cluster.servers).await;
        (counts.iter().sum::<f64>() == 30.0).then_some(counts)
    })
    .await;
    for count in &counts {
        assert!((9.0..=11.0).contains(count), "uneven spread: {counts:?}");
    }

    // A fourth server registers itself; the balancer starts using it without a restart.
    let fourth = ApiServer::spawn(&cluster.db.url, QUICK).ready();
    let mut all: Vec<String> = addrs.clone();
    all.push(fourth.addr());
    balancer
        .wait_healthy(&all.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    cluster.servers.push(fourth);
    for _ in 0..10 {
        streams.push(watcher.events(None).await);
    }
    let on_fourth = eventually(WAIT, "the new streams to land", || async {
        let counts = streams_on(&cluster.servers).await;
        (counts.iter().sum::<f64>() == 40.0).then_some(counts[3])
    })
    .await;
    assert!(
        on_fourth >= 9.0,
        "the new server got only {on_fourth} of 10 new streams"
    );
}

/// Reads `reader`'s stream (through the balancer), reconnecting with Last-Event-ID
/// whenever it breaks, until `want` messages arrived; returns their seqs and ids in order.
async fn read_all(reader: TestUser, want: usize) -> (Vec<i64>, Vec<i64>) {
    let mut seqs = Vec::new();
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while ids.len() < want {
        assert!(
            Instant::now() < deadline,
            "gave up after {} of {want}",
            ids.len()
        );
        let last = seqs.last().copied().unwrap_or(0);
        let mut stream =
            match tokio::time::timeout(Duration::from_secs(5), reader.try_resume(last)).await {
                Ok(Some(stream)) => stream,
                _ => continue,
            };
        while let Some(event) = stream.next_event(Duration::from_secs(5)).await {
            seqs.push(event.data["seq"].as_i64().expect("seq"));
            ids.push(event.data["message"]["id"].as_i64().expect("id"));
            if ids.len() == want {
                break;
            }
        }
    }
    (seqs, ids)
}

#[tokio::test]
async fn killing_a_server_under_a_steady_flow_loses_and_repeats_nothing() {
    const READERS: usize = 6;
    const EACH: usize = 40;
    let cluster = Cluster::start_with(3, QUICK).await;
    let balancer = BalancerProcess::spawn(Some(&cluster.db.url), &[]);
    let addrs: Vec<String> = cluster.servers.iter().map(ApiServer::addr).collect();
    balancer
        .wait_healthy(&addrs.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let api = Api::new(&balancer.url);
    let writer = api.user("writer").await;
    let mut readers = Vec::new();
    for i in 0..READERS {
        readers.push(api.user(&format!("reader{i}")).await);
    }
    let reading: Vec<_> = readers
        .iter()
        .map(|reader| tokio::spawn(read_all(reader.clone(), EACH)))
        .collect();
    eventually(WAIT, "every reader to be connected", || async {
        (streams_on(&cluster.servers).await.iter().sum::<f64>() >= READERS as f64).then_some(())
    })
    .await;

    // The writer sends steadily; a send whose answer was lost is retried with the same
    // client_id, which is what makes retrying safe.
    let sending = {
        let (writer, names) = (
            writer.clone(),
            readers.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        );
        tokio::spawn(async move {
            let mut acked: HashMap<String, Vec<i64>> = HashMap::new();
            for _ in 0..EACH {
                for name in &names {
                    let body = direct_message(name, opaque_envelope(&["writer", name]));
                    let mut attempts = 0;
                    let id = loop {
                        let answer = writer.try_send(&body).await;
                        match answer {
                            Some(a) if a.status == 201 => break a.body["id"].as_i64().expect("id"),
                            // Lost with the dead server (502) or not sent at all: retry.
                            Some(a) if a.status.is_server_error() => {}
                            None => {}
                            Some(a) => panic!("a send was refused: {}", a.text),
                        }
                        attempts += 1;
                        assert!(attempts < 50, "a send kept failing");
                    };
                    acked.entry(name.clone()).or_default().push(id);
                }
            }
            acked
        })
    };
    // Kill the server holding the most streams once the flow is under way.
    let victim = eventually(WAIT, "messages to flow", || async {
        let counts = streams_on(&cluster.servers).await;
        let sent: i64 = cluster.db.count("messages").await;
        (sent >= (READERS * 5) as i64).then(|| {
            counts
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0)
        })
    })
    .await;
    cluster.servers[victim].signal("KILL");

    let acked = sending.await.expect("writer");
    for (TestUser { name, .. }, reader) in readers.iter().zip(reading) {
        let (seqs, ids) = reader.await.expect("reader");
        assert_eq!(
            seqs,
            (1..=EACH as i64).collect::<Vec<_>>(),
            "{name}: gap or repeat"
        );
        assert_eq!(
            ids, acked[name],
            "{name}: not exactly what was acknowledged"
        );
    }
}

#[tokio::test]
async fn a_stopped_server_is_taken_out_its_streams_move_and_it_comes_back_when_it_resumes() {
    let cluster = Cluster::start(2).await;
    let addrs: Vec<String> = cluster.servers.iter().map(ApiServer::addr).collect();
    let backends: Vec<String> = cluster.servers.iter().map(ApiServer::backend).collect();
    let balancer = BalancerProcess::spawn(None, &[&backends[0], &backends[1]]);
    balancer.wait_healthy(&[&addrs[0], &addrs[1]]).await;
    let api = Api::new(&balancer.url);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;

    // Alice's stream, on one of the two; that one stops.
    let mut stream = alice.events(None).await;
    let holder = eventually(WAIT, "the stream to reach a server", || async {
        let open = streams_on(&cluster.servers).await;
        open.iter().position(|n| *n == 1.0)
    })
    .await;
    let (stopped_addr, other_addr) = (&addrs[holder], &addrs[1 - holder]);
    cluster.servers[holder].signal("STOP");
    let stopped = Instant::now();
    balancer.wait_healthy(&[other_addr]).await;
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "took {took:?} to notice a hung server"
    );
    // Its stream is cut, and resumes on the other server.
    assert!(
        stream.ends_within(Duration::from_secs(5)).await,
        "the stream on the stopped server was not cut"
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "cut after {:?}",
        stopped.elapsed()
    );
    let mut resumed = alice.resume(0).await;
    bob.send_opaque_to(&alice).await.assert_status(201);
    let event = resumed.next_event(Duration::from_secs(5)).await;
    assert_eq!(event.expect("pushed").data["message"]["from"], "bob");

    // Everything now goes to the other server, and works.
    for i in 0..10 {
        api.signup(&format!("user{i}")).await.assert_status(201);
    }
    let text = balancer.metrics().await.expect("metrics");
    let served_after = |text: &str| -> f64 {
        metric_values(text, "fastchat_balancer_requests_total")
            .into_iter()
            .filter(|(b, _)| b == stopped_addr)
            .map(|(_, v)| v)
            .sum()
    };
    let before = served_after(&text);
    api.signup("late").await.assert_status(201);
    let text = balancer.metrics().await.expect("metrics");
    assert_eq!(
        served_after(&text),
        before,
        "a request went to the stopped server"
    );

    cluster.servers[holder].signal("CONT");
    balancer.wait_healthy(&[&addrs[0], &addrs[1]]).await;
}

#[tokio::test]
async fn a_client_that_leaves_closes_its_upstream_stream() {
    let cluster = Cluster::start_with(1, QUICK).await;
    let addr = cluster.servers[0].addr();
    let balancer = BalancerProcess::spawn(None, &[&cluster.servers[0].backend()]);
    balancer.wait_healthy(&[&addr]).await;
    let api = Api::new(&balancer.url);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;

    let mut stream = alice.events(None).await;
    eventually(WAIT, "the stream to reach the server", || async {
        (cluster.servers[0].open_streams().await == Some(1.0)).then_some(())
    })
    .await;
    // Unbuffered: an event arrives through the balancer as soon as it is sent.
    bob.send_opaque_to(&alice).await.assert_status(201);
    let event = stream
        .next_event(Duration::from_secs(5))
        .await
        .expect("pushed through");
    assert_eq!(event.data["message"]["from"], "bob");

    drop(stream);
    eventually(WAIT, "the server to close the stream", || async {
        (cluster.servers[0].open_streams().await == Some(0.0)).then_some(())
    })
    .await;
    let text = balancer.metrics().await.expect("metrics");
    let open: f64 = metric_values(&text, "fastchat_balancer_open_streams")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(open, 0.0);
}

#[tokio::test]
async fn servers_register_with_address_start_time_and_load_and_leave_on_shutdown() {
    let mut cluster = Cluster::start_with(2, QUICK).await;
    let alice = cluster.api(0).user("alice").await;
    let _stream = alice.events(None).await;
    let db = cluster.db.client().await;
    let first = cluster.servers[0].url.clone();
    eventually(WAIT, "the heartbeat to report the stream", || async {
        let row = db
            .query_one(
                "SELECT open_streams, started_at <= now() FROM servers WHERE address = $1",
                &[&first],
            )
            .await
            .ok()?;
        (row.get::<_, i32>(0) == 1 && row.get::<_, bool>(1)).then_some(())
    })
    .await;
    assert_eq!(cluster.db.count("servers").await, 2);
    cluster.servers[1].signal("TERM");
    assert!(cluster.servers[1].wait_exit(WAIT).success());
    assert_eq!(
        cluster.db.count("servers").await,
        1,
        "a stopped server leaves the registry"
    );
}

/// Asserts a 503 problem answer that says when to come back.
#[track_caller]
fn assert_unavailable(answer: &Answer) {
    answer.assert_problem(503, "unavailable");
    let retry: u64 = answer
        .retry_after
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {answer:?}"));
    assert!(retry >= 1);
}

#[tokio::test]
async fn with_no_server_to_take_it_a_request_gets_503_with_retry_after_never_500() {
    // Started before any server registered: the instant after start included.
    let db = fastchat_tests::TestDb::create().await;
    let balancer = BalancerProcess::spawn(Some(&db.url), &[]);
    let api = Api::new(&balancer.url);
    let first = eventually(WAIT, "the balancer to answer", || async {
        api.try_call(Method::GET, paths::USERS, None, None).await
    })
    .await;
    assert_unavailable(&first);
    assert_unavailable(&api.signup("alice").await);

    // A server comes; then it goes away for good.
    let mut server = ApiServer::spawn(&db.url, &[]).ready();
    balancer.wait_healthy(&[&server.addr()]).await;
    api.signup("alice").await.assert_status(201);
    server.signal("KILL");
    server.wait_exit(WAIT);
    for _ in 0..20 {
        let answer = api.signup("bob").await;
        assert_ne!(answer.status.as_u16(), 500, "{answer:?}");
        if answer.status == 503 {
            assert_unavailable(&answer);
        }
    }
    balancer.wait_healthy(&[]).await;
    assert_unavailable(&api.login_answer("alice", TEST_PASSWORD).await);
    let text = balancer.metrics().await.expect("metrics");
    assert!(
        metric_where(
            &text,
            "fastchat_balancer_refused_total",
            "reason",
            "no_server"
        ) >= 2.0,
        "{text}"
    );
}

#[tokio::test]
async fn each_client_address_is_held_to_its_rates_with_429_and_retry_after() {
    let cluster = Cluster::start(1).await;
    let balancer = BalancerProcess::spawn_with(
        None,
        &[&cluster.servers[0].backend()],
        &[
            ("FASTCHAT_BALANCER_SIGNUPS_PER_HOUR", "3"),
            ("FASTCHAT_BALANCER_LOGINS_PER_MINUTE", "4"),
            ("FASTCHAT_BALANCER_REQUESTS_PER_SECOND", "30"),
        ],
    );
    balancer.wait_healthy(&[&cluster.servers[0].addr()]).await;
    let api = Api::new(&balancer.url);
    for name in ["alice", "bob", "carol"] {
        api.signup(name).await.assert_status(201);
    }
    let over = api.signup("dave").await;
    over.assert_problem(429, "rate_limited");
    let retry: u64 = over
        .retry_after
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    assert!((1..=1200).contains(&retry), "Retry-After {retry}");
    let daves: i64 = cluster
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM users WHERE username = 'dave'", &[])
        .await
        .expect("counted")
        .get(0);
    assert_eq!(daves, 0, "the refused signup never reached a server");
    let direct = cluster.api(0);

    for _ in 0..4 {
        api.login_answer("alice", TEST_PASSWORD)
            .await
            .assert_status(201);
    }
    api.login_answer("alice", TEST_PASSWORD)
        .await
        .assert_problem(429, "rate_limited");

    // Requests in general: a burst past the rate gets some refused, then it refills.
    let alice = direct.login("alice").await.on(&api);
    let mut refused = 0;
    for _ in 0..60 {
        let answer = alice.profile("alice").await;
        match answer.status.as_u16() {
            200 => {}
            429 => {
                assert!(answer.retry_after.is_some());
                refused += 1;
            }
            other => panic!("{other}: {}", answer.text),
        }
    }
    assert!(refused >= 20, "only {refused} of 60 refused");
    eventually(WAIT, "the rate to refill", || async {
        (alice.profile("alice").await.status == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_api_sees_the_clients_address_as_the_balancer_does_not_as_the_client_claims() {
    let cluster = Cluster::start_with(1, &[("FASTCHAT_LOGIN_MAX_FAILURES", "3")]).await;
    let balancer = BalancerProcess::spawn(None, &[&cluster.servers[0].backend()]);
    balancer.wait_healthy(&[&cluster.servers[0].addr()]).await;
    let api = Api::new(&balancer.url);
    api.signup("alice").await.assert_status(201);
    // Guesses that each claim another address all count as this client's.
    for i in 0..3 {
        let answer = api
            .request(Method::POST, paths::SESSIONS)
            .header("x-fastchat-client", format!("203.0.113.{i}"))
            .json(&json!({"username": "alice", "password": "wrong password"}))
            .send()
            .await
            .expect("sent");
        assert_eq!(answer.status(), 401);
    }
    let held = api
        .request(Method::POST, paths::SESSIONS)
        .header("x-fastchat-client", "203.0.113.99")
        .json(&json!({"username": "alice", "password": TEST_PASSWORD}))
        .send()
        .await
        .expect("sent");
    assert_eq!(held.status(), 429, "the claimed address was believed");
}

#[tokio::test]
async fn metrics_are_on_the_admin_listeners_never_through_the_public_port() {
    let cluster = Cluster::start(1).await;
    let balancer = BalancerProcess::spawn(None, &[&cluster.servers[0].backend()]);
    balancer.wait_healthy(&[&cluster.servers[0].addr()]).await;
    let api = Api::new(&balancer.url);
    for path in [
        "/metrics",
        "/%6detrics",
        "/%6D%65trics",
        "/metrics/",
        "//metrics",
    ] {
        let answer = api.call(Method::GET, path, None, None).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.text);
        assert!(!answer.text.contains("fastchat_"), "{path} leaked metrics");
    }
    let admin = balancer.metrics().await.expect("the balancer's metrics");
    assert!(admin.contains("fastchat_balancer_backend_healthy"));
    let ready = reqwest::get(format!("{}/readyz", balancer.admin_url))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
}

/// A balancer that runs out of file descriptors is at fault itself: what it cannot carry
/// is refused (503, or left waiting to be accepted), never a 500, and the server keeps
/// its place and its streams (a failed connect or health check of its own making is not
/// the server's failure).
#[tokio::test]
async fn a_balancer_out_of_descriptors_keeps_its_server_and_the_streams_it_holds() {
    let cluster = Cluster::start_with(1, QUICK).await;
    let server = &cluster.servers[0];
    let balancer = BalancerProcess::spawn_with_open_files(&[&server.backend()], 96);
    balancer.wait_healthy(&[&server.addr()]).await;
    let alice = cluster.api(0).user("alice").await;
    let bob = cluster.api(0).user("bob").await;

    // Streams through the balancer until it can carry no more.
    let client = reqwest::Client::new();
    let url = format!("{}{}", balancer.url, paths::EVENTS);
    let mut streams = Vec::new();
    let refused = loop {
        assert!(streams.len() < 100, "the balancer never ran out");
        let asked = client.get(&url).bearer_auth(&bob.token).send();
        match tokio::time::timeout(Duration::from_secs(3), asked).await {
            Ok(Ok(stream)) if stream.status() == 200 => streams.push(stream),
            Ok(Ok(answer)) => break Some(answer.status().as_u16()),
            Ok(Err(_)) | Err(_) => break None,
        }
    };
    assert!(
        matches!(refused, Some(503) | None),
        "refused with {refused:?}"
    );
    assert!(streams.len() > 10, "only {} streams", streams.len());
    // Out of descriptors for a while: several health checks cannot even be made.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(streams.pop());
    drop(client);

    balancer.wait_healthy(&[&server.addr()]).await;
    let held = streams.len() as f64;
    eventually(WAIT, "the streams it held, still open", || async {
        let text = balancer.metrics().await?;
        let open = metric_where(
            &text,
            "fastchat_balancer_open_streams",
            "backend",
            &server.addr(),
        );
        (open == held).then_some(())
    })
    .await;
    // And they still carry what is sent.
    alice.send_opaque_to("bob").await.assert_status(201);
    for stream in &mut streams {
        let chunk = tokio::time::timeout(WAIT, async {
            loop {
                match stream.chunk().await {
                    Ok(Some(chunk)) if String::from_utf8_lossy(&chunk).contains("message") => {
                        return true
                    }
                    Ok(Some(_)) => continue,
                    _ => return false,
                }
            }
        })
        .await;
        assert_eq!(
            chunk,
            Ok(true),
            "a stream that was open carries the message"
        );
    }
}

/// A raw connection to the balancer, for what no HTTP client would send.
async fn raw_connection(balancer: &BalancerProcess) -> tokio::net::TcpStream {
    let address = balancer
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/');
    tokio::net::TcpStream::connect(address)
        .await
        .expect("connected to the balancer")
}

/// What the balancer sends on `socket` until it closes it (failing past the deadline).
/// A reset counts as closing: the balancer resets a connection it stops reading.
async fn read_until_closed(socket: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 4096];
        loop {
            match socket.read(&mut chunk).await {
                Ok(0) => return,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("read: {e}"),
            }
        }
    })
    .await
    .expect("the balancer closes the connection");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Reads from `socket` until what came holds `needle`.
async fn read_until(socket: &mut tokio::net::TcpStream, needle: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut text = String::new();
    tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 4096];
        while !text.contains(needle) {
            let n = socket.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before {needle:?} came: {text}");
            text.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{needle:?} never came: {text}"));
    text
}

/// Event streams are carried byte for byte beside the proxy: after other requests on a
/// kept-alive connection, with the server's refusals passed on whole, and with nothing
/// riding them to the server (a body, a second request, a byte sent later).
#[tokio::test]
async fn an_event_stream_is_carried_whole_and_nothing_rides_it_to_the_server() {
    use tokio::io::AsyncWriteExt;
    let cluster = Cluster::start_with(1, QUICK).await;
    let server = &cluster.servers[0];
    let balancer = BalancerProcess::spawn(None, &[&server.backend()]);
    balancer.wait_healthy(&[&server.addr()]).await;
    let api = Api::new(&balancer.url);
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let events = |token: &str, extra: &str| {
        format!(
            "GET {}?after=0 HTTP/1.1\r\nHost: fastchat\r\nAuthorization: Bearer {token}\r\n{extra}\r\n",
            paths::EVENTS
        )
    };

    // A stream asked for after another request on the same connection carries events.
    let mut socket = raw_connection(&balancer).await;
    let profile = format!(
        "GET {} HTTP/1.1\r\nHost: fastchat\r\nAuthorization: Bearer {}\r\n\r\n",
        paths::user("bob"),
        alice.token
    );
    socket.write_all(profile.as_bytes()).await.expect("sent");
    let answer = read_until(&mut socket, "\"username\":\"bob\"").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    socket
        .write_all(events(&alice.token, "").as_bytes())
        .await
        .expect("sent");
    let head = read_until(&mut socket, "\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    eventually(WAIT, "the stream to reach the server", || async {
        (server.open_streams().await == Some(1.0)).then_some(())
    })
    .await;
    bob.send_opaque_to(&alice).await.assert_status(201);
    read_until(&mut socket, "\"from\":\"bob\"").await;
    // A client of a stream only listens: what it sends ends the stream, here and on
    // the server.
    socket.write_all(profile.as_bytes()).await.expect("sent");
    let rest = read_until_closed(&mut socket).await;
    assert!(
        !rest.contains("HTTP/1.1"),
        "a request rode the stream: {rest}"
    );
    eventually(WAIT, "the server to close the stream", || async {
        (server.open_streams().await == Some(0.0)).then_some(())
    })
    .await;

    // The server's refusal comes through whole, and the connection ends with it.
    let mut socket = raw_connection(&balancer).await;
    socket
        .write_all(events("not-a-token", "").as_bytes())
        .await
        .expect("sent");
    let refused = read_until_closed(&mut socket).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.contains("invalid_token"), "{refused}");

    // A stream's request with a body, or with a second request behind it, is refused
    // before it reaches a server.
    for extra in [
        "Content-Length: 5\r\n\r\nhello".to_owned(),
        format!("\r\n{profile}"),
    ] {
        let request = events(&alice.token, "").trim_end().to_owned() + "\r\n" + &extra;
        let mut socket = raw_connection(&balancer).await;
        socket.write_all(request.as_bytes()).await.expect("sent");
        let answer = read_until_closed(&mut socket).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(!answer.contains("HTTP/1.1 200"), "{answer}");
    }
    assert_eq!(server.open_streams().await, Some(0.0));
}
