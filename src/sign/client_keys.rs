//! `--sign-client-credentials FILE`: the access keys clients sign with, so
//! the proxy can check a client's own SigV4 signature before it signs with
//! its role. One key a line, `ACCESS_KEY_ID SECRET [NAME]`; blank lines and
//! lines starting with `#` are skipped. Read once at start, bounded in size
//! and entries; a bad line is named by its number, never by its secret.

use std::collections::HashMap;
use std::path::Path;

/// Largest credentials file read.
pub(super) const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most keys in the file.
pub(super) const MAX_KEYS: usize = 10_000;
/// Longest access key id, secret or name.
const MAX_FIELD_BYTES: usize = 128;

/// One client's secret and name.
#[derive(Clone)]
pub(super) struct ClientKey {
    pub(super) secret: String,
    pub(super) name: Option<String>,
}

/// The keys by access key id.
#[derive(Clone, Default)]
pub(super) struct ClientKeys {
    keys: HashMap<String, ClientKey>,
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        write!(f, "ClientKeys({} keys)", self.keys.len())
    }
}

impl ClientKeys {
    /// Reads `path`; the error is one line naming the file and what is wrong.
    pub(super) fn load(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let size = std::fs::metadata(path)
            .map_err(|e| format!("--sign-client-credentials {shown}: {e}"))?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(format!(
                "--sign-client-credentials {shown}: larger than {MAX_FILE_BYTES} bytes"
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--sign-client-credentials {shown}: {e}"))?;
        Self::parse(&text).map_err(|e| format!("--sign-client-credentials {shown}: {e}"))
    }

    /// Parses the file's text.
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let mut keys = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let number = n + 1;
            let mut fields = line.split_whitespace();
            let (Some(id), Some(secret)) = (fields.next(), fields.next()) else {
                return Err(format!("line {number}: want ACCESS_KEY_ID SECRET [NAME]"));
            };
            let name: Vec<&str> = fields.collect();
            let name = (!name.is_empty()).then(|| name.join(" "));
            let plain_id =
                id.len() <= MAX_FIELD_BYTES && id.bytes().all(|b| b.is_ascii_alphanumeric());
            if !plain_id {
                return Err(format!(
                    "line {number}: the access key id must be letters and digits, at most {MAX_FIELD_BYTES}"
                ));
            }
            if secret.len() > MAX_FIELD_BYTES
                || name.as_ref().is_some_and(|n| n.len() > MAX_FIELD_BYTES)
            {
                return Err(format!(
                    "line {number}: secret or name longer than {MAX_FIELD_BYTES} bytes"
                ));
            }
            if keys.len() == MAX_KEYS {
                return Err(format!("more than {MAX_KEYS} keys"));
            }
            let entry = ClientKey {
                secret: secret.to_owned(),
                name,
            };
            if keys.insert(id.to_owned(), entry).is_some() {
                return Err(format!("line {number}: access key id {id} given twice"));
            }
        }
        if keys.is_empty() {
            return Err("no keys (want ACCESS_KEY_ID SECRET [NAME] lines)".to_owned());
        }
        Ok(ClientKeys { keys })
    }

    /// The key of `access_key_id`.
    pub(super) fn get(&self, access_key_id: &str) -> Option<&ClientKey> {
        self.keys.get(access_key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_names() {
        let keys = ClientKeys::parse(
            "# team keys\n\nAKIDTEAMA secretA team a\n  AKIDTEAMB secret/B+x  \n",
        )
        .unwrap();
        let a = keys.get("AKIDTEAMA").unwrap();
        assert_eq!(
            (a.secret.as_str(), a.name.as_deref()),
            ("secretA", Some("team a"))
        );
        let b = keys.get("AKIDTEAMB").unwrap();
        assert_eq!((b.secret.as_str(), b.name.as_deref()), ("secret/B+x", None));
        assert!(keys.get("AKIDOTHER").is_none());
        assert_eq!(format!("{keys:?}"), "ClientKeys(2 keys)");
    }

    #[test]
    fn bad_files_name_the_line_never_the_secret() {
        for (text, want) in [
            ("AKIDONLY\n", "line 1"),
            ("# c\nAK-ID s3cr3t\n", "line 2"),
            ("A s1\nA s2\n", "line 2"),
            ("", "no keys"),
        ] {
            let err = ClientKeys::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains("s3cr3t") && !err.contains("s2"), "{err}");
        }
        let many: String = (0..=MAX_KEYS).map(|i| format!("AK{i} s\n")).collect();
        assert!(ClientKeys::parse(&many).unwrap_err().contains("more than"));
    }
}
