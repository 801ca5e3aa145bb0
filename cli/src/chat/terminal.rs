//! The chat's line editor on a terminal: reedline on a thread of its own (it blocks),
//! with its external printer as the screen, so that a line that arrives is printed
//! above the prompt and the line being typed is redrawn intact. Arrow keys, history and
//! word editing (emacs keys: Ctrl-W, Alt-B, ...) are reedline's.

use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use reedline::{ExternalPrinter, Prompt, PromptEditMode, PromptHistorySearch, Reedline, Signal};
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

/// Erases the line just entered (the prompt and what was typed), which the editor
/// leaves on the screen: the chat prints it back as `HH:MM you: …` once sent.
fn erase_entered(prompt: &str, line: &str) {
    let width = prompt.chars().count() + line.chars().count();
    let rows = width / columns().max(1) + 1;
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}\r", "\x1b[1A\x1b[2K".repeat(rows));
    let _ = out.flush();
}

/// The prompt: `> `, nothing else.
struct ChatPrompt;

impl Prompt for ChatPrompt {
    fn render_prompt_left(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn render_prompt_right(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn render_prompt_indicator(&self, _mode: PromptEditMode) -> Cow<'_, str> {
        Cow::Borrowed(PROMPT)
    }
    fn render_prompt_multiline_indicator(&self) -> Cow<'_, str> {
        Cow::Borrowed(": ")
    }
    fn render_prompt_history_search_indicator(&self, search: PromptHistorySearch) -> Cow<'_, str> {
        Cow::Owned(format!("(search: {}) ", search.term))
    }
}

pub const PROMPT: &str = "> ";

/// Lines waiting for the screen: enough that printing never waits on the editor.
const SCREEN_BACKLOG: usize = 4096;

/// The editor, running on its thread.
pub struct Terminal {
    pub inputs: mpsc::Receiver<Input>,
    next: std_mpsc::Sender<Next>,
    thread: Option<std::thread::JoinHandle<()>>,
    saved: Option<Saved>,
}

impl Terminal {
    /// Starts the editor; from now on every line and notice is printed above the prompt.
    pub fn start() -> Result<Self> {
        let saved = Saved::take();
        let printer = ExternalPrinter::<String>::new(SCREEN_BACKLOG);
        let sender = printer.sender();
        let history = Box::new(
            reedline::FileBackedHistory::new(500)
                .map_err(|e| CliError::local("setting up the line editor", e))?,
        );
        let mut editor = Reedline::create()
            .with_history(history)
            .with_external_printer(printer);
        // While the editor reads a line, lines go above its prompt; between two lines
        // (no prompt on the screen) they are simply written.
        let editing = Arc::new(AtomicBool::new(false));
        let reading = Arc::clone(&editing);
        output::to_screen(Some(Box::new(move |text: String| {
            if editing.load(Ordering::SeqCst) {
                // Never waits: a screen that far behind loses a line rather than the chat.
                let _ = sender.try_send(text);
            } else {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
        })));
        let (input_tx, inputs) = mpsc::channel(16);
        let (next, next_rx) = std_mpsc::channel();
        let thread = std::thread::spawn(move || loop {
            reading.store(true, Ordering::SeqCst);
            let read = editor.read_line(&ChatPrompt);
            reading.store(false, Ordering::SeqCst);
            let input = match read {
                Ok(Signal::Success(line)) => {
                    erase_entered(PROMPT, &line);
                    Input::Line(line)
                }
                Ok(Signal::CtrlD | Signal::CtrlC) => Input::Leave,
                Ok(_) => continue,
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
        let Some(thread) = self.thread.take() else {
            return;
        };
        if thread.is_finished() {
            let _ = thread.join();
        } else if let Some(saved) = &self.saved {
            // Still waiting for a line (the chat ended from the other side): the
            // terminal is put back by hand, and the thread dies with the process.
            saved.restore();
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\x1b[?2004l\r\n");
            let _ = out.flush();
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.finish();
    }
}
