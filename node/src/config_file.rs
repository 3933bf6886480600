//! `dura server start --config FILE`: a TOML file of flag values, for deployments that keep a
//! node's settings in a file (a ConfigMap) rather than in flags or environment variables.
//!
//! Keys are the flags' long names (`node-id`, or `node_id`); values are strings, integers or
//! booleans. Precedence is flag > environment variable > file > default: a key becomes a flag
//! only when neither the command line nor the flag's variable sets it, and clap then parses
//! everything as usual, so a file value is validated exactly like the same flag.

use std::ffi::OsString;

use anyhow::{Context, bail};
use clap::CommandFactory;

use crate::cli::Cli;

/// The process's command line, with `server start`'s config file folded in.
pub fn parse_cli() -> anyhow::Result<Cli> {
    let argv = crate::cli::as_test_server(std::env::args_os().collect());
    let argv = with_config_file(argv, |var| std::env::var(var).ok())?;
    Ok(<Cli as clap::Parser>::parse_from(argv))
}

/// `argv` plus a flag for each config-file key nothing stronger sets. `env` reads an
/// environment variable.
fn with_config_file(
    mut argv: Vec<OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<OsString>> {
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if words.get(1..3) != Some(&["server".to_string(), "start".to_string()][..]) {
        return Ok(argv);
    }
    let given = |long: &str| {
        words
            .iter()
            .any(|w| w == &format!("--{long}") || w.starts_with(&format!("--{long}=")))
    };
    let path = match words.iter().position(|w| w == "--config") {
        Some(at) => words.get(at + 1).cloned(),
        None => words
            .iter()
            .find_map(|w| w.strip_prefix("--config=").map(str::to_string))
            .or_else(|| env("DURA_CONFIG")),
    };
    let Some(path) = path else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{path} is not valid TOML"))?;
    let command = Cli::command();
    let start = command
        .find_subcommand("server")
        .and_then(|server| server.find_subcommand("start"))
        .context("the CLI has a `server start` command")?;
    for (key, value) in table {
        let id = key.replace('-', "_");
        let Some(arg) = start
            .get_arguments()
            .find(|a| a.get_id() == id.as_str() && a.get_long().is_some() && id != "config")
        else {
            bail!("{path}: {key:?} is not a flag of `dura server start`");
        };
        let long = arg.get_long().unwrap_or_default();
        let variable = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        if given(long) || variable.and_then(|v| env(&v)).is_some() {
            continue;
        }
        match value {
            toml::Value::Boolean(true) => argv.push(format!("--{long}").into()),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => argv.push(format!("--{long}={s}").into()),
            toml::Value::Integer(n) => argv.push(format!("--{long}={n}").into()),
            other => bail!(
                "{path}: {key} = {}: expected a string, an integer or a boolean",
                other.type_str()
            ),
        }
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, ServerCommand, StartArgs};

    fn start_args(argv: &[&str], file: &str, env: &[&str]) -> anyhow::Result<StartArgs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dura.toml");
        std::fs::write(&path, file).unwrap();
        let mut full: Vec<OsString> = ["dura", "server", "start", "--config"]
            .iter()
            .map(OsString::from)
            .collect();
        full.push(path.into_os_string());
        full.extend(argv.iter().map(OsString::from));
        let merged = with_config_file(full, |var| env.contains(&var).then(String::new))?;
        let cli = <Cli as clap::Parser>::try_parse_from(merged)?;
        match cli.command {
            Command::Server(ServerCommand::Start(args)) => Ok(args),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_file_fills_in_what_flags_and_variables_leave_out() {
        let file = r#"
            node-id = 2
            data_dir = "/var/lib/dura"
            peer-port = 7300
            shards = 8
            enable-fault-injection = true
        "#;
        let args = start_args(&["--shards", "4"], file, &["DURA_PEER_PORT"]).unwrap();
        assert_eq!(args.node_id, Some(2));
        assert_eq!(args.data_dir, std::path::PathBuf::from("/var/lib/dura"));
        assert_eq!(args.shards, 4, "a flag wins over the file");
        // The variable (not set in this process) would have been parsed by clap; the file's
        // value was not used.
        assert_eq!(args.peer_port, 7234, "a variable wins over the file");
        assert!(args.enable_fault_injection);
        assert_eq!(args.port, 7233, "the default where nothing sets it");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        // The message names what is wrong, so an operator can fix the file.
        let refusal = |file: &str| format!("{:#}", start_args(&[], file, &[]).unwrap_err());
        let unknown = refusal("data-dir = \"d\"\nnode-idd = 2");
        assert!(unknown.contains("node-idd"), "{unknown}");
        let bad_port = refusal("data-dir = \"d\"\nport = \"x\"");
        assert!(bad_port.contains("port"), "{bad_port}");
        let bad_dir = refusal("data-dir = [1]");
        assert!(bad_dir.contains("data-dir"), "{bad_dir}");
        let not_toml = refusal("not toml");
        assert!(
            not_toml.contains("TOML") || not_toml.contains("toml"),
            "{not_toml}"
        );
    }
}
