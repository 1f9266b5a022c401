//! The HTTP server span of every API request (`GET /v1/users/{user_id}`, …), so a request
//! is one trace: the caller's `traceparent` is its parent, and the database and audit
//! spans of the handler are its children (the audit event names its trace id).
//!
//! [`server_span`] wraps the whole router (a 404 or a refused path gets a span too);
//! [`route`] runs inside it, once routing matched, and names the span after the route
//! template. The attributes follow OpenTelemetry's HTTP server conventions; a failed
//! request has status `ERROR` and `error.type` = its error code (`UNAUTHENTICATED`, …),
//! as every server span in Pinnacle does (docs/OBSERVABILITY.md explains the choice).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::trace::TraceContextExt as _;
use pinnacle_common::error::ErrorCode;
use pinnacle_common::telemetry;
use tracing::field::Empty;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The request method as OpenTelemetry spells it: one of the standard methods, or
/// `_OTHER`, so a caller cannot mint new attribute values.
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

/// `server.address` and `server.port` from the `Host` header, when it parses.
fn host(request: &Request) -> Option<(String, Option<u16>)> {
    let value = request.headers().get(header::HOST)?.to_str().ok()?;
    let authority: axum::http::uri::Authority = value.parse().ok()?;
    Some((authority.host().to_string(), authority.port_u16()))
}

/// Runs the request inside its `SERVER` span and records the outcome on it.
pub async fn server_span(request: Request, next: Next) -> Response {
    let method = method_name(request.method());
    let span = tracing::info_span!(
        "http.request",
        otel.name = method,
        otel.kind = "server",
        http.request.method = method,
        url.path = request.uri().path(),
        url.scheme = "http",
        network.protocol.name = "http",
        http.route = Empty,
        server.address = Empty,
        server.port = Empty,
        client.address = Empty,
        http.response.status_code = Empty,
        otel.status_code = Empty,
        error.type = Empty,
    );
    if let Some((address, port)) = host(&request) {
        span.record("server.address", address);
        if let Some(port) = port {
            span.record("server.port", i64::from(port));
        }
    }
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        span.record("client.address", peer.ip().to_string());
    }
    telemetry::set_parent_from_http(&span, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    // As an integer attribute (tracing-opentelemetry exports a u64 as a string).
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        telemetry::record_failure(&span, code.as_str());
    } else if status.is_server_error() || status.is_client_error() {
        telemetry::record_failure(&span, status.as_str());
    }
    response
}

/// Names the current server span after the matched route (`PUT /v1/users/{user_id}`).
pub async fn route(request: Request, next: Next) -> Response {
    if let Some(path) = request.extensions().get::<MatchedPath>() {
        let span = tracing::Span::current();
        span.record("http.route", path.as_str());
        // The span has started by now, so `otel.name` would no longer apply: rename the
        // OpenTelemetry span itself.
        span.context().span().update_name(format!(
            "{} {}",
            method_name(request.method()),
            path.as_str()
        ));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::method_name;
    use axum::http::Method;

    #[test]
    fn unknown_methods_are_other() {
        assert_eq!(method_name(&Method::PUT), "PUT");
        let odd = Method::from_bytes(b"BREW").expect("a method");
        assert_eq!(method_name(&odd), "_OTHER");
    }
}
