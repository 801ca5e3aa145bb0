//! Everything printed to stdout goes through here: text for people, JSON Lines with
//! `--json`. A closed pipe (`fastchat recv | head`) ends the program quietly.

use std::io::Write;

use serde_json::Value;

/// Writes one line to stdout; exits quietly if the reader went away.
pub fn line(text: &str) {
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

pub fn json(value: &Value) {
    line(&value.to_string());
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
