//! The chat's line editor on a terminal: rustyline on a thread of its own (it blocks),
//! with its external printer as the screen, so that a line that arrives is printed
//! above the prompt and the line being typed is redrawn intact. Arrow keys, history and
//! word editing are rustyline's.

use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;

use rustyline::error::ReadlineError;
use rustyline::ExternalPrinter as _;
use tokio::sync::mpsc;

use crate::error::{CliError, Result};
use crate::output;

/// What the person did at the prompt.
pub enum Input {
    Line(String),
    /// Ctrl-D on an empty line, or Ctrl-C.
    Leave,
    Failed(String),
}

/// After each line, whether the editor should read another.
pub enum Next {
    More,
    Stop,
}

/// The terminal's settings as they were, put back however the chat ends.
struct Saved(libc::termios);

impl Saved {
    fn take() -> Option<Self> {
        // SAFETY: tcgetattr writes a termios for fd 0 into the zeroed struct.
        unsafe {
            let mut termios: libc::termios = std::mem::zeroed();
            (libc::tcgetattr(0, &mut termios) == 0).then_some(Saved(termios))
        }
    }

    fn restore(&self) {
        // SAFETY: puts back settings tcgetattr gave for the same fd.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.0);
        }
    }
}

/// Columns of the terminal on stdout (80 when it will not say).
fn columns() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize for fd 1.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(1, libc::TIOCGWINSZ, &mut size) == 0 && size.ws_col > 0 {
            usize::from(size.ws_col)
        } else {
            80
        }
    }
}

/// Erases the line just entered (the prompt and what was typed), which rustyline
/// leaves on the screen: the chat prints it back as `HH:MM you: …` once sent.
fn erase_entered(prompt: &str, line: &str) {
    use std::io::Write;
    let width = prompt.chars().count() + line.chars().count();
    let rows = width / columns().max(1) + 1;
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}\r", "\x1b[1A\x1b[2K".repeat(rows));
    let _ = out.flush();
}

/// The editor, running on its thread.
pub struct Terminal {
    pub inputs: mpsc::Receiver<Input>,
    next: std_mpsc::Sender<Next>,
    thread: Option<std::thread::JoinHandle<()>>,
    saved: Option<Saved>,
}

impl Terminal {
    /// Starts the editor with `prompt`; from now on every line and notice is printed
    /// above the prompt.
    pub fn start(prompt: String) -> Result<Self> {
        let saved = Saved::take();
        let config = rustyline::Config::builder()
            .auto_add_history(true)
            .max_history_size(500)
            .map_err(|e| CliError::local("setting up the line editor", e))?
            .build();
        let mut editor = rustyline::DefaultEditor::with_config(config)
            .map_err(|e| CliError::local("setting up the line editor", e))?;
        let printer = editor
            .create_external_printer()
            .map_err(|e| CliError::local("setting up the chat screen", e))?;
        let printer = Mutex::new(printer);
        output::to_screen(Some(Box::new(move |text: String| {
            let mut printer = printer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = printer.print(text);
        })));
        let (input_tx, inputs) = mpsc::channel(16);
        let (next, next_rx) = std_mpsc::channel();
        let thread = std::thread::spawn(move || loop {
            let input = match editor.readline(&prompt) {
                Ok(line) => {
                    erase_entered(&prompt, &line);
                    Input::Line(line)
                }
                Err(ReadlineError::Eof | ReadlineError::Interrupted) => Input::Leave,
                Err(e) => Input::Failed(e.to_string()),
            };
            let last = !matches!(input, Input::Line(_));
            if input_tx.blocking_send(input).is_err() || last {
                break;
            }
            match next_rx.recv() {
                Ok(Next::More) => continue,
                Ok(Next::Stop) | Err(_) => break,
            }
        });
        Ok(Terminal {
            inputs,
            next,
            thread: Some(thread),
            saved,
        })
    }

    /// Lets the editor read the next line.
    pub fn more(&self) {
        let _ = self.next.send(Next::More);
    }

    /// Ends the editor and gives the terminal back as it was.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        output::to_screen(None);
        let _ = self.next.send(Next::Stop);
        if let Some(thread) = self.thread.take() {
            if thread.is_finished() {
                let _ = thread.join();
            } else if let Some(saved) = &self.saved {
                // Still waiting in readline (the chat ended from the other side): the
                // terminal is put back by hand, and the thread dies with the process.
                saved.restore();
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "\x1b[?2004l\r\n");
                let _ = out.flush();
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.finish();
    }
}
