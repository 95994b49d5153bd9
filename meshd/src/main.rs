//! `meshd`: the Planetary LAN daemon. See the library crate doc for how it is built.

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use meshd::config::{Config, DEFAULT_CONFIG_TOML};
use std::io::Write;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

/// Planetary LAN daemon: links this machine into the overlay and routes it through a TUN device.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Without one, embedded defaults apply; MESHD_* variables
    /// override either.
    #[arg(long, short, global = true, env = "MESHD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (the default).
    Run,
    /// Write a commented default configuration to FILE (or print it).
    InitConfig {
        /// Where to write; never overwrites an existing file.
        file: Option<PathBuf>,
    },
    /// Check the configuration (and the policy file it names) and print it as the daemon
    /// would use it.
    CheckConfig,
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; `meshd man | man -l -`).
    Man,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("meshd: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Run) {
        Command::InitConfig { file: None } => {
            print!("{DEFAULT_CONFIG_TOML}");
            Ok(())
        }
        Command::InitConfig { file: Some(f) } => {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&f)
                .with_context(|| {
                    format!("cannot create {} (it is never overwritten)", f.display())
                })?;
            out.write_all(DEFAULT_CONFIG_TOML.as_bytes())?;
            eprintln!("wrote {}", f.display());
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "meshd", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            std::io::stdout().write_all(&page)?;
            Ok(())
        }
        Command::CheckConfig => {
            let cfg = Config::load(cli.config.as_deref())?;
            // The policy file is checked too: a start would fail on it.
            meshd::daemon::policy::PolicyFile::open(cfg.policy_file.clone())?;
            print!("{}", toml::to_string(&cfg)?);
            Ok(())
        }
        Command::Run => {
            let cfg = Config::load(cli.config.as_deref())?;
            let filter = EnvFilter::try_from_default_env()
                .or_else(|_| EnvFilter::try_new(&cfg.log_level))
                .with_context(|| format!("log_level: {:?} is not a valid filter", cfg.log_level))?;
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .init();
            for v in &cfg.ignored_env {
                tracing::warn!(
                    "ignoring {v}: it names no configuration key (see `meshd init-config`)"
                );
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(meshd::daemon::run(cfg, shutdown_signal()))
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    // Tells systemd the stop has begun (no NOTIFY_SOCKET: nothing).
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}
