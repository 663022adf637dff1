//! The `ccnproxy` binary: flags → `Config`, diagnostics, runtime, `run`.
//! A startup error is one line on stderr and exit code 2.

#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;

use ccnproxy::config::cli::{self, ConfigError};

fn main() -> ExitCode {
    let args = match cli::parse_args(std::env::args_os()) {
        Ok(a) => a,
        Err(ConfigError::Clap(e)) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(ConfigError::Clap(e)) => {
            let text = e.render().to_string();
            eprintln!(
                "ccnproxy: {}",
                text.lines()
                    .next()
                    .unwrap_or("bad arguments")
                    .trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("ccnproxy: {e}");
            return ExitCode::from(2);
        }
    };
    if args.version {
        println!("ccnproxy {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Some(command) = &args.command {
        return print_generated(command);
    }
    if args.print_config {
        return print_config(args);
    }
    let (log_level, log_format) = (args.log_level.clone(), args.log_format.clone());
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ccnproxy: {e}");
            return ExitCode::from(2);
        }
    };
    // Before any diagnostics: the refusal is the only line printed.
    if let Err(e) = ccnproxy::sign::check_listener(&config.sign, config.listener.addr) {
        eprintln!("ccnproxy: {e}");
        return ExitCode::from(2);
    }
    init_tracing(&log_level, &log_format);
    raise_nofile();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ccnproxy: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let signals =
            ccnproxy::shutdown::Signals::install().map_err(ccnproxy::RunError::Signals)?;
        ccnproxy::run(config, signals.recv()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccnproxy: {}", ccnproxy::error::one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// `ccnproxy completions SHELL` and `ccnproxy man`.
fn print_generated(command: &cli::Command) -> ExitCode {
    use std::io::Write;
    let bytes = match command {
        cli::Command::Completions { shell } => Ok(ccnproxy::config::manual::completions(*shell)),
        cli::Command::Man => ccnproxy::config::manual::man_page(),
    };
    match bytes.and_then(|b| std::io::stdout().write_all(&b)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccnproxy: writing to standard output: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--print-config`: checks the settings as a start would, then prints them.
fn print_config(args: cli::Args) -> ExitCode {
    if let Err(e) = args.into_config() {
        eprintln!("ccnproxy: {e}");
        return ExitCode::from(2);
    }
    match cli::effective_toml(std::env::args_os()) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ccnproxy: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(level: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(format!("ccnproxy={level},warn")))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A shared proxy holds a socket per client and per upstream connection.
fn raise_nofile() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-files limit"),
        Err(err) => tracing::warn!(
            error = &err as &dyn std::error::Error,
            "could not raise the open-files limit"
        ),
    }
}
