//! What the Angel One broker reads from an account's credentials (egress, compliance,
//! login secrets, a stored session) and how SmartAPI errors map to broker errors.

use std::net::IpAddr;

use pinnacle_common::broker::{BrokerCredentials, BrokerError};
use pinnacle_smartapi::session::{LoginSecrets, Session};
use pinnacle_smartapi::{Egress, SmartApiError, SmartApiErrorKind};

/// Which way the account's traffic leaves: its proxy, or its static IP bound locally.
pub(super) fn egress(creds: &BrokerCredentials) -> Result<Egress, BrokerError> {
    if let Some(proxy) = &creds.egress_proxy {
        return Ok(Egress::Proxy(proxy.clone()));
    }
    match &creds.static_ip {
        Some(ip) => ip
            .parse::<IpAddr>()
            .map(Egress::Bind)
            .map_err(|_| BrokerError::Regulatory(format!("static_ip {ip:?} is not an IP address"))),
        None => Ok(Egress::Default),
    }
}

/// The account's regulatory settings (SEBI/NSE retail algo framework, from 1 April 2026).
pub(super) fn check_compliance(creds: &BrokerCredentials) -> Result<(), BrokerError> {
    let Some(ip) = &creds.static_ip else {
        return Err(BrokerError::Regulatory(
            "this Angel One account has no static_ip: since 1 April 2026 API orders are accepted \
             only from the static IP registered for the API key; set static_ip (and egress_proxy \
             if this host cannot use that address itself)"
                .into(),
        ));
    };
    if creds.algo_id.as_deref().is_none_or(str::is_empty) {
        return Err(BrokerError::Regulatory(
            "this Angel One account has no algo_id: API orders must carry the exchange-issued algo \
             id (the exchange's generic id below 10 orders per second, a registered one above)"
                .into(),
        ));
    }
    if creds.egress_proxy.is_none() {
        let ip: IpAddr = ip.parse().map_err(|_| {
            BrokerError::Regulatory(format!("static_ip {ip:?} is not an IP address"))
        })?;
        // Binding an ephemeral UDP port proves the address is this host's without sending.
        // Only "not this host's address" is a verdict on the account; running out of file
        // descriptors or buffers passes.
        match std::net::UdpSocket::bind((ip, 0)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                return Err(BrokerError::Regulatory(format!(
                    "static_ip {ip} is not an address of this host; set egress_proxy to a proxy \
                     that leaves from it"
                )));
            }
            Err(e) => {
                return Err(BrokerError::Unavailable(format!(
                    "could not check that static_ip {ip} is this host's: {e}"
                )));
            }
        }
    }
    Ok(())
}

pub(super) fn login_secrets(creds: &BrokerCredentials) -> Result<LoginSecrets, SmartApiError> {
    match (&creds.secret, &creds.totp_seed) {
        (Some(pin), Some(seed)) => Ok(LoginSecrets {
            pin: pin.clone(),
            totp_seed: seed.clone(),
        }),
        _ => Err(SmartApiError::new(
            SmartApiErrorKind::Login,
            None,
            "an angel_one account needs secret (the PIN) and totp_seed to log in",
        )),
    }
}

pub(super) fn stored_session(creds: &BrokerCredentials) -> Option<Session> {
    Some(Session {
        jwt: creds.jwt_token.clone()?,
        refresh: creds.refresh_token.clone()?,
        feed: creds.feed_token.clone()?,
        expires_at: creds.session_expires_at?,
    })
}

/// A failure of a request that changes nothing, or that certainly was not processed.
pub(super) fn broker_error(error: SmartApiError) -> BrokerError {
    match error.kind() {
        SmartApiErrorKind::Timeout
        | SmartApiErrorKind::EmptyReply
        | SmartApiErrorKind::Transport
        | SmartApiErrorKind::Decode => BrokerError::Unavailable(error.to_string()),
        SmartApiErrorKind::RateLimited => BrokerError::RateLimited(error.to_string()),
        SmartApiErrorKind::Api
        | SmartApiErrorKind::Session
        | SmartApiErrorKind::Login
        | SmartApiErrorKind::Invalid => BrokerError::Rejected(error.to_string()),
    }
}

/// Whether the request may have been processed although no usable reply came back.
pub(super) fn ambiguous(error: &SmartApiError) -> bool {
    error.outcome_unknown() || error.kind() == SmartApiErrorKind::Decode
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(static_ip: &str) -> BrokerCredentials {
        BrokerCredentials {
            static_ip: Some(static_ip.into()),
            algo_id: Some("ALGO1".into()),
            ..BrokerCredentials::default()
        }
    }

    #[test]
    fn only_an_address_that_is_not_this_hosts_is_a_regulatory_verdict() {
        assert!(check_compliance(&account("127.0.0.1")).is_ok());
        // TEST-NET-3: never an address of this host.
        let refused = check_compliance(&account("203.0.113.7")).expect_err("not ours");
        assert!(
            matches!(&refused, BrokerError::Regulatory(m) if m.contains("not an address of this host")),
            "{refused:?}"
        );
        let malformed = check_compliance(&account("not-an-ip")).expect_err("malformed");
        assert!(
            matches!(malformed, BrokerError::Regulatory(_)),
            "{malformed:?}"
        );
    }
}
