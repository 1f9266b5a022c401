//! Subjects: building, escaping and parsing them back.

use super::*;

#[test]
fn escaping_keeps_one_token_and_round_trips() {
    for symbol in [
        "SBIN-EQ",
        "NIFTY 50",
        "BAJAJ.AUTO",
        "M&M-EQ",
        "a~b",
        "*>",
        "é",
    ] {
        let escaped = escape_token(symbol);
        assert!(!escaped.contains(['.', ' ', '*', '>']), "{escaped}");
        assert_eq!(unescape_token(&escaped).as_deref(), Some(symbol));
    }
    assert_eq!(tick("NSE", "NIFTY 50"), "md.tick.NSE.NIFTY~2050");
    assert_eq!(depth("NSE", "M&M.X"), "md.depth.NSE.M&M~2EX");
    assert_eq!(escape_token("a~é"), "a~7E~C3~A9");
}

#[test]
fn replies_never_go_into_protected_subjects() {
    assert!(is_safe_reply("_INBOX.abc.1"));
    assert!(is_safe_reply("my-app.replies.7"));
    for bad in [
        "audit.credential.u1",
        "events.orders.u1",
        "orders.u1.place",
        "md.tick.NSE.X",
        "$JS.API.STREAM.DELETE.AUDIT",
        "pinnacle.cache.invalidate",
        "pinnacle.tokens.revoked",
        "pinnacle.barrier",
    ] {
        assert!(!is_safe_reply(bad), "{bad}");
    }
}

#[test]
fn order_subjects_parse_back() {
    let subject = order("3f1c-user", verbs::PLACE);
    assert_eq!(subject, "orders.3f1c-user.place");
    let parsed = parse_order(&subject).expect("parses");
    assert_eq!(parsed.verb, OrderVerb::Place);
    assert_eq!(parse_order("orders.u.plac"), None);
    assert!(parsed.is_for("3f1c-user"));
    assert!(!parsed.is_for("3f1c-usex"));
    assert_eq!(parse_order("orders.a.b.c"), None);
    assert_eq!(parse_order("orders..place"), None);
    assert_eq!(parse_order("md.tick.NSE"), None);
    let weird = parse_order("orders.a~2Eb.get").expect("parses");
    assert!(weird.is_for("a.b"));
}

/// Every spelling of a user id other than the canonical one names somebody else.
#[test]
fn only_the_canonical_spelling_of_a_user_id_matches() {
    let id = "3f1cb2e0-9d4a-4c1e-8f00-abcdefabcdef";
    let mut spellings = vec![
        id.to_ascii_uppercase(),
        format!(" {id}"),
        format!("{id}~20"),
        format!("{id}~00"),
        id.replace('-', "~2D"),
        id.replace('-', "%2D"),
        id.replace('-', "~2d"),
        id.replace('b', "~62"),
        id.replace('b', "~+62"),
        id.replace('a', "\u{430}"), // Cyrillic a, a look-alike
        id.replace('e', "~C3~A9"),
        id.replacen('3', "~33", 1),
    ];
    // And each character in turn escaped as `~HH` (upper and lower case).
    for (i, c) in id.char_indices() {
        let byte = c as u32;
        spellings.push(format!("{}~{byte:02X}{}", &id[..i], &id[i + 1..]));
        spellings.push(format!("{}~{byte:02x}{}", &id[..i], &id[i + 1..]));
    }
    for spelling in spellings {
        let subject = format!("orders.{spelling}.place");
        if let Some(parsed) = parse_order(&subject) {
            assert!(!parsed.is_for(id), "{subject} matched {id}");
        }
        assert_ne!(unescape_token(&spelling).as_deref(), Some(id), "{spelling}");
    }
    assert!(parse_order(&order(id, verbs::PLACE)).is_some_and(|p| p.is_for(id)));
    for bad in ["~62", "a~2e", "~+2", "~", "~2", "~C3"] {
        assert_eq!(unescape_token(bad), None, "{bad}");
    }
}
