//! `pinnacle-smartapi-sim`: runs the SmartAPI simulator until Ctrl-C or SIGTERM and prints
//! its URLs as one JSON line on stdout.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use pinnacle_smartapi_sim::{SimAccount, SimConfig, SimInstrument, Simulator};

#[derive(Debug, Parser)]
#[command(about = "A local simulator of Angel One SmartAPI (REST, market and order WebSockets)")]
struct Args {
    /// Address for REST and both WebSockets.
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// An account as client_code:pin:totp_seed:api_key (repeatable).
    #[arg(long = "account")]
    accounts: Vec<String>,
    /// Use the instruments of this OpenAPIScripMaster.json instead of the built-in set.
    #[arg(long)]
    scrip_master: Option<std::path::PathBuf>,
    /// Start the simulator's clock at this time (RFC 3339, e.g. 2026-12-02T20:00:00+05:30);
    /// it runs on from there. Empty: the real time.
    #[arg(long, env = "PINNACLE_SIM_NOW", default_value = "")]
    now: String,
    /// Holiday list (JSON, `{"holidays":[{"date","name","exchanges"}]}`); the bundled 2026
    /// list by default.
    #[arg(long)]
    holidays: Option<std::path::PathBuf>,
    /// Never close the market: orders fill at any hour (candles still follow the calendar).
    #[arg(long)]
    always_open: bool,
}

fn parse_account(spec: &str) -> anyhow::Result<SimAccount> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [client_code, pin, totp_seed, api_key] = parts.as_slice() else {
        anyhow::bail!("--account wants client_code:pin:totp_seed:api_key, got {spec:?}");
    };
    Ok(SimAccount {
        client_code: (*client_code).to_owned(),
        pin: (*pin).to_owned(),
        totp_seed: (*totp_seed).to_owned(),
        api_key: (*api_key).to_owned(),
        static_ip: None,
        name: (*client_code).to_owned(),
        available_cash_paise: 10_000_000,
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let accounts = args
        .accounts
        .iter()
        .map(|a| parse_account(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut config = SimConfig {
        bind: args.bind,
        enforce_market_hours: !args.always_open,
        ..SimConfig::default()
    };
    if !args.now.trim().is_empty() {
        let at = chrono::DateTime::parse_from_rfc3339(args.now.trim())
            .with_context(|| format!("--now / PINNACLE_SIM_NOW {:?} is not RFC 3339", args.now))?;
        config.start_at = Some(at.with_timezone(&chrono::Utc));
    }
    if let Some(path) = &args.holidays {
        config.calendar =
            pinnacle_smartapi_sim::SimCalendar::load(path).context("loading the holiday list")?;
    }
    if let Some(path) = &args.scrip_master {
        config.instruments =
            SimInstrument::load_scrip_master(path).context("loading the scrip master")?;
    }
    let sim = Simulator::start(config).await?;
    for a in accounts {
        sim.add_account(a);
    }
    let urls = serde_json::json!({"rest_url": sim.rest_url(), "feed_url": sim.feed_url(), "order_ws_url": sim.order_ws_url()});
    println!("{urls}");
    shutdown_signal().await;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}
