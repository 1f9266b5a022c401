//! `pinnacle audit tail`: follows the AUDIT stream live through an ordered (ephemeral)
//! consumer, filtered to one user's chain subject when asked.

use std::io::Write;

use async_nats::jetstream::{self, consumer::pull, consumer::DeliverPolicy};
use futures::StreamExt as _;
use pinnacle_common::codec::Encoding;
use pinnacle_common::model::AuditEvent;
use pinnacle_common::subjects;

use super::error::{nats, AuditCliError};

/// What `tail` shows.
#[derive(Debug, Clone, Default)]
pub struct TailOptions {
    /// Only this user's events (subject filter `audit.credential.<user>`).
    pub user: Option<String>,
    /// Start at this stream sequence; otherwise only events stored from now on.
    pub since_seq: Option<u64>,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Stop after this many events.
    pub count: Option<usize>,
}

/// Follows the audit stream, writing one line per event to `out`, until `count` events
/// (or forever).
pub async fn tail(
    client: async_nats::Client,
    stream: &str,
    options: &TailOptions,
    out: &mut (dyn Write + Send),
) -> Result<usize, AuditCliError> {
    let filter = match &options.user {
        Some(user) => subjects::audit_credential(user),
        None => subjects::AUDIT_CREDENTIAL_ALL.to_string(),
    };
    let deliver_policy = match options.since_seq {
        Some(seq) => DeliverPolicy::ByStartSequence {
            start_sequence: seq.max(1),
        },
        None => DeliverPolicy::New,
    };
    let consumer = jetstream::new(client)
        .get_stream(stream)
        .await
        .map_err(nats)?
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    let mut messages = consumer.messages().await.map_err(nats)?;
    let mut shown = 0;
    while options.count.is_none_or(|count| shown < count) {
        let Some(message) = messages.next().await else {
            break;
        };
        let line = event_line(&message.map_err(nats)?, options.json)?;
        writeln!(out, "{line}")?;
        out.flush()?;
        shown += 1;
    }
    Ok(shown)
}

/// One message of the audit stream as `tail` prints it: text, or a JSON object.
fn event_line(message: &jetstream::Message, json: bool) -> Result<String, AuditCliError> {
    let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
    let event = Encoding::MsgPack.decode::<AuditEvent>(&message.payload);
    Ok(match (&event, json) {
        (Ok(event), true) => {
            let mut value = serde_json::to_value(event).map_err(std::io::Error::other)?;
            value["seq"] = seq.into();
            value["subject"] = message.subject.as_str().into();
            value.to_string()
        }
        (Ok(e), false) => format!(
            "{seq} {} user={} account={} actor={} purpose={} outcome={} request={} fields={}",
            chrono::DateTime::from_timestamp_millis(e.ts_ms)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            e.user_id,
            e.broker_account_id,
            e.actor,
            e.purpose,
            e.outcome,
            e.request_id,
            e.fields.join(",")
        ),
        (Err(_), true) => serde_json::json!({ "seq": seq, "subject": message.subject.as_str(), "undecodable": true }).to_string(),
        (Err(_), false) => format!("{seq} {} (undecodable)", message.subject),
    })
}

/// `pinnacle audit tail`: connects with `NATS_*` settings and follows the stream on stdout.
pub async fn tail_command(stream: &str, options: &TailOptions) -> anyhow::Result<()> {
    use pinnacle_common::config::NatsSettings;
    let client = crate::stack::nats(&NatsSettings::from_env()?, "pinnacle-audit-tail").await?;
    let mut stdout = std::io::stdout();
    tail(client, stream, options, &mut stdout).await?;
    Ok(())
}
