//! Everything printed to stdout goes through here: text for people, JSON Lines with
//! `--json` ([`json::Line`]). A closed pipe (`fastchat recv | head`) ends the program
//! quietly.

pub mod json;
pub mod size;
pub mod time;

use std::io::{IsTerminal, Write};

/// Where lines go while a live chat screen owns the terminal: printed above its prompt.
type Screen = Box<dyn Fn(String) + Send + Sync>;

static SCREEN: std::sync::Mutex<Option<Screen>> = std::sync::Mutex::new(None);

/// Sends every line and notice to `screen` from now on (`None`: back to stdout and
/// stderr).
pub fn to_screen(screen: Option<Screen>) {
    *SCREEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = screen;
}

/// Gives `text` to the chat screen if there is one; false when there is none.
fn on_screen(text: &str) -> bool {
    let screen = SCREEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match screen.as_ref() {
        Some(print) => {
            print(text.to_owned());
            true
        }
        None => false,
    }
}

/// A line on standard error (or the chat screen): warnings and notices.
pub fn notice(text: &str) {
    if !on_screen(text) {
        eprintln!("{text}");
    }
}

/// [`notice`] with `format!` arguments.
#[macro_export]
macro_rules! notice {
    ($($arg:tt)*) => {
        $crate::output::notice(&format!($($arg)*))
    };
}

/// Writes one line to stdout (or the chat screen); exits quietly if the reader went
/// away.
pub fn line(text: &str) {
    if on_screen(text) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let result = writeln!(out, "{text}").and_then(|()| out.flush());
    if let Err(e) = result {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("fastchat: writing output: {e}");
        std::process::exit(1);
    }
}

/// Whether words meant for a person (hints, "No new messages.") belong on stdout: a
/// terminal, and not `--json`.
pub fn for_a_person(json: bool) -> bool {
    !json && std::io::stdout().is_terminal()
}

/// Whether notices on standard error are for a person at a terminal.
pub fn stderr_for_a_person(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// Text from other people, made safe for a terminal: control characters (which could
/// move the cursor or rewrite the screen) become U+FFFD, except newline and tab.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if is_dangerous(c) && c != '\n' && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// Control characters, and the format characters that reorder text (bidi overrides)
/// or hide it: none may reach a terminal from another person or a server.
fn is_dangerous(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// [`sanitize`] for text that must stay on one line: a newline too becomes U+FFFD.
pub fn sanitize_line(text: &str) -> String {
    sanitize(text).replace(['\n', '\t'], "\u{FFFD}")
}

/// A message body for the terminal: sanitized, and every line after the first marked as
/// a continuation, so that no line of a message can pass for a line of the display.
pub fn message_body(text: &str) -> String {
    sanitize(text).replace('\n', "\n  | ")
}

#[cfg(test)]
mod tests {
    use super::{message_body, sanitize, sanitize_line};

    #[test]
    fn escape_sequences_are_defused() {
        assert_eq!(
            sanitize("hi\u{1b}[2Jthere\n\tok"),
            "hi\u{FFFD}[2Jthere\n\tok"
        );
        assert_eq!(sanitize_line("a\nb\u{202E}c"), "a\u{FFFD}b\u{FFFD}c");
    }

    #[test]
    fn a_message_cannot_print_a_line_of_its_own() {
        assert_eq!(
            message_body("see you\n12:00 bob: I agree"),
            "see you\n  | 12:00 bob: I agree"
        );
    }
}
