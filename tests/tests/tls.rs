//! The CLI over `https://`: with `--ca-cert` (or `FASTCHAT_CA_CERT`) naming the CA that
//! signed the server's certificate, every request and the event stream go over TLS;
//! without it the certificate is refused with a word on what to do.

use std::time::Duration;

use fastchat_tests::tls::{test_ca, TlsFront};
use fastchat_tests::{CliHome, Cluster};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn the_cli_speaks_https_with_a_ca_of_its_own_and_refuses_an_unknown_one() {
    let cluster = Cluster::start(1).await;
    let front = TlsFront::start(&cluster.servers[0].url);
    let https = front.url.clone();
    let ca = test_ca();
    let ca = ca.to_str().expect("utf-8");

    // Not trusted without the CA: said as such, and what to do.
    let out = CliHome::new().run(
        &https,
        &["signup", "alice", "--password-stdin"],
        "password of alice\n",
    );
    assert_eq!(out.code(), 3, "{}", out.stderr());
    assert!(out.stderr().contains("--ca-cert"), "{}", out.stderr());
    assert_eq!(cluster.db.count("users").await, 0);

    let with_ca = |home: &CliHome, args: &[&str], stdin: &str| {
        let mut command = home.command(&https);
        command.env("FASTCHAT_CA_CERT", ca).args(args);
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("fastchat");
        {
            use std::io::Write;
            let mut input = child.stdin.take().expect("stdin");
            let _ = input.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output().expect("fastchat");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let alice = CliHome::new();
    let bob = CliHome::new();
    with_ca(
        &alice,
        &["signup", "alice", "--password-stdin"],
        "password of alice\n",
    );
    with_ca(
        &bob,
        &["signup", "bob", "--password-stdin"],
        "password of bob\n",
    );
    assert!(with_ca(&alice, &["whoami"], "").contains(&format!("alice on {https}")));

    // The event stream too: bob follows over TLS and alice's message arrives live.
    let mut follow = bob.command(&https);
    follow
        .env("FASTCHAT_CA_CERT", ca)
        .args(["recv", "--follow", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .stdin(std::process::Stdio::null());
    let mut child = follow.spawn().expect("recv --follow");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let observer = cluster.api(0).as_user("bob", &bob.token());
    fastchat_tests::eventually(WAIT, "bob's stream over TLS", || async {
        (observer.profile("bob").await.body["online"] == true).then_some(())
    })
    .await;
    with_ca(&alice, &["send", "bob", "over", "tls"], "");
    let line = lines.recv_timeout(WAIT).expect("the message, live");
    let line: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(line["text"], "over tls");
    let _ = child.kill();
    let _ = child.wait();
}
