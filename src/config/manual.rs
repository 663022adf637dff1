//! `ccnproxy completions SHELL` and `ccnproxy man`: shell completion scripts
//! (clap_complete) and the man page (clap_mangen), both generated from the
//! same clap definition as `--help`, so they cannot drift from the flags.
//! `make man` writes the page to `ccnproxy.1`.

use clap::CommandFactory;

use super::cli::Args;

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Args::command(), "ccnproxy", &mut out);
    out
}

/// The man page, in roff.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let cmd = Args::command()
        .version(env!("CARGO_PKG_VERSION"))
        .about("keep warm TLS connections to AWS endpoints so each API call costs one round trip");
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap_complete::Shell;

    const FLAGS: [&str; 5] = [
        "allow-host",
        "print-config",
        "stsize",
        "rate-limit",
        "keepalive-conns",
    ];

    #[test]
    fn each_shell_gets_a_script_naming_the_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(completions(shell)).expect("utf8");
            assert!(script.len() > 500, "{shell}: {} bytes", script.len());
            for flag in FLAGS {
                assert!(script.contains(flag), "{shell} script lacks {flag}");
            }
            assert!(script.contains("completions"), "{shell}: subcommands too");
        }
    }

    #[test]
    fn man_page_is_roff_naming_the_flags() {
        let page = String::from_utf8(man_page().expect("renders")).expect("utf8");
        assert!(
            page.starts_with(".ie") || page.contains(".TH ccnproxy"),
            "{page}"
        );
        assert!(page.contains(".SH OPTIONS"), "{page}");
        for flag in FLAGS {
            // roff escapes `-` as `\-`.
            assert!(
                page.contains(&format!("\\-\\-{}", flag.replace('-', "\\-"))),
                "man page lacks --{flag}"
            );
        }
    }
}
