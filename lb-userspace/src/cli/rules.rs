//! `lb rules explain`: which request rule a request would match and why the ones before
//! it did not, from the config file alone (no running lb needed).

use std::{net::IpAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use crate::rules::{DirectAnswer, RuleRequest};

#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Show which rule a request matches and, for each rule before it, the condition
    /// that failed.
    Explain(ExplainArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    #[arg(long, short)]
    config: PathBuf,
    #[arg(long, default_value = "GET")]
    method: String,
    /// The request target: path and query.
    #[arg(long, default_value = "/")]
    path: String,
    /// The Host header.
    #[arg(long)]
    host: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The client's address (the TCP peer; a trusted proxy's forwarded header, given
    /// with --header, is followed as lb would).
    #[arg(long, default_value = "127.0.0.1")]
    client: IpAddr,
}

pub fn rules(command: RulesCommand) -> anyhow::Result<ExitCode> {
    let RulesCommand::Explain(args) = command;
    let loaded = match crate::config::Config::load(&args.config, &Default::default()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let fields: Vec<(String, Vec<u8>)> = args
        .headers
        .iter()
        .map(|h| {
            let (n, v) = h
                .split_once(':')
                .with_context(|| format!("--header `{h}`: expected `Name: value`"))?;
            Ok((n.trim().to_owned(), v.trim().as_bytes().to_vec()))
        })
        .collect::<anyhow::Result<_>>()?;
    let set = &loaded.config.rules;
    let c = &loaded.config;
    if set.is_empty()
        && c.default_behavior.rules.is_empty()
        && c.behaviors.iter().all(|b| b.rules.is_empty())
    {
        println!("no rules in {}", args.config.display());
        return Ok(ExitCode::SUCCESS);
    }
    let request = RuleRequest {
        method: &args.method,
        host: args.host.as_deref().map(str::as_bytes),
        target: &args.path,
        fields: fields.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        client: loaded.config.client_address.resolve(
            args.client,
            fields.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        ),
        geo: &loaded.config.geo,
    };
    let mut matched = explain(set, &request, &args, "global");
    if !matched {
        let path = args.path.split('?').next().unwrap_or("/");
        let (behavior, _) = loaded.config.behavior_and_scope(path);
        if !behavior.rules.is_empty() {
            let which = behavior
                .path_pattern
                .as_ref()
                .map_or("the default behavior".to_owned(), |p| {
                    format!("behavior {}", p.as_str())
                });
            matched = explain(&behavior.rules, &request, &args, &which);
        }
    }
    if !matched {
        println!("no rule matches: the behaviors decide as configured");
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints `set`'s verdicts for `request`; whether a rule matched.
fn explain<'a, H: Iterator<Item = (&'a str, &'a [u8])> + Clone>(
    set: &crate::rules::RuleSet,
    request: &RuleRequest<'a, H>,
    args: &ExplainArgs,
    scope: &str,
) -> bool {
    let mut matched = false;
    for e in set.explain(request) {
        match e.failed {
            Some(c) => println!("{scope} rule {:?}: no match: {}", e.rule.name, c.describe()),
            None => {
                matched = true;
                println!("{scope} rule {:?}: MATCH", e.rule.name);
                for c in &e.rule.conditions {
                    println!("  holds: {}", c.describe());
                }
                let a = &e.rule.actions;
                if let Some((_, id)) = &a.route {
                    println!("  route to {id}");
                }
                if let Some(rw) = &a.rewrite_path {
                    println!("  origin receives {}", rw.apply(&args.path));
                }
                if let Some(h) = &a.set_host {
                    println!("  Host: {h}");
                }
                for (n, v) in &a.set_request_headers {
                    println!("  set {n}: {v}");
                }
                for (n, v) in &a.add_request_headers {
                    println!("  add {n}: {v}");
                }
                for n in &a.remove_request_headers {
                    println!("  remove {n}");
                }
                match &a.answer {
                    Some(DirectAnswer::Redirect { status, location }) => {
                        let host = args.host.as_deref().unwrap_or("").as_bytes();
                        let loc = DirectAnswer::location(location, host, &args.path);
                        println!(
                            "  answer {status} Location: {}",
                            String::from_utf8_lossy(&loc)
                        );
                    }
                    Some(DirectAnswer::Respond { status, body, .. }) => {
                        println!("  answer {status} ({} bytes)", body.len());
                    }
                    None => {}
                }
            }
        }
    }
    matched
}
