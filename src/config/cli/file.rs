//! `--config FILE`: a flat TOML table whose keys are long flag names,
//! turned into arguments placed before the command line's, so that the
//! command line, then the environment, win over the file.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::CommandFactory;

use super::{Args, ConfigError};

/// clap's view of `argv` with the `--config` file merged below it.
pub(super) fn matches<I: IntoIterator<Item = OsString>>(
    argv: I,
) -> Result<clap::ArgMatches, ConfigError> {
    let argv: Vec<OsString> = argv.into_iter().collect();
    let first = Args::command().try_get_matches_from(&argv)?;
    let Some(path) = first.get_one::<PathBuf>("config").cloned() else {
        return Ok(first);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let extra = toml_to_args(&text).map_err(|reason| ConfigError::File {
        path: path.display().to_string(),
        reason,
    })?;
    // File values go first so that the command line (and, through clap, the
    // environment for flags the file does not name) wins.
    let mut merged = vec![argv.first().cloned().unwrap_or_else(|| "ccnproxy".into())];
    let cmd = Args::command();
    for (key, value) in extra {
        let env_set = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .and_then(|a| a.get_env())
            .is_some_and(|e| std::env::var_os(e).is_some());
        if !env_set {
            merged.push(
                match value {
                    Some(value) => format!("--{key}={value}"),
                    None => format!("--{key}"),
                }
                .into(),
            );
        }
    }
    merged.extend(argv.into_iter().skip(1));
    Ok(cmd.try_get_matches_from(merged)?)
}

/// `key = value` pairs of a flat TOML table as long-flag arguments; arrays
/// repeat the flag, booleans become a bare flag (value `None`), or nothing
/// when false.
fn toml_to_args(text: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let mut out = Vec::new();
    for (key, value) in table {
        let key = key.replace('_', "-");
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            _ => Err(format!("{key}: unsupported value")),
        };
        match &value {
            toml::Value::Array(items) => {
                for item in items {
                    out.push((key.clone(), Some(scalar(item)?)));
                }
            }
            toml::Value::Boolean(b) => {
                if *b {
                    out.push((key.clone(), None));
                }
            }
            v => out.push((key.clone(), Some(scalar(v)?))),
        }
    }
    Ok(out)
}
