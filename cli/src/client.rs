//! `pinnacle ticks`, and [`ClientEnv`], the settings every client verb reads: `NATS_URL`,
//! `DEMO_USER_ID`/`PINNACLE_USER_ID` and `DEMO_API_TOKEN`/`PINNACLE_API_TOKEN`, from an env
//! file such as the `dev.env` that `pinnacle dev` writes, or from the environment.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;
use futures::StreamExt;
use pinnacle_common::codec::Encoding;
use pinnacle_common::config::NatsSettings;
use pinnacle_common::model::Tick;

/// Makes `path`'s `KEY=VALUE` lines (blank lines and `#` comments skipped) the process
/// environment, over what was set. Call it before any thread starts.
pub fn apply_env_file(path: &Path) -> anyhow::Result<()> {
    let env = ClientEnv::load(Some(path))?;
    for (key, value) in env.values {
        std::env::set_var(key, value);
    }
    Ok(())
}

/// The env file a command line names (`--env-file FILE` or `--env-file=FILE`, anywhere
/// before a lone `--`), else `PINNACLE_ENV_FILE`. Read before the arguments are parsed, so
/// that the file's values also fill the flags that fall back to a variable
/// (`keys add --file` from `PINNACLE_MASTER_KEY_FILE`).
pub fn env_file_in_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Option<std::path::PathBuf> {
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--env-file" {
            return args.next().map(Into::into);
        }
        if let Some(value) = arg.to_str().and_then(|a| a.strip_prefix("--env-file=")) {
            return Some(value.into());
        }
    }
    std::env::var_os("PINNACLE_ENV_FILE")
        .filter(|v| !v.is_empty())
        .map(Into::into)
}

/// Settings read from an env file, falling back to the process environment.
#[derive(Debug, Default)]
pub struct ClientEnv {
    values: HashMap<String, String>,
}

impl ClientEnv {
    /// Loads `KEY=VALUE` lines from `path`, if given.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut values = HashMap::new();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if let Some((k, v)) = line.split_once('=') {
                    values.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
        Ok(Self { values })
    }

    /// The first of `keys` that is set, in the file or the environment.
    pub fn get(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| {
            self.values
                .get(*k)
                .cloned()
                .or_else(|| std::env::var(k).ok())
                .filter(|v| !v.is_empty())
        })
    }

    /// The NATS settings: `NATS_*` from the environment, `NATS_URL` from the file first.
    pub fn nats(&self) -> NatsSettings {
        let mut settings = NatsSettings::from_env()
            .unwrap_or_else(|_| NatsSettings::for_url("nats://127.0.0.1:4222"));
        if let Some(url) = self.get(&["NATS_URL"]) {
            settings.url = url;
        }
        settings
    }
}

/// Prints ticks matching `pattern` as JSON lines, every field the wire carries; stops
/// after `count` if given, or quietly when the reader goes away (`| head`).
pub async fn ticks(env: &ClientEnv, pattern: &str, count: Option<usize>) -> anyhow::Result<()> {
    let client = pinnacle_common::nats::connect(&env.nats(), "pinnacle-cli").await?;
    let mut sub = client.subscribe(pattern.to_string()).await?;
    let mut seen = 0usize;
    while let Some(message) = sub.next().await {
        // Decoded as the core tick first (a tick that is not one is reported), printed as
        // the whole map: quote and depth fields included.
        match Encoding::MsgPack
            .decode::<Tick>(&message.payload)
            .and_then(|_| Encoding::MsgPack.decode::<serde_json::Value>(&message.payload))
        {
            Ok(tick) => crate::output::line(&tick.to_string()),
            Err(e) => eprintln!("{}: undecodable tick: {e}", message.subject),
        }
        seen += 1;
        if count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<std::ffi::OsString> {
        line.split(' ').map(Into::into).collect()
    }

    #[test]
    fn the_env_file_is_found_before_the_arguments_are_parsed() {
        assert_eq!(
            env_file_in_args(args("pinnacle keys add --env-file a.env")),
            Some("a.env".into())
        );
        assert_eq!(
            env_file_in_args(args("pinnacle --env-file=b.env users list")),
            Some("b.env".into())
        );
        // After `--` it is an argument, not the flag.
        assert_ne!(
            env_file_in_args(args("pinnacle smartapi decode -- --env-file c.env")),
            Some("c.env".into())
        );
    }
}
