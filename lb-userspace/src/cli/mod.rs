//! The `lb` command line.

mod cache;
mod demo;
mod health;
mod maps;
mod rules;
mod run;
mod table;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

pub use run::start_kernel_signals;

#[derive(Debug, Parser)]
#[command(
    name = "lb",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("LB_COMMIT"), ")"),
    about = "eBPF/XDP-assisted HTTP load balancer"
)]
pub struct Cli {
    /// Log filter, in RUST_LOG syntax (RUST_LOG wins if set).
    #[arg(long, global = true, default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run lb with a config file.
    Run(run::RunArgs),
    /// Print the kernel's per-origin counters from the pinned maps of a running lb.
    Maps(maps::MapsArgs),
    /// Run the built-in demo: lb in front of two local origins, failing over and back.
    Demo(demo::DemoArgs),
    /// Print each origin's health from a running lb's admin API.
    Health(health::HealthArgs),
    /// The cache of a running lb: statistics and purges (through its admin API).
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Validate a config file (TOML or CloudFront JSON) and exit.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// The TLS flags `lb run` would get (certificate files are loaded and checked).
        #[command(flatten)]
        tls: run::TlsFlags,
        /// Also resolve every origin's name (with `[dns]` and --resolve, as `lb run`
        /// would); without it, checking needs no network.
        #[arg(long)]
        check_dns: bool,
    },
    /// The request rules of a config file.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Convert another product's configuration to lb's TOML.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Print the lb TOML equivalent to a CloudFront DistributionConfig JSON.
    Cloudfront {
        /// The JSON file (bare DistributionConfig, or get-distribution-config output).
        file: PathBuf,
    },
}

/// Entry point of the `lb` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run(_)) {
        // Before any thread exists (the log writer is the first): a SIGTERM during
        // start-up waits for the control plane's handlers. See control::os_signals.
        crate::control::hold_signals();
    }
    let _log_guard = init_tracing(&cli.log);
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Maps(args) => maps::maps(args),
        Command::Demo(args) => demo::demo(args),
        Command::Health(args) => health::health(args),
        Command::Cache(command) => cache::cache(command),
        Command::Rules(command) => rules::rules(command),
        Command::Check {
            config,
            tls,
            check_dns,
        } => check(&config, &tls.overrides(None, None), check_dns),
        Command::Import(ImportCommand::Cloudfront { file }) => import_cloudfront(&file),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "lb", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// aya warns at every load that the kernel rejected the object's BTF: bpf-linker 0.10
/// leaves aya-log's `MaybeUninit<u8>` union name unsanitized. aya then loads the program
/// without object BTF, which nothing in lb needs, so that one target is kept to errors
/// unless the user's filter says otherwise.
const QUIET_KNOWN_BTF_WARNING: &str = "aya::bpf=error";

fn check(
    path: &std::path::Path,
    overrides: &crate::config::Overrides,
    check_dns: bool,
) -> anyhow::Result<ExitCode> {
    match crate::config::Config::load(path, overrides) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            let c = &loaded.config;
            if let Err(e) = crate::tls::TlsMaterial::load(c) {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
            if check_dns {
                let mut failed = false;
                for (name, found) in crate::control::check_names(c) {
                    match found {
                        crate::control::Lookup::Found { ips, ttl } => {
                            let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
                            println!("{name}: {} (ttl {}s)", ips.join(", "), ttl.as_secs());
                        }
                        crate::control::Lookup::Failed(why) => {
                            eprintln!("error: {}: origin name: {why}", path.display());
                            failed = true;
                        }
                    }
                }
                if failed {
                    return Ok(ExitCode::from(2));
                }
            }
            println!(
                "{}: ok ({} origins, {} groups, {} behaviors)",
                path.display(),
                c.origins.len(),
                c.groups.len(),
                c.behaviors.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

fn import_cloudfront(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    match crate::config::Config::load(path, &crate::config::Overrides::default()) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            print!(
                "# Imported from {} by `lb import cloudfront`.\n{}",
                path.display(),
                loaded.config.to_toml()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

/// lb's own log goes to stderr through a writer thread (tracing-appender, lossy): a
/// worker that logs never waits for a full pipe or a slow terminal. The guard flushes
/// what is queued when `main` returns.
fn init_tracing(default_filter: &str) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| {
            tracing_subscriber::EnvFilter::try_new(format!(
                "{default_filter},{QUIET_KNOWN_BTF_WARNING}"
            ))
        })
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("lb-log")
        .finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    guard
}
