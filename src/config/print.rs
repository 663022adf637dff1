//! `--print-config`: the effective settings as a TOML file that `--config`
//! reads back to the same settings. Keys are the long flag names; each key
//! carries its help line as a comment, unset options appear commented out.
//! Values come from clap's matches (so precedence is clap's and
//! `cli::matches`'s: command line, environment, file, defaults), written as
//! typed. Flags whose empty value means "the built-in list" print that list.
//! Secrets (a flag named like a password or token, or a URL with a password
//! in it) are never printed: their line is commented out with the secret
//! replaced, so the file still parses and says where the value is missing.

use std::fmt::Write as _;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

use super::AWS_PATTERNS;
use super::redact::{self, REDACTED};

/// Flags that are not settings: they act and exit, or name the file itself.
const NOT_SETTINGS: [&str; 4] = ["config", "print-config", "version", "help"];

/// Flags whose empty list means the AWS domains.
const AWS_DEFAULT_LISTS: [&str; 2] = ["allow-host", "https-upgrade"];

/// Words that make a flag's whole value secret.
const SECRET_WORDS: [&str; 4] = ["password", "secret", "token", "credential"];

/// The TOML text for `matches` of `cmd`.
pub(super) fn toml(cmd: &Command, matches: &ArgMatches) -> String {
    let mut out = String::from(
        "# ccnproxy effective configuration (ccnproxy --print-config).\n\
         # Read it back with `ccnproxy --config FILE`; flags and CCNPROXY_*\n\
         # variables still win over it. Secrets are not printed.\n",
    );
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if NOT_SETTINGS.contains(&long) {
            continue;
        }
        let explicit = matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if arg.is_hide_set() && !explicit {
            continue;
        }
        if let Some(help) = arg.get_help() {
            let _ = writeln!(out, "\n# {}", help.to_string().replace('\n', " "));
        } else {
            out.push('\n');
        }
        out.push_str(&entry(arg, long, matches));
        out.push('\n');
    }
    out
}

/// One `key = value` line (commented out when unset or secret).
fn entry(arg: &Arg, long: &str, matches: &ArgMatches) -> String {
    let id = arg.get_id().as_str();
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return format!("{long} = {}", matches.get_flag(id));
    }
    let raw: Vec<String> = matches
        .get_raw(id)
        .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let secret_name = SECRET_WORDS.iter().any(|w| long.contains(w));
    let mut secret = false;
    let mut shown: Vec<String> = raw
        .iter()
        .map(|v| {
            if secret_name && !v.is_empty() {
                secret = true;
                REDACTED.to_owned()
            } else if let Some(masked) = redact::url_password(v) {
                secret = true;
                masked
            } else {
                v.clone()
            }
        })
        .collect();
    let list = matches!(arg.get_action(), ArgAction::Append);
    if list && shown.is_empty() && AWS_DEFAULT_LISTS.contains(&long) {
        shown = AWS_PATTERNS.iter().map(|p| p.to_string()).collect();
    }
    let value = if list {
        let items: Vec<String> = shown.iter().map(|v| value(v)).collect();
        format!("[{}]", items.join(", "))
    } else {
        match shown.first() {
            Some(v) => value(v),
            None => return format!("# {long} = (not set)"),
        }
    };
    if secret {
        format!("# {long} = {value}  (secret: set it through the environment)")
    } else {
        format!("{long} = {value}")
    }
}

/// A TOML value for a flag's text: an integer when it reads back as the same
/// text, a string otherwise.
fn value(text: &str) -> String {
    match text.parse::<i64>() {
        Ok(i) if i.to_string() == text => text.to_owned(),
        _ => toml::Value::String(text.to_owned()).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::config::cli;

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("ccnproxy")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// `Config` has no `PartialEq`; its `Debug` text names every field.
    fn config_text(args: Vec<OsString>) -> String {
        let c = cli::parse_args(args)
            .and_then(cli::Args::into_config)
            .expect("valid");
        format!("{c:?}")
    }

    #[test]
    fn printed_config_reads_back_to_the_same_settings() {
        let args = [
            "-p",
            "4100",
            "-c",
            "7",
            "--allow-host",
            "*.example.com,*.test",
            "--allow-cidr",
            "127.0.0.0/8",
            "--resolve",
            "s3.amazonaws.com:443:127.0.0.1:8443",
            "--read-timeout",
            "45",
            "--pool-wait-timeout",
            "250ms",
            "--sign",
            "--rate-limit",
            "5/m",
            "--rate-burst",
            "2",
            "--access-log-format",
            "%h \"%r\" %>s",
            "--stsize",
            "500",
            "--client-key",
            "header:x-team",
        ];
        let printed = cli::effective_toml(argv(&args)).expect("prints");
        assert!(printed.contains("port = 4100\n"), "{printed}");
        assert!(printed.contains("sign = true\n"), "{printed}");
        assert!(printed.contains("rate-limit = \"5/m\"\n"), "{printed}");
        assert!(
            printed.contains("https-upgrade = [\"*.amazonaws.com\""),
            "the built-in list is shown: {printed}"
        );
        assert!(printed.contains("# upstream = (not set)"), "{printed}");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("printed.toml");
        std::fs::write(&path, &printed).expect("write");
        let from_file = argv(&["--config", path.to_str().expect("utf8")]);
        assert_eq!(
            config_text(from_file.clone()),
            config_text(argv(&args)),
            "the file alone gives the same settings"
        );
        let reprinted = cli::effective_toml(from_file).expect("prints");
        assert_eq!(reprinted, printed, "printing is a fixed point");
    }

    #[test]
    fn defaults_round_trip() {
        let printed = cli::effective_toml(argv(&[])).expect("prints");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("defaults.toml");
        std::fs::write(&path, &printed).expect("write");
        let from_file = argv(&["--config", path.to_str().expect("utf8")]);
        assert_eq!(config_text(from_file), config_text(argv(&[])));
        for key in ["listen", "port", "access-log-dir", "stsize", "spfactor"] {
            assert!(
                printed.lines().any(|l| l.starts_with(&format!("{key} = "))),
                "{key} missing from {printed}"
            );
        }
    }

    #[test]
    fn url_passwords_are_masked() {
        let cases = [
            (
                "redis://:hunter2@10.0.0.5:6379/0",
                Some("redis://:REDACTED@10.0.0.5:6379/0"),
            ),
            ("redis://app:pw@host", Some("redis://app:REDACTED@host")),
            ("https://user@host/path", None),
            ("https://host:443/a:b@c", None),
            ("plain", None),
        ];
        for (text, want) in cases {
            assert_eq!(redact::url_password(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn secret_values_are_never_printed() {
        let cmd = Command::new("t")
            .arg(Arg::new("store").long("store-url"))
            .arg(Arg::new("auth").long("auth-token"));
        let m = cmd
            .clone()
            .try_get_matches_from([
                "t",
                "--store-url",
                "redis://:s3cr3t@h:1",
                "--auth-token",
                "tok123",
            ])
            .expect("parses");
        let text = toml(&cmd, &m);
        assert!(
            !text.contains("s3cr3t") && !text.contains("tok123"),
            "{text}"
        );
        assert!(
            text.contains("# store-url = \"redis://:REDACTED@h:1\""),
            "{text}"
        );
        assert!(text.contains("# auth-token = \"REDACTED\""), "{text}");
        toml::from_str::<toml::Table>(&text).expect("still TOML");
    }
}
