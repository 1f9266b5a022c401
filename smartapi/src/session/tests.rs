//! Tests of the session manager: JWT expiry, the hand-over between lease holders, and the
//! daily rollover.

use super::*;

#[test]
fn expiry_comes_from_the_jwt() {
    let payload = data_encoding::BASE64URL_NOPAD.encode(br#"{"sub":"C1","exp":1700000000}"#);
    let jwt = SecretString::from(format!("eyJhbGciOiJIUzUxMiJ9.{payload}.sig"));
    assert_eq!(jwt_expiry(&jwt).map(|t| t.timestamp()), Some(1_700_000_000));
    let bearer = SecretString::from(format!("Bearer eyJhbGciOiJIUzUxMiJ9.{payload}.sig"));
    assert!(jwt_expiry(&bearer).is_some());
    assert_eq!(jwt_expiry(&SecretString::from("garbage".to_string())), None);
}

/// The previous lease holder stored its session and released the lease just before
/// this caller took it: the stored session is used, and nobody logs in again.
#[tokio::test]
async fn a_session_stored_by_the_previous_holder_is_used_not_replaced() {
    /// Shows the holder's session only once the lease has been taken, as when the holder
    /// saved and released between this caller's look and its lease.
    #[derive(Default)]
    struct Racing {
        inner: MemoryStore,
        leased: std::sync::atomic::AtomicBool,
    }
    #[async_trait]
    impl SessionStore for Racing {
        async fn load(&self, id: &str) -> Result<Option<Session>, SmartApiError> {
            if self.leased.load(std::sync::atomic::Ordering::SeqCst) {
                self.inner.load(id).await
            } else {
                Ok(None)
            }
        }
        async fn save(&self, id: &str, session: &Session) -> Result<(), SmartApiError> {
            self.inner.save(id, session).await
        }
        async fn try_lease(&self, _: &str, _: Duration) -> Result<bool, SmartApiError> {
            self.leased.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(true)
        }
        async fn release(&self, _: &str) {}
    }
    let store = Racing::default();
    let fresh = Session {
        jwt: SecretString::from("renewed".to_string()),
        refresh: SecretString::from("r".to_string()),
        feed: SecretString::from("f".to_string()),
        expires_at: Utc::now() + chrono::Duration::hours(1),
    };
    store.inner.save("acct", &fresh).await.expect("save");
    let stale = Session {
        jwt: SecretString::from("stale".to_string()),
        ..fresh.clone()
    };
    // Nothing listens here: a login attempt would fail the test.
    let config = crate::RestConfig {
        base_url: "http://127.0.0.1:9".into(),
        ..crate::RestConfig::default()
    };
    let key = crate::AccountKey {
        api_key: SecretString::from("k".to_string()),
        client_code: "C1".into(),
    };
    let limiter = crate::limits::RateLimiter::new(Duration::from_millis(10));
    let client = RestClient::new(&config, key, &crate::Egress::Default, limiter).expect("client");
    let secrets = LoginSecrets {
        pin: SecretString::from("1234".to_string()),
        totp_seed: SecretString::from("GEZDGNBVGY3TQOJQ".to_string()),
    };
    let manager = SessionManager::default();
    let session = manager
        .renew(&client, "acct", Some(&stale), &secrets, &store)
        .await
        .expect("the stored session");
    assert_eq!(session.jwt.expose_secret(), "renewed");
}

#[test]
fn sessions_ending_at_the_rollover_renew_after_it_others_ahead_of_their_end() {
    let ist = pinnacle_protocol::clock::ist();
    let t = |text: &str| {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    };
    let (ahead, settle) = (Duration::from_secs(300), Duration::from_secs(30));
    // Ends at midnight IST: renew 30 s after it.
    let midnight = t("2026-12-03T00:00:00+05:30");
    assert_eq!(
        renew_at(midnight, NaiveTime::MIN, ahead, settle),
        t("2026-12-03T00:00:30+05:30")
    );
    // A broker clock a second off still counts as the rollover.
    assert_eq!(
        renew_at(
            midnight - chrono::Duration::seconds(1),
            NaiveTime::MIN,
            ahead,
            settle
        )
        .with_timezone(&ist)
        .format("%H:%M:%S")
        .to_string(),
        "00:00:29"
    );
    // Ends at 14:00 (the JWT's exp): refresh five minutes before.
    assert_eq!(
        renew_at(
            t("2026-12-03T14:00:00+05:30"),
            NaiveTime::MIN,
            ahead,
            settle
        ),
        t("2026-12-03T13:55:00+05:30")
    );
    // With a 05:00 rollover, midnight is an ordinary end.
    let five = NaiveTime::from_hms_opt(5, 0, 0).expect("time");
    assert_eq!(
        renew_at(midnight, five, ahead, settle),
        t("2026-12-02T23:55:00+05:30")
    );
}

#[test]
fn rollover_is_the_next_ist_midnight() {
    // 2026-11-25 20:00 IST = 14:30 UTC → next midnight IST = 2026-11-25 18:30 UTC.
    let now = Utc
        .with_ymd_and_hms(2026, 11, 25, 14, 30, 0)
        .single()
        .expect("time");
    let next = next_rollover(now, NaiveTime::MIN);
    assert_eq!(
        next,
        Utc.with_ymd_and_hms(2026, 11, 25, 18, 30, 0)
            .single()
            .expect("time")
    );
    // Just after midnight IST, the next one is a day later.
    let after = Utc
        .with_ymd_and_hms(2026, 11, 25, 18, 31, 0)
        .single()
        .expect("time");
    assert_eq!(
        next_rollover(after, NaiveTime::MIN) - after,
        chrono::Duration::hours(24) - chrono::Duration::minutes(1)
    );
}
