//! The verifier against synthetic chains: clean, then each kind of tampering.

use super::*;
use crate::chain::Tip;
use crate::orders::{orders_without_audit, Access, OrderRef};

/// A stored message: (seq, subject, headers, payload).
type Msg = (u64, String, HeaderMap, Vec<u8>);

fn vault() -> Vault {
    Vault::new(1, &[11u8; 32])
}

/// `n` links alternating between users `a` and `b`, at sequences 1..=n.
fn stream(vault: &Vault, n: u64) -> Vec<Msg> {
    let mut tips: HashMap<String, Tip> = HashMap::new();
    (1..=n)
        .map(|seq| {
            let subject = subjects::audit_credential(if seq % 2 == 0 { "a" } else { "b" });
            let payload = format!("event {seq}").into_bytes();
            let tip = tips.entry(subject.clone()).or_insert(Tip::EMPTY);
            let link = Link::next(vault, &subject, tip, &payload).expect("link");
            *tip = link.tip_at(seq);
            let mut hdrs = HeaderMap::new();
            link.write_headers(&mut hdrs);
            (seq, subject, hdrs, payload)
        })
        .collect()
}

fn checkpoint(vault: &Vault, messages: &[Msg], seq: u64) -> Checkpoint {
    let (_, subject, hdrs, _) = messages.iter().find(|m| m.0 == seq).expect("message");
    let link = Link::from_headers(Some(hdrs)).expect("link");
    Checkpoint::sign(vault, subject, &link.tip_at(seq), 0).expect("signs")
}

fn verify(vault: &Vault, messages: &[Msg], checkpoints: &[Checkpoint]) -> Report {
    let mut verifier = Verifier::new(vault);
    for cp in checkpoints {
        verifier.add_checkpoint(cp.clone(), CheckpointSource::Database);
    }
    for (seq, subject, hdrs, payload) in messages {
        verifier.push(*seq, subject, Some(hdrs), payload);
    }
    verifier.finish()
}

#[test]
fn an_untouched_stream_verifies() {
    let v = vault();
    let messages = stream(&v, 20);
    let cps = [checkpoint(&v, &messages, 19), checkpoint(&v, &messages, 20)];
    let report = verify(&v, &messages, &cps);
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        (report.events, report.chains, report.checkpoints),
        (20, 2, 2)
    );
}

#[test]
fn an_edited_event_is_its_own_sequence() {
    let v = vault();
    let mut messages = stream(&v, 20);
    messages[6].3 = b"event 7, edited".to_vec();
    assert_eq!(verify(&v, &messages, &[]).first_bad_seq, Some(7));
}

#[test]
fn a_deleted_event_is_the_sequence_it_had() {
    let v = vault();
    let mut messages = stream(&v, 20);
    messages.remove(6);
    assert_eq!(verify(&v, &messages, &[]).first_bad_seq, Some(7));
    let mut first = stream(&v, 20);
    first.remove(0);
    assert_eq!(verify(&v, &first, &[]).first_bad_seq, Some(1));
}

#[test]
fn swapped_events_are_the_first_swapped_sequence() {
    let v = vault();
    let mut messages = stream(&v, 20);
    // Seq 7 and 9 are consecutive links of one chain: swap their contents.
    let seven = (
        messages[6].1.clone(),
        messages[6].2.clone(),
        messages[6].3.clone(),
    );
    let nine = (
        messages[8].1.clone(),
        messages[8].2.clone(),
        messages[8].3.clone(),
    );
    (messages[6].1, messages[6].2, messages[6].3) = nine;
    (messages[8].1, messages[8].2, messages[8].3) = seven;
    assert_eq!(verify(&v, &messages, &[]).first_bad_seq, Some(7));
}

#[test]
fn an_inserted_event_is_its_own_sequence() {
    let v = vault();
    let messages = stream(&v, 20);
    // A replayed copy of seq 3 inserted at seq 8; later messages move up by one.
    let mut copy = messages[2].clone();
    copy.0 = 8;
    let mut tampered: Vec<Msg> = messages[..7].to_vec();
    tampered.push(copy);
    tampered.extend(messages[7..].iter().cloned().map(|mut m| {
        m.0 += 1;
        m
    }));
    assert_eq!(verify(&v, &tampered, &[]).first_bad_seq, Some(8));
    // A forged event (made without the key) is caught by its hash.
    let mut forged = messages.clone();
    forged[9].2.insert(
        pinnacle_protocol::subjects::headers::AUDIT_HASH,
        hex::encode([1u8; 32]).as_str(),
    );
    assert_eq!(verify(&v, &forged, &[]).first_bad_seq, Some(10));
}

#[test]
fn a_truncated_tail_is_found_by_its_checkpoint() {
    let v = vault();
    let messages = stream(&v, 20);
    let cps = [checkpoint(&v, &messages, 10), checkpoint(&v, &messages, 19)];
    let report = verify(&v, &messages[..15], &cps);
    assert_eq!(report.first_bad_seq, Some(16), "{report}");
    assert_eq!(report.problems[0].kind, ProblemKind::Truncated);
    // Without checkpoints a truncated tail looks like a shorter, valid chain.
    assert!(verify(&v, &messages[..15], &[]).is_clean());
}

#[test]
fn forged_checkpoints_and_unchained_events_are_reported() {
    let v = vault();
    let mut messages = stream(&v, 6);
    let mut cp = checkpoint(&v, &messages, 6);
    cp.position += 1;
    let report = verify(&v, &messages, &[cp]);
    assert_eq!(report.problems[0].kind, ProblemKind::BadCheckpoint);
    messages[3].2 = HeaderMap::new();
    let report = verify(&v, &messages, &[]);
    assert_eq!(report.first_bad_seq, Some(4));
    assert_eq!(report.problems[0].kind, ProblemKind::Unchained);
}

#[test]
fn each_order_needs_its_own_place_event() {
    let access = |ts_ms, purpose: &str| Access {
        ts_ms,
        purpose: purpose.into(),
    };
    let order = |id: &str, created_ms, coid: &str| OrderRef {
        id: id.into(),
        user_id: "u".into(),
        broker_account_id: "acc".into(),
        client_order_id: coid.into(),
        created_ms,
    };
    let accesses = HashMap::from([(
        ("u".to_string(), "acc".to_string()),
        vec![
            access(100, "order.place"),
            access(200, "order.place"),
            access(300, "order.squareoff"),
            access(50, "credentials.write"),
        ],
    )]);
    let orders = [
        order("o1", 101, "c1"),
        order("o2", 201, "c2"),
        order("o3", 5_000, "c3"),
        order("o4", 5_001, "sqoff-x"),
    ];
    assert_eq!(orders_without_audit(&orders, &accesses), ["o3"]);
    let early = [order("o0", -2_000, "c0")];
    assert_eq!(orders_without_audit(&early, &accesses), ["o0"]);
}

/// [`verify`] with every message stored at t = 0 and the sealing check at `now_ms`.
fn verify_sealed(
    vault: &Vault,
    messages: &[Msg],
    checkpoints: &[Checkpoint],
    now_ms: i64,
    max_age_ms: i64,
) -> Report {
    let mut verifier = Verifier::new(vault);
    verifier.expect_sealed(now_ms, max_age_ms);
    for cp in checkpoints {
        verifier.add_checkpoint(cp.clone(), CheckpointSource::Database);
    }
    for (seq, subject, hdrs, payload) in messages {
        verifier.push_stored(*seq, subject, Some(hdrs), payload, Some(0));
    }
    verifier.finish()
}

#[test]
fn an_old_tail_without_a_covering_checkpoint_is_unsealed() {
    let v = vault();
    let messages = stream(&v, 20);
    // Chain `a` (even sequences) is sealed at its last link; chain `b` (odd) only at seq 15.
    let cps = [checkpoint(&v, &messages, 20), checkpoint(&v, &messages, 15)];
    let report = verify_sealed(&v, &messages, &cps, 100_000, 60_000);
    assert_eq!(report.problems.len(), 1, "{report}");
    assert_eq!(report.problems[0].kind, ProblemKind::Unsealed);
    assert_eq!(report.problems[0].subject, subjects::audit_credential("b"));
    // `b`'s first uncovered link follows seq 15: seq 17.
    assert_eq!(report.first_bad_seq, Some(17), "{report}");
    // Within the deadline the writers still have time to seal it.
    assert!(verify_sealed(&v, &messages, &cps, 30_000, 60_000).is_clean());
    // Sealed at both tips: clean however old.
    let both = [checkpoint(&v, &messages, 19), checkpoint(&v, &messages, 20)];
    assert!(verify_sealed(&v, &messages, &both, 1_000_000, 60_000).is_clean());
    // A chain with no checkpoint at all is unsealed from its first link.
    let report = verify_sealed(&v, &messages, &[checkpoint(&v, &messages, 20)], 100_000, 0);
    assert_eq!(report.first_bad_seq, Some(1), "{report}");
    // A forged checkpoint covers nothing.
    let mut forged = checkpoint(&v, &messages, 19);
    forged.ts_ms += 1;
    let report = verify_sealed(&v, &messages, &[cps[0].clone(), forged], 100_000, 60_000);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::Unsealed),
        "{report}"
    );
}
