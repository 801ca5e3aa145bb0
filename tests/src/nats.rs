//! A NATS broker of a test's own (Debian's `nats-server`: `FASTCHAT_NATS_SERVER`, which
//! `scripts/test` sets, or what `scripts/lib.sh` finds), to carry wake-ups between api
//! servers and to be killed and started again. Stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::binaries::lib_sh;
use crate::wait::eventually;

pub struct NatsBroker {
    port: u16,
    child: Child,
    /// `nats://127.0.0.1:<port>`, for `FASTCHAT_NATS_URL`.
    pub url: String,
}

fn program() -> String {
    std::env::var("FASTCHAT_NATS_SERVER").unwrap_or_else(|_| lib_sh("nats_server", &[]))
}

fn spawn(port: u16) -> Child {
    Command::new(program())
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nats-server")
}

async fn wait_listening(port: u16) {
    eventually(Duration::from_secs(20), "nats-server to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(drop)
    })
    .await;
}

impl NatsBroker {
    /// A broker on a free port, once it accepts connections.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = spawn(port);
        wait_listening(port).await;
        NatsBroker {
            port,
            child,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }

    /// Kills it with SIGKILL (whatever it held is gone) and waits until it is.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, once it accepts connections.
    pub async fn start_again(&mut self) {
        self.kill();
        self.child = spawn(self.port);
        wait_listening(self.port).await;
    }
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        self.kill();
    }
}
