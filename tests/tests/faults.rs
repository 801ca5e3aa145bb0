//! Faults under a steady flow of messages: each run starts a whole system of its own
//! (PostgreSQL, two api servers, the balancer), sends steadily through the balancer to
//! receivers that resume their streams, injects one fault, and checks that no
//! acknowledged message was lost or repeated, no inbox has a gap, nothing answered 500,
//! every client worked again within the limit after the fault, and memory came back.
//! The table of every run is printed (and written to target/faults.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastchat_tests::api::{direct_message, opaque_envelope};
use fastchat_tests::flow::rss_bytes;
use fastchat_tests::{
    eventually, metric_values, paths, root, Api, ApiServer, BalancerProcess, Flow, FlowReport,
    FlowSettings, OwnCluster, TestUser,
};

const WAIT: Duration = Duration::from_secs(30);
/// How long a fault that lasts (a stopped process, a stalled database, a storm) lasts.
const FAULT_LENGTH: Duration = Duration::from_secs(10);
/// How long the flow goes on after a fault before it stops.
const AFTER_FAULT: Duration = Duration::from_secs(3);
const MIB: f64 = 1024.0 * 1024.0;

const API_ENV: &[(&str, &str)] = &[
    ("FASTCHAT_DB_POOL_SIZE", "8"),
    ("FASTCHAT_SSE_KEEPALIVE_SECS", "2"),
    ("FASTCHAT_STREAM_STALL_SECS", "6"),
];
/// The production health-check timing, not the quicker one other tests use.
const BALANCER_ENV: &[(&str, &str)] = &[
    ("FASTCHAT_HEALTH_INTERVAL_MS", "500"),
    ("FASTCHAT_HEALTH_TIMEOUT_MS", "600"),
    ("FASTCHAT_BALANCER_STREAM_STALL_SECS", "6"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillApi,
    StopApi,
    KillBalancer,
    RestartPostgres,
    CrashPostgres,
    StallPostgres,
    Overload,
    SlowReaders,
}

impl Fault {
    const ALL: [Fault; 8] = [
        Fault::KillApi,
        Fault::StopApi,
        Fault::KillBalancer,
        Fault::RestartPostgres,
        Fault::CrashPostgres,
        Fault::StallPostgres,
        Fault::Overload,
        Fault::SlowReaders,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::KillApi => "kill -9 an api server",
            Fault::StopApi => "SIGSTOP an api server 10 s",
            Fault::KillBalancer => "kill -9 the balancer, start it again",
            Fault::RestartPostgres => "restart PostgreSQL",
            Fault::CrashPostgres => "crash PostgreSQL (stop -m immediate)",
            Fault::StallPostgres => "stall PostgreSQL (SIGSTOP 10 s)",
            Fault::Overload => "overload: 2,000 connections sending flat out, 10 s",
            Fault::SlowReaders => "100 slow readers that never read",
        }
    }

    fn cluster(self) -> &'static str {
        match self {
            Fault::KillApi => "fault-kill-api",
            Fault::StopApi => "fault-stop-api",
            Fault::KillBalancer => "fault-kill-balancer",
            Fault::RestartPostgres => "fault-restart-pg",
            Fault::CrashPostgres => "fault-crash-pg",
            Fault::StallPostgres => "fault-stall-pg",
            Fault::Overload => "fault-overload",
            Fault::SlowReaders => "fault-slow-readers",
        }
    }

    /// How soon after the fault's end every client must work again. A hung server's
    /// clients are counted from when it hung: it never ends by itself.
    fn recovery_limit(self) -> Duration {
        match self {
            Fault::StopApi => Duration::from_secs(5),
            _ => Duration::from_secs(2),
        }
    }
}

struct System {
    pg: OwnCluster,
    servers: Vec<ApiServer>,
    balancer: BalancerProcess,
    balancer_port: u16,
    api: Api,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl System {
    async fn start(fault: Fault) -> System {
        let pg = OwnCluster::start(fault.cluster()).await;
        let pending: Vec<_> = (0..2)
            .map(|_| ApiServer::spawn(&pg.url(), API_ENV))
            .collect();
        let servers: Vec<ApiServer> = pending.into_iter().map(|p| p.ready()).collect();
        let balancer_port = free_port();
        let balancer =
            BalancerProcess::spawn_on_with(balancer_port, Some(&pg.url()), &[], BALANCER_ENV);
        let addrs: Vec<String> = servers.iter().map(ApiServer::addr).collect();
        balancer
            .wait_healthy(&addrs.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        let api = Api::new(&balancer.url);
        System {
            pg,
            servers,
            balancer,
            balancer_port,
            api,
        }
    }

    /// The resident memory of the balancer and of each api server still running.
    fn memory(&self) -> Vec<(String, u64)> {
        let mut memory = vec![(
            "balancer".to_owned(),
            rss_bytes(self.balancer.pid()).unwrap_or(0),
        )];
        for (i, server) in self.servers.iter().enumerate() {
            if let Some(rss) = rss_bytes(server.pid()) {
                memory.push((format!("api{i}"), rss));
            }
        }
        memory
    }

    /// The server holding the most event streams.
    async fn busiest(&self) -> usize {
        let mut best = (0, -1.0);
        for (i, server) in self.servers.iter().enumerate() {
            let open = server.open_streams().await.unwrap_or(0.0);
            if open > best.1 {
                best = (i, open);
            }
        }
        best.0
    }

    /// Receivers whose inbox seqs are not 1..n.
    async fn inboxes_with_gaps(&self, receivers: &[String]) -> Vec<String> {
        let (client, connection) = tokio_postgres::connect(&self.pg.url(), tokio_postgres::NoTls)
            .await
            .expect("connected");
        tokio::spawn(connection);
        let mut gaps = Vec::new();
        for name in receivers {
            let rows = client
                .query(
                    "SELECT e.seq FROM inbox_events e JOIN users u ON u.id = e.user_id
                      WHERE u.username = $1 ORDER BY e.seq",
                    &[name],
                )
                .await
                .expect("an inbox");
            let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            if seqs != (1..=seqs.len() as i64).collect::<Vec<_>>() {
                gaps.push(name.clone());
            }
        }
        gaps
    }
}

/// Clients sending flat out on connections of their own, counting answers by status.
struct Storm {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    statuses: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Storm {
    async fn start(api: &Api, users: usize, connections_each: usize) -> Storm {
        let mut signed_in = Vec::new();
        for i in 0..users {
            signed_in.push(api.user(&format!("storm{i}")).await);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let statuses = Arc::new(Mutex::new(BTreeMap::new()));
        let mut tasks = Vec::new();
        for (i, user) in signed_in.iter().enumerate() {
            let to = signed_in[(i + 1) % users].name.clone();
            for _ in 0..connections_each {
                // A client of its own: a connection of its own.
                let own = TestUser::new(&user.name, &user.token, &Api::new(&api.base));
                let (stop, statuses, to) = (Arc::clone(&stop), Arc::clone(&statuses), to.clone());
                tasks.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let body = direct_message(&to, opaque_envelope(&[&own.name, &to]));
                        let status =
                            match tokio::time::timeout(Duration::from_secs(5), own.try_send(&body))
                                .await
                            {
                                Ok(Some(answer)) => answer.status.as_u16().to_string(),
                                Ok(None) => "no connection".to_owned(),
                                Err(_) => "no answer".to_owned(),
                            };
                        *statuses
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(status)
                            .or_default() += 1;
                    }
                }));
            }
        }
        Storm {
            stop,
            tasks,
            statuses,
        }
    }

    async fn stop(self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        statuses.clone()
    }
}

/// Readers that open their streams (on inboxes that hold a lot) and never read.
async fn slow_readers(system: &System, n: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let writer = system.api.user("bulk_writer").await;
    let big = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(vec![0x5a; 24_000])
    };
    let mut readers = Vec::new();
    for i in 0..n {
        readers.push(system.api.user(&format!("slow{i}")).await);
    }
    // Each inbox holds more than the sockets on the way buffer.
    let filling: Vec<_> = readers
        .iter()
        .map(|reader| {
            let (writer, name, big) = (writer.clone(), reader.name.clone(), big.clone());
            tokio::spawn(async move {
                for _ in 0..30 {
                    let mut envelope = opaque_envelope(&["bulk_writer", &name]);
                    envelope["ciphertext"] = serde_json::json!(big);
                    writer.send_to(&name, envelope).await.assert_status(201);
                }
            })
        })
        .collect();
    for task in filling {
        task.await.expect("an inbox filled");
    }
    let mut sockets = Vec::new();
    for reader in &readers {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(4096).expect("a small buffer");
        let address = format!("127.0.0.1:{}", system.balancer_port)
            .parse()
            .expect("an address");
        let mut stream = socket.connect(address).await.expect("connected");
        let request = format!(
            "GET {}?after=0 HTTP/1.1\r\nHost: fastchat\r\nAuthorization: Bearer {}\r\n\r\n",
            paths::EVENTS,
            reader.token
        );
        stream.write_all(request.as_bytes()).await.expect("asked");
        sockets.push(stream);
    }
    sockets
}

struct Row {
    fault: Fault,
    report: FlowReport,
    gaps: Vec<String>,
    recovery: Option<Duration>,
    memory_before: Vec<(String, u64)>,
    memory_after: Vec<(String, u64)>,
    storm: Option<StormOutcome>,
}

/// What a storm got: answers by status, and the servers the balancer took out while it
/// raged (busy is not down: none should be).
struct StormOutcome {
    answers: BTreeMap<String, u64>,
    taken_out: Vec<String>,
}

impl Row {
    /// What is wrong with this run, if anything.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let r = &self.report;
        if r.lost > 0 {
            problems.push(format!("{} acknowledged messages lost", r.lost));
        }
        if r.duplicated > 0 || r.out_of_order > 0 {
            problems.push(format!(
                "{} duplicated, {} out of order",
                r.duplicated, r.out_of_order
            ));
        }
        if !self.gaps.is_empty() {
            problems.push(format!("gaps in the inboxes of {:?}", self.gaps));
        }
        let storm_500 = self
            .storm
            .as_ref()
            .and_then(|s| s.answers.get("500").copied())
            .unwrap_or(0);
        if let Some(storm) = self.storm.as_ref().filter(|s| !s.taken_out.is_empty()) {
            problems.push(format!(
                "busy servers taken out of rotation: {:?}",
                storm.taken_out
            ));
        }
        if r.failures.contains_key("500") || storm_500 > 0 {
            problems.push("a 500".to_owned());
        }
        match self.recovery {
            Some(took) if took <= self.fault.recovery_limit() => {}
            Some(took) => problems.push(format!(
                "clients took {took:.1?} to work again (limit {:?})",
                self.fault.recovery_limit()
            )),
            None => problems.push("some client never worked again".to_owned()),
        }
        for (name, before) in &self.memory_before {
            if let Some((_, after)) = self.memory_after.iter().find(|(n, _)| n == name) {
                // Back near where it started: allocators keep some of what they had.
                let limit = *before as f64 * 1.5 + 48.0 * MIB;
                if *after as f64 > limit {
                    problems.push(format!(
                        "{name} kept {:.0} MiB (from {:.0} MiB)",
                        *after as f64 / MIB,
                        *before as f64 / MIB
                    ));
                }
            }
        }
        problems
    }

    fn line(&self) -> String {
        let r = &self.report;
        let mut failures: Vec<String> = r
            .failures
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect();
        if let Some(storm) = &self.storm {
            let shed: Vec<String> = storm
                .answers
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect();
            failures.push(format!("(storm {})", shed.join(", ")));
        }
        let memory = |m: &[(String, u64)]| {
            m.iter()
                .map(|(_, b)| format!("{:.0}", *b as f64 / MIB))
                .collect::<Vec<_>>()
                .join("/")
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} → {} | {} |",
            self.fault.name(),
            r.acked,
            r.delivered,
            r.lost,
            r.duplicated,
            if failures.is_empty() {
                "none".to_owned()
            } else {
                failures.join(", ")
            },
            self.recovery
                .map_or("never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
            memory(&self.memory_before),
            memory(&self.memory_after),
            if self.problems().is_empty() {
                "ok"
            } else {
                "FAILED"
            },
        )
    }
}

async fn run(fault: Fault) -> Row {
    let mut system = System::start(fault).await;
    let flow = Flow::start(&system.api, "flow", FlowSettings::default()).await;
    eventually(WAIT, "the flow to be under way", || async {
        (flow.acked() >= 120 && flow.all_working_since(Instant::now() - Duration::from_secs(1)))
            .then_some(())
    })
    .await;
    let memory_before = system.memory();
    let mut storm = None;
    let fault_end = match fault {
        Fault::KillApi => {
            let victim = system.busiest().await;
            system.servers[victim].signal("KILL");
            Instant::now()
        }
        Fault::StopApi => {
            let victim = system.busiest().await;
            system.servers[victim].signal("STOP");
            let hung = Instant::now();
            // Its clients must work again while it is still stopped.
            let recovery = flow.recovery(hung, FAULT_LENGTH).await;
            tokio::time::sleep_until((hung + FAULT_LENGTH).into()).await;
            system.servers[victim].signal("CONT");
            let addrs: Vec<String> = system.servers.iter().map(ApiServer::addr).collect();
            system
                .balancer
                .wait_healthy(&addrs.iter().map(String::as_str).collect::<Vec<_>>())
                .await;
            let report = flow.stop(WAIT).await;
            return finish(system, fault, report, recovery, memory_before, None).await;
        }
        Fault::KillBalancer => {
            system.balancer.signal("KILL");
            system.balancer.wait_exit(WAIT);
            system.balancer = BalancerProcess::spawn_on_with(
                system.balancer_port,
                Some(&system.pg.url()),
                &[],
                BALANCER_ENV,
            );
            Instant::now()
        }
        Fault::RestartPostgres => {
            system.pg.restart();
            Instant::now()
        }
        Fault::CrashPostgres => {
            system.pg.crash_and_start();
            Instant::now()
        }
        Fault::StallPostgres => {
            system.pg.stall();
            tokio::time::sleep(FAULT_LENGTH).await;
            system.pg.resume();
            Instant::now()
        }
        Fault::Overload => {
            let started = Storm::start(&system.api, 50, 40).await;
            // The storm lasts FAULT_LENGTH; meanwhile, whether the balancer keeps both
            // servers (they are busy, not down), looked at ten times a second.
            let mut taken_out: Vec<String> = Vec::new();
            let until = Instant::now() + FAULT_LENGTH;
            while Instant::now() < until {
                if let Some(text) = system.balancer.metrics().await {
                    for (backend, healthy) in
                        metric_values(&text, "fastchat_balancer_backend_healthy")
                    {
                        if healthy == 0.0 && !taken_out.contains(&backend) {
                            taken_out.push(backend);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            storm = Some(StormOutcome {
                answers: started.stop().await,
                taken_out,
            });
            Instant::now()
        }
        Fault::SlowReaders => {
            let sockets = slow_readers(&system, 100).await;
            // They are cut once their buffers stay full past the stall limit.
            let servers = &system.servers;
            eventually(
                Duration::from_secs(60),
                "the slow readers to be cut",
                || async {
                    let mut open = 0.0;
                    for server in servers {
                        open += server.open_streams().await.unwrap_or(0.0);
                    }
                    (open <= FlowSettings::default().receivers as f64).then_some(())
                },
            )
            .await;
            drop(sockets);
            Instant::now()
        }
    };
    let recovery = flow.recovery(fault_end, WAIT).await;
    // A while of the flow after the fault, too.
    tokio::time::sleep_until((fault_end + AFTER_FAULT).into()).await;
    let report = flow.stop(WAIT).await;
    finish(system, fault, report, recovery, memory_before, storm).await
}

async fn finish(
    system: System,
    fault: Fault,
    report: FlowReport,
    recovery: Option<Duration>,
    memory_before: Vec<(String, u64)>,
    storm: Option<StormOutcome>,
) -> Row {
    let gaps = system.inboxes_with_gaps(&report.receivers).await;
    let memory_after = system.memory();
    Row {
        fault,
        report,
        gaps,
        recovery,
        memory_before,
        memory_after,
        storm,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_every_fault_nothing_acknowledged_is_lost_or_repeated_and_clients_recover() {
    let only = std::env::var("FASTCHAT_FAULTS").ok();
    let mut table = String::from(
        "| fault | acked | delivered | lost | duplicated | failed attempts by status | \
         recovery | memory MiB (balancer/api…) before → after | |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut problems = Vec::new();
    for fault in Fault::ALL {
        if only
            .as_deref()
            .is_some_and(|o| !fault.cluster().contains(o))
        {
            continue;
        }
        let row = run(fault).await;
        let _ = writeln!(table, "{}", row.line());
        // Straight to stderr, past the test harness's capture: the table is the point.
        let _ = writeln!(std::io::stderr(), "{}", row.line());
        problems.extend(
            row.problems()
                .into_iter()
                .map(|p| format!("{}: {p}", fault.name())),
        );
    }
    let _ = std::fs::write(root().join("target/faults.md"), &table);
    let _ = writeln!(std::io::stderr(), "\n{table}");
    assert!(problems.is_empty(), "{problems:#?}");
}
