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
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn escape_sequences_are_defused() {
        assert_eq!(
            sanitize("hi\u{1b}[2Jthere\n\tok"),
            "hi\u{FFFD}[2Jthere\n\tok"
        );
    }
}
