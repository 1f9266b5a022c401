//! A user-API request is one trace, seen by a real OTLP receiver (`pinnacle dev` exporting
//! to `tests/python/tools/otlp_receiver.py`): a credentials write carrying the caller's
//! `traceparent` is an HTTP `SERVER` span below the caller's span, named after its route,
//! with the listed HTTP attributes (`tests/data/span_attributes.json`); its database and
//! `audit.publish` spans hang below it, all with `service.name=pinnacle-user-api`; the
//! stored `credentials.write` event names the trace, and its audit message carries the
//! trace context without an empty `tracestate`. A refused request (401) has status ERROR
//! and `error.type=UNAUTHENTICATED`.

use std::collections::HashMap;
use std::time::Duration;

use pinnacle_tests::{audit_events, eventually, TestDb, TestNats};
use serde_json::Value;

use crate::each_backend;
use crate::tracing_otlp::{
    attr, dev_env, field, spans, start_dev, start_receiver, tree, Conventions,
};

/// A fresh client span id and trace id, and the `traceparent` naming them.
fn client_context() -> (String, String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let span_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    let traceparent = format!("00-{trace_id}-{span_id}-01");
    (trace_id, span_id, traceparent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_api_write_is_one_trace_below_the_callers_span() {
    each_backend(|backend| async move {
        let nats = TestNats::start();
        let db = TestDb::create(backend).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("spans.jsonl");
        let (_receiver, port) = start_receiver(&out).await;
        let _pinnacle = start_dev(dir.path(), &nats, &db, port, &[]);
        let env_file = dir.path().join("data/dev.env");
        let env: HashMap<String, String> = eventually(
            Duration::from_secs(20),
            "pinnacle dev's env file",
            || async { dev_env(&env_file).filter(|e| e.contains_key("USER_API_URL")) },
        )
        .await;
        let api = &env["USER_API_URL"];
        let user_id = &env["DEMO_USER_ID"];
        let http = reqwest::Client::new();
        let conventions = Conventions::load();

        // A credentials write by the user, through their token.
        let (trace_id, client_span, traceparent) = client_context();
        let response = http
            .put(format!("{api}/v1/users/{user_id}/broker-accounts/traced"))
            .bearer_auth(&env["DEMO_API_TOKEN"])
            .header("traceparent", &traceparent)
            .json(&serde_json::json!({"broker": "paper", "client_code": "TRACED1"}))
            .send()
            .await
            .expect("PUT");
        assert_eq!(response.status(), 200, "{:?}", response.text().await);

        let route = "PUT /v1/users/{user_id}/broker-accounts/{label}";
        let expected = [
            route,
            "SELECT api_tokens",
            "audit.publish",
            "INSERT broker_accounts",
        ];
        let trace: Vec<Value> =
            eventually(Duration::from_secs(15), "the write's spans", || async {
                let trace: Vec<Value> = spans(&out)
                    .into_iter()
                    .filter(|s| field(s, "trace_id") == trace_id)
                    .collect();
                expected
                    .iter()
                    .all(|name| trace.iter().any(|s| field(s, "name") == *name))
                    .then_some(trace)
            })
            .await;
        eprintln!("trace {trace_id}:\n{}", tree(&trace, &client_span, 1));
        let server = trace
            .iter()
            .find(|s| field(s, "name") == route)
            .expect("the server span");
        assert_eq!(field(server, "parent_span_id"), client_span, "{server}");
        assert_eq!(field(server, "kind"), "SERVER");
        assert_eq!(field(server, "status"), "UNSET", "{server}");
        assert_eq!(conventions.check(server), Some("http.server"));
        assert_eq!(attr(server, "http.request.method"), "PUT");
        assert_eq!(
            attr(server, "http.route"),
            "/v1/users/{user_id}/broker-accounts/{label}"
        );
        assert_eq!(
            attr(server, "url.path"),
            format!("/v1/users/{user_id}/broker-accounts/traced")
        );
        assert_eq!(server["attributes"]["http.response.status_code"], 200);
        assert_eq!(attr(server, "server.address"), "127.0.0.1", "{server}");
        let server_id = field(server, "span_id");
        for name in [
            "SELECT api_tokens",
            "audit.publish",
            "INSERT broker_accounts",
        ] {
            let span = trace
                .iter()
                .find(|s| field(s, "name") == name)
                .expect("listed above");
            assert_eq!(field(span, "parent_span_id"), server_id, "{span}");
        }
        for span in &trace {
            assert_eq!(field(span, "service"), "pinnacle-user-api", "{span}");
            conventions.check(span);
        }

        // The stored event names the trace; its message carries the context, no empty
        // tracestate.
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let events = audit_events(&client, user_id).await;
        assert!(
            events.iter().any(|(e, _)| e.purpose == "credentials.write"
                && e.trace_id.as_deref() == Some(trace_id.as_str())),
            "no credentials.write event in trace {trace_id}"
        );
        let js = async_nats::jetstream::new(client.clone());
        let stream = js
            .get_stream(pinnacle_common::subjects::AUDIT_STREAM)
            .await
            .expect("audit stream");
        let last = stream
            .get_last_raw_message_by_subject(&pinnacle_common::subjects::audit_credential(user_id))
            .await
            .expect("the last audit message");
        let traced = last
            .headers
            .get("traceparent")
            .map(|v| v.as_str().to_string());
        assert!(
            traced.is_some_and(|t| t.contains(&trace_id)),
            "{:?}",
            last.headers
        );
        assert!(
            last.headers.get("tracestate").is_none(),
            "{:?}",
            last.headers
        );

        // A refused request is a failed span: status ERROR, error.type = the error code.
        let (trace_id, client_span, traceparent) = client_context();
        let response = http
            .get(format!("{api}/v1/users/{user_id}"))
            .bearer_auth("not-a-token")
            .header("traceparent", &traceparent)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 401);
        let refused = eventually(
            Duration::from_secs(15),
            "the refused request's span",
            || async {
                spans(&out)
                    .into_iter()
                    .find(|s| field(s, "trace_id") == trace_id && field(s, "kind") == "SERVER")
            },
        )
        .await;
        assert_eq!(field(&refused, "parent_span_id"), client_span, "{refused}");
        assert_eq!(field(&refused, "name"), "GET /v1/users/{user_id}");
        assert_eq!(field(&refused, "status"), "ERROR", "{refused}");
        assert_eq!(attr(&refused, "error.type"), "UNAUTHENTICATED", "{refused}");
        assert_eq!(refused["attributes"]["http.response.status_code"], 401);
        assert_eq!(conventions.check(&refused), Some("http.server"));
    })
    .await;
}
