//! Received images, saved once each: `<home>/images.json` maps an image's SHA-256 (from
//! the signed message) to where it was saved, so that showing the message again (in
//! `history`, `chat` or another `recv`) prints where it already is instead of saving
//! another copy. Images this user sent are never downloaded: the index remembers the
//! file they were sent from. Saved files are readable by their owner only (0600), in a
//! folder this client makes 0700.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use fastchat_protocol::envelope::ImageRef;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CliError, Result};
use crate::home::Home;

const INDEX: &str = "images.json";

#[derive(Default, Serialize, Deserialize)]
struct Index {
    /// SHA-256 (hex) → where the received image was saved.
    #[serde(default)]
    saved: BTreeMap<String, PathBuf>,
    /// SHA-256 (hex) → the file this user sent it from.
    #[serde(default)]
    sent: BTreeMap<String, PathBuf>,
}

/// Where an image of a message is on this machine.
pub enum Found {
    /// Saved just now.
    Saved(PathBuf),
    /// Saved before, and still there unchanged.
    AlreadySaved(PathBuf),
    /// Sent by this user from this file, still there unchanged.
    SentFrom(PathBuf),
    /// Sent by this user; the file is no longer where it was sent from.
    SentElsewhere,
}

impl Found {
    pub fn path(&self) -> Option<&Path> {
        match self {
            Found::Saved(p) | Found::AlreadySaved(p) | Found::SentFrom(p) => Some(p),
            Found::SentElsewhere => None,
        }
    }
}

pub struct Downloads<'a> {
    home: &'a Home,
    dir: &'a Path,
    index: Option<Index>,
}

/// The file at `path` holds exactly the image (`size` bytes hashing to `sha256`).
fn holds(path: &Path, size: u64, sha256: &str) -> bool {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() == size => {}
        _ => return false,
    }
    fs::read(path).is_ok_and(|bytes| hex::encode(Sha256::digest(&bytes)) == sha256)
}

impl<'a> Downloads<'a> {
    pub fn new(home: &'a Home, dir: &'a Path) -> Self {
        Self {
            home,
            dir,
            index: None,
        }
    }

    fn index(&mut self) -> Result<&mut Index> {
        if self.index.is_none() {
            let index = self.home.read_json(Path::new(INDEX))?.unwrap_or_default();
            self.index = Some(index);
        }
        Ok(self.index.get_or_insert_with(Index::default))
    }

    fn save_index(&mut self) -> Result<()> {
        let index = self.index()?;
        let json = serde_json::to_value(&*index)
            .map_err(|e| CliError::local("encoding the image index", e))?;
        self.home.write_json(Path::new(INDEX), &json)
    }

    /// The image of a received message, if it was saved before and is still there.
    pub fn already_saved(&mut self, image: &ImageRef) -> Result<Option<PathBuf>> {
        let path = self.index()?.saved.get(&image.sha256).cloned();
        Ok(path.filter(|p| holds(p, image.size, &image.sha256)))
    }

    /// An image this user sent: where it was sent from, if it is still there.
    pub fn sent(&mut self, image: &ImageRef) -> Result<Found> {
        let path = self.index()?.sent.get(&image.sha256).cloned();
        Ok(match path.filter(|p| holds(p, image.size, &image.sha256)) {
            Some(path) => Found::SentFrom(path),
            None => Found::SentElsewhere,
        })
    }

    /// Remembers the file an image was sent from.
    pub fn record_sent(&mut self, sha256: &str, from: &Path) -> Result<()> {
        let from = fs::canonicalize(from).unwrap_or_else(|_| from.to_owned());
        self.index()?.sent.insert(sha256.to_owned(), from);
        self.save_index()
    }

    /// Saves a received image (checked already) under a name of its own.
    pub fn save(&mut self, image: &ImageRef, bytes: &[u8]) -> Result<PathBuf> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.dir)
            .map_err(|e| CliError::local(&format!("creating {}", self.dir.display()), e))?;
        let mut n = 0;
        let path = loop {
            let candidate = candidate(self.dir, &image.name, n);
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&candidate);
            match opened {
                Ok(mut file) => {
                    file.write_all(bytes)
                        .and_then(|()| file.sync_all())
                        .map_err(|e| {
                            CliError::local(&format!("saving {}", candidate.display()), e)
                        })?;
                    break candidate;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 10_000 => n += 1,
                Err(e) => {
                    return Err(CliError::local(
                        &format!("saving {}", candidate.display()),
                        e,
                    ))
                }
            }
        };
        self.index()?
            .saved
            .insert(image.sha256.clone(), path.clone());
        self.save_index()?;
        Ok(path)
    }
}

/// A file name for a received image: the sender's name stripped of any path and of
/// anything a terminal or shell would take for more, with `-n` before the extension for
/// the n-th name taken.
fn candidate(dir: &Path, name: &str, n: usize) -> PathBuf {
    let base: String = Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
        .collect();
    let base = if base.is_empty() || base.starts_with('.') {
        format!("image{base}")
    } else {
        base
    };
    if n == 0 {
        return dir.join(base);
    }
    match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => dir.join(format!("{stem}-{n}.{ext}")),
        _ => dir.join(format!("{base}-{n}")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::candidate;

    #[test]
    fn names_stay_in_the_folder() {
        let dir = Path::new("/d");
        assert_eq!(
            candidate(dir, "../../etc/passwd", 0),
            Path::new("/d/passwd")
        );
        assert_eq!(candidate(dir, ".bashrc", 0), Path::new("/d/image.bashrc"));
        assert_eq!(candidate(dir, "cat.png", 2), Path::new("/d/cat-2.png"));
        assert_eq!(candidate(dir, "a\u{1b}b", 0), Path::new("/d/ab"));
    }
}
