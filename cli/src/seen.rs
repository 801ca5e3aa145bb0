//! What `recv` and `chat` have shown, by sender and client_id, so that a message the
//! server serves again (an old one under a new seq, say) is not shown twice: the
//! client_id is in the signed header, so it cannot be changed without breaking the
//! signature. `<home>/seen/<sender>` holds one client_id a line.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use fastchat_protocol::names::Username;

use crate::error::Result;
use crate::home::Home;

pub struct Seen<'a> {
    home: &'a Home,
    by_sender: HashMap<Username, HashSet<uuid::Uuid>>,
}

fn file(sender: &Username) -> PathBuf {
    PathBuf::from("seen").join(sender.as_str())
}

impl<'a> Seen<'a> {
    pub fn new(home: &'a Home) -> Self {
        Self {
            home,
            by_sender: HashMap::new(),
        }
    }

    fn of(&mut self, sender: &Username) -> Result<&mut HashSet<uuid::Uuid>> {
        if !self.by_sender.contains_key(sender) {
            let ids = self
                .home
                .read_lines(&file(sender))?
                .iter()
                .filter_map(|line| uuid::Uuid::parse_str(line.trim()).ok())
                .collect();
            self.by_sender.insert(sender.clone(), ids);
        }
        Ok(self.by_sender.entry(sender.clone()).or_default())
    }

    /// Whether this message was shown before.
    pub fn contains(&mut self, sender: &Username, client_id: uuid::Uuid) -> Result<bool> {
        Ok(self.of(sender)?.contains(&client_id))
    }

    /// Records that this message has been shown.
    pub fn record(&mut self, sender: &Username, client_id: uuid::Uuid) -> Result<()> {
        if self.of(sender)?.insert(client_id) {
            self.home
                .append_line(&file(sender), &client_id.hyphenated().to_string())?;
        }
        Ok(())
    }
}
