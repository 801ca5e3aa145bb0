//! Waiting for a condition with a deadline: the kit's only way to synchronise.
//! Nothing sleeps for a fixed time and hopes.

use std::future::Future;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `child` until it exits, failing the test after `deadline`.
pub(crate) fn wait_for_exit(child: &mut Child, deadline: Duration, what: &str) -> ExitStatus {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child process") {
            return status;
        }
        assert!(
            Instant::now() < until,
            "{what} did not exit within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
