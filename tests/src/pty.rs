//! The real `fastchat` on a pseudo-terminal, as a person at a terminal runs it: what it
//! writes is drawn by a terminal emulator (vt100), so a test reads the screen (rows,
//! the cursor's row) rather than a byte stream, and types keys (arrows included).
//! Everything waits for what the screen shows, with a deadline.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use expectrl::process::unix::WaitStatus;
use expectrl::Session;

pub const ROWS: u16 = 30;
pub const COLS: u16 = 100;

/// Keys, as a terminal sends them.
pub mod keys {
    pub const ENTER: &str = "\r";
    pub const LEFT: &str = "\x1b[D";
    pub const RIGHT: &str = "\x1b[C";
    pub const UP: &str = "\x1b[A";
    pub const CTRL_D: &str = "\x04";
    pub const CTRL_W: &str = "\x17";
    pub const BACKSPACE: &str = "\x7f";
}

pub struct Terminal {
    session: expectrl::session::OsSession,
    parser: vt100::Parser,
    /// Bytes read but not yet drawn (a question about the cursor may be cut in two).
    pending: Vec<u8>,
    exit: Option<i32>,
}

impl Terminal {
    /// Starts `command` on a terminal of [`ROWS`] × [`COLS`].
    pub fn spawn(mut command: Command) -> Terminal {
        command.env("TERM", "xterm");
        let mut session = Session::spawn(command).expect("starting fastchat on a pty");
        session
            .get_process_mut()
            .set_window_size(COLS, ROWS)
            .expect("setting the window size");
        Terminal {
            session,
            parser: vt100::Parser::new(ROWS, COLS, 0),
            pending: Vec::new(),
            exit: None,
        }
    }

    /// Reads what the program wrote so far into the screen, answering its questions
    /// about where the cursor is (`ESC [ 6 n`) as a terminal does.
    fn pump(&mut self) {
        const ASK_CURSOR: &[u8] = b"\x1b[6n";
        let mut buf = [0u8; 8192];
        loop {
            let n = match self.session.try_read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            self.pending.extend_from_slice(&buf[..n]);
            while let Some(at) = self
                .pending
                .windows(ASK_CURSOR.len())
                .position(|w| w == ASK_CURSOR)
            {
                let upto: Vec<u8> = self.pending.drain(..at + ASK_CURSOR.len()).collect();
                self.parser.process(&upto[..at]);
                let (row, col) = self.parser.screen().cursor_position();
                let answer = format!("\x1b[{};{}R", row + 1, col + 1);
                let _ = self.session.write_all(answer.as_bytes());
                let _ = self.session.flush();
            }
            // Keep back a tail that may be the start of a question.
            let tail_from = self.pending.len().saturating_sub(ASK_CURSOR.len() - 1);
            let keep_from = self.pending[tail_from..]
                .iter()
                .rposition(|b| *b == 0x1b)
                .map_or(self.pending.len(), |i| tail_from + i);
            let done: Vec<u8> = self.pending.drain(..keep_from).collect();
            self.parser.process(&done);
        }
    }

    /// The screen's rows, trailing blanks trimmed.
    pub fn rows(&mut self) -> Vec<String> {
        self.pump();
        self.parser
            .screen()
            .rows(0, COLS)
            .map(|r| r.trim_end().to_owned())
            .collect()
    }

    /// The whole screen as text.
    pub fn text(&mut self) -> String {
        self.rows().join("\n")
    }

    /// The row the cursor is on (where the line being typed is).
    pub fn cursor_row(&mut self) -> String {
        self.pump();
        let (row, _) = self.parser.screen().cursor_position();
        self.rows()
            .get(usize::from(row))
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `check` holds for the screen, failing the test after `deadline`.
    #[track_caller]
    pub fn wait_until(
        &mut self,
        deadline: Duration,
        what: &str,
        check: impl Fn(&[String]) -> bool,
    ) {
        let until = Instant::now() + deadline;
        loop {
            let rows = self.rows();
            if check(&rows) {
                return;
            }
            assert!(
                Instant::now() < until,
                "timed out after {deadline:?} waiting for {what}; the screen:\n{}",
                rows.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until some row contains `text`.
    #[track_caller]
    pub fn wait_for(&mut self, deadline: Duration, text: &str) {
        self.wait_until(deadline, &format!("{text:?} on the screen"), |rows| {
            rows.iter().any(|r| r.contains(text))
        });
    }

    /// Types `keys` (as a terminal sends them).
    pub fn type_keys(&mut self, keys: &str) {
        self.session
            .write_all(keys.as_bytes())
            .and_then(|()| self.session.flush())
            .expect("typing into fastchat");
    }

    /// Waits for the program to exit; its exit code.
    #[track_caller]
    pub fn wait_exit(&mut self, deadline: Duration) -> i32 {
        if let Some(code) = self.exit {
            return code;
        }
        let until = Instant::now() + deadline;
        loop {
            self.pump();
            match self.session.get_process().status() {
                Ok(WaitStatus::Exited(_, code)) => {
                    self.exit = Some(code);
                    return code;
                }
                Ok(WaitStatus::Signaled(..)) => {
                    self.exit = Some(-1);
                    return -1;
                }
                _ => {}
            }
            assert!(
                Instant::now() < until,
                "fastchat did not exit within {deadline:?}; the screen:\n{}",
                self.rows().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self
                .session
                .get_process_mut()
                .kill(expectrl::process::unix::Signal::SIGKILL);
            let _ = self.session.get_process().wait();
        }
    }
}
