//! The balancer in front of real api servers: least-loaded routing, a live server set,
//! failover without loss, health checks, and streams that end when their client leaves.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fastchat_tests::api::{direct_message, opaque_envelope};
use fastchat_tests::{
    eventually, metric_values, Api, ApiServer, BalancerProcess, Cluster, TestUser,
};

const WAIT: Duration = Duration::from_secs(30);
/// Quick keep-alives, so servers notice departed clients (and the balancer passes them on).
/// Quick keep-alives, and room for one user to hold many streams, as these tests do.
const QUICK: &[(&str, &str)] = &[
    ("FASTCHAT_SSE_KEEPALIVE_SECS", "1"),
    ("FASTCHAT_STREAMS_PER_SESSION", "100"),
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
async fn a_stopped_server_is_taken_out_and_comes_back_when_it_resumes() {
    let cluster = Cluster::start(2).await;
    let addrs: Vec<String> = cluster.servers.iter().map(ApiServer::addr).collect();
    let balancer = BalancerProcess::spawn(None, &[&addrs[0], &addrs[1]]);
    balancer.wait_healthy(&[&addrs[0], &addrs[1]]).await;

    cluster.servers[0].signal("STOP");
    let stopped = Instant::now();
    balancer.wait_healthy(&[&addrs[1]]).await;
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "took {took:?} to notice a hung server"
    );
    // Everything now goes to the other server, and works.
    let api = Api::new(&balancer.url);
    for i in 0..10 {
        api.signup(&format!("user{i}")).await.assert_status(201);
    }
    let text = balancer.metrics().await.expect("metrics");
    let served: f64 = metric_values(&text, "fastchat_balancer_requests_total")
        .into_iter()
        .filter(|(b, _)| *b == addrs[0])
        .map(|(_, v)| v)
        .sum();
    assert_eq!(served, 0.0, "a request went to the stopped server");

    cluster.servers[0].signal("CONT");
    balancer.wait_healthy(&[&addrs[0], &addrs[1]]).await;
}

#[tokio::test]
async fn a_client_that_leaves_closes_its_upstream_stream() {
    let cluster = Cluster::start_with(1, QUICK).await;
    let addr = cluster.servers[0].addr();
    let balancer = BalancerProcess::spawn(None, &[&addr]);
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
