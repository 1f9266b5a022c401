//! What `pinnacle dev` tells the developer: the `dev.env` file it writes and the banners it
//! prints (one long text each, kept whole so it reads as printed).

use std::path::Path;

use pinnacle_common::config::{DatabaseSettings, NatsSettings};
use pinnacle_user_api::console;
use secrecy::{ExposeSecret, SecretString};

use super::demo::DemoUser;

/// What `dev.env` holds.
pub(super) struct DevEnv<'a> {
    pub(super) nats: &'a NatsSettings,
    pub(super) api_url: &'a str,
    pub(super) demo: &'a DemoUser,
    pub(super) admin_token: &'a SecretString,
    pub(super) database: &'a DatabaseSettings,
    /// The data dir's key file, when no key is configured.
    pub(super) key_file: Option<&'a Path>,
    /// The SmartAPI simulator's base URL, with `--smartapi-sim`.
    pub(super) smartapi_sim: Option<&'a str>,
}

impl DevEnv<'_> {
    /// The file's text; `path` is where it is written (named in its comment).
    pub(super) fn render(&self, path: &Path) -> String {
        let accounts = if self.smartapi_sim.is_some() {
            format!("paper,{}", crate::dev_sim::DEMO_LABEL)
        } else {
            "paper".to_string()
        };
        let mut env = format!(
            "# Written by `pinnacle dev` (mode 0600): everything the client and operator verbs\n\
             # need. Use it with --env-file, PINNACLE_ENV_FILE, or `set -a; . {env}; set +a`.\n\
             NATS_URL={}\nUSER_API_URL={}\nDEMO_USER_ID={}\nDEMO_API_TOKEN={}\n\
             DEMO_ACCOUNTS={accounts}\nPINNACLE_API_ADMIN_TOKEN={}\nDATABASE_URL={}\n",
            self.nats.url,
            self.api_url,
            self.demo.user_id,
            self.demo.token.expose_secret(),
            self.admin_token.expose_secret(),
            self.database.database_url,
            env = path.display(),
        );
        if let Some(url) = self.smartapi_sim {
            env.push_str(&format!("SMARTAPI_SIM_URL={url}\n"));
        }
        if let Some(key_file) = self.key_file {
            env.push_str(&format!(
                "PINNACLE_MASTER_KEY_FILE={}\n",
                key_file.display()
            ));
        }
        env
    }
}

pub(super) fn print_sim_banner(rest_url: &str, env_file: &Path) {
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "pinnacle".into());
    let env = env_file.display();
    println!(
        "\nAngel One SmartAPI simulator (--smartapi-sim) at {rest_url}\
         \n  market data  feed angel_one and candles (source \"angel_one\") from the simulator,\
         \n               logged in as the platform account {platform}\
         \n  demo user    broker account `{label}` (angel_one, client {client}, static IP 127.0.0.1, algo id {algo})\n\
         \nPlace a LIMIT order through the simulator (rupees; it fills when the price crosses while\
         \nNSE is open by the simulator's clock, the real time: outside 09:15-15:30 IST it rests as an\
         \nafter-market order until the next open; docs/SMARTAPI.md \"Against the simulator\" moves\
         \nthe clock, at SMARTAPI_SIM_URL in the env file):\
         \n  {me} order place --env-file {env} --account {label} --symbol SBIN-EQ --side BUY --quantity 1 --price 800\
         \nAn order that names no account goes to `paper`, the demo user's default account.",
        platform = crate::dev_sim::PLATFORM_CLIENT,
        label = crate::dev_sim::DEMO_LABEL,
        client = crate::dev_sim::DEMO_CLIENT,
        algo = crate::dev_sim::DEMO_ALGO_ID,
    );
}

/// What the banner shows.
pub(super) struct Banner<'a> {
    pub(super) nats: &'a str,
    pub(super) db: &'a DatabaseSettings,
    pub(super) api: &'a str,
    pub(super) user_id: &'a str,
    pub(super) env_file: &'a Path,
    pub(super) smartapi_sim: bool,
    /// The NATS WebSocket URL the console uses (none: the console cannot reach NATS).
    pub(super) console_nats: Option<&'a str>,
}

pub(super) fn print_banner(b: &Banner<'_>) {
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "pinnacle".into());
    let env = b.env_file.display();
    let (what, accounts) = if b.smartapi_sim {
        (
            "Angel One SmartAPI simulator feed; paper and simulated angel_one accounts",
            format!(
                "paper (paper broker, the default), {} (angel_one on the simulator)",
                crate::dev_sim::DEMO_LABEL
            ),
        )
    } else {
        (
            "simulated feed, paper broker",
            "paper (paper broker, the default)".to_string(),
        )
    };
    let console = match b.console_nats {
        Some(ws) => format!(
            "{api}/   (log in with DEMO_API_TOKEN from the env file; NATS over WebSocket at {ws})",
            api = b.api
        ),
        None => format!(
            "{api}/   (no NATS WebSocket listener: set {var} to one)",
            api = b.api,
            var = console::NATS_WS_URL_VAR
        ),
    };
    println!(
        "\nPinnacle is running ({what}).\n\
         \n  console    {console}\
         \n  API docs   {api}/docs\
         \n  NATS       {nats}\
         \n  database   {db}\
         \n  user API   {api}\
         \n  demo user  {user_id}, accounts: {accounts}\
         \n  env file   {env}   (NATS_URL, USER_API_URL, DEMO_USER_ID, DEMO_API_TOKEN, DEMO_ACCOUNTS,\
         \n                     PINNACLE_API_ADMIN_TOKEN, DATABASE_URL, PINNACLE_MASTER_KEY_FILE)\n\
         \nWatch ticks:\n  {me} ticks --env-file {env} 'md.tick.NSE.>'\n\
         \nPlace an order (paper broker, fills at the last tick):\n  {me} order place --env-file {env} --symbol SBIN-EQ --side buy --quantity 10\n\
         \nYour orders and funds:\n  {me} order list --env-file {env}\n  {me} portfolio funds --env-file {env}\n\
         \nOperate (the admin token in the env file):\n  {me} users list --env-file {env}\n  {me} accounts list --env-file {env}\n  {me} risk show --env-file {env} --user {user_id}\n  {me} kill-switch on --env-file {env} --global\n  {me} kill-switch off --env-file {env} --global\n\
         \nOr from any NATS client: request on orders.<DEMO_USER_ID>.place with header\n  Authorization: Bearer <DEMO_API_TOKEN>   (see docs/PROTOCOL.md)\n\
         \nMarket data (no token needed): md.tick.<EX>.<SYM>, md.depth.<EX>.<SYM>, md.status.<EX>,\n  and requests on md.req.last, md.req.candles, md.req.symbols.search, md.req.symbols.lookup,\n  md.req.status\n\
         \nStop with Ctrl-C.",
        nats = b.nats,
        db = pinnacle_common::config::redact_url(&b.db.database_url),
        api = b.api,
        user_id = b.user_id,
    );
}
