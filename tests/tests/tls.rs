//! TLS at the balancer: the real CLI over `https://` (its requests and its event
//! stream) with the CA that signed the balancer's certificate, a certificate from an
//! unknown CA refused with a word on what to do, and a renewed certificate taken up
//! without dropping the streams that are open.

use std::time::{Duration, Instant};

use fastchat_tests::tls::{connect, fixture_certificate, test_ca, ServedCertificate};
use fastchat_tests::{eventually, paths, BalancerProcess, CliHome, Cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(20);

/// One api server behind a balancer that serves `certificate`.
async fn system(certificate: &ServedCertificate) -> (Cluster, BalancerProcess) {
    let cluster = Cluster::start(1).await;
    let env = certificate.balancer_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let balancer = BalancerProcess::spawn_with(None, &[&cluster.servers[0].backend()], &env);
    balancer.wait_healthy(&[&cluster.servers[0].addr()]).await;
    (cluster, balancer)
}

#[tokio::test]
async fn the_cli_speaks_https_to_the_balancer_its_stream_included_and_refuses_an_unknown_ca() {
    let certificate = ServedCertificate::new();
    let (cluster, balancer) = system(&certificate).await;
    let https = balancer.url.clone();
    assert!(https.starts_with("https://"), "{https}");

    // Not trusted without the CA: said as such, with what to do, and nothing sent.
    let out = CliHome::new().run(
        &https,
        &["signup", "alice", "--password-stdin"],
        "password of alice\n",
    );
    assert_eq!(out.code(), 3, "{}", out.stderr());
    assert!(out.stderr().contains("--ca-cert"), "{}", out.stderr());
    assert_eq!(cluster.db.count("users").await, 0);

    let ca = test_ca();
    let alice = CliHome::new().trusting(&ca).sign_up(&https, "alice");
    let bob = CliHome::new().trusting(&ca).sign_up(&https, "bob");
    let whoami = alice.run(&https, &["whoami"], "");
    whoami.success();
    assert!(
        whoami.stdout().contains(&format!("alice on {https}")),
        "{}",
        whoami.stdout()
    );

    // Bob follows over TLS; alice's message, sent over TLS, is pushed to him at once.
    let follow = bob.spawn(&https, &["recv", "--follow", "--json"]);
    let observer = bob.user_on(&cluster.api(0));
    eventually(WAIT, "bob's stream through the balancer", || async {
        (observer.profile("bob").await.body["online"] == true).then_some(())
    })
    .await;
    alice
        .run(&https, &["send", "bob", "over", "tls"], "")
        .success();
    assert_eq!(follow.next_json(WAIT)["text"], "over tls");
}

/// Reads from `stream` until what came holds `needle`, or the deadline passes.
async fn read_until(
    stream: &mut (impl AsyncReadExt + Unpin),
    needle: &str,
    wait: Duration,
) -> String {
    let deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            other => panic!(
                "waiting for {needle:?}: {other:?}; had {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_connections_while_open_streams_go_on() {
    let certificate = ServedCertificate::new();
    let (_cluster, balancer) = system(&certificate).await;
    let https = balancer.url.clone();
    let ca = test_ca();
    let alice = CliHome::new().trusting(&ca).sign_up(&https, "alice");
    let bob = CliHome::new().trusting(&ca).sign_up(&https, "bob");

    let (mut stream, presented) = connect(balancer.port()).await.expect("a TLS connection");
    assert_eq!(presented, fixture_certificate("server"));
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: fastchat\r\nAuthorization: Bearer {}\r\n\r\n",
        paths::EVENTS,
        bob.token()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("asking for the stream");
    let head = read_until(&mut stream, "\r\n\r\n", WAIT).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    certificate.install("renewed");
    eventually(
        WAIT,
        "the renewed certificate on new connections",
        || async {
            let (_, presented) = connect(balancer.port()).await.ok()?;
            (presented == fixture_certificate("renewed")).then_some(())
        },
    )
    .await;

    // The stream opened under the old certificate still carries what is sent now.
    alice
        .run(&https, &["send", "bob", "after", "the", "renewal"], "")
        .success();
    read_until(&mut stream, "\"from\":\"alice\"", WAIT).await;
}
