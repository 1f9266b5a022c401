//! Golden frames decoded by Angel One's own Python SDK (`smartapi-python==1.5.5`), compared
//! field by field with our decoder. The frames and the SDK's dicts live in
//! `tests/golden/ticks.json`, written by `tests/python/golden_ticks.py` (which
//! `scripts/python-check.sh` reruns with `--check`).
//!
//! Every SDK key must be checked (an unchecked key fails the test). Deliberate differences,
//! all documented in SPEC §8.5–8.7, are marked `SDK QUIRK`.

use std::collections::BTreeSet;

use pinnacle_smartapi::ticks::{decode, BestFive, DepthLevel, Packet, Quote, SnapQuote};
use serde_json::{Map, Value};

const GOLDEN: &str = include_str!("golden/ticks.json");

/// One SDK dict, remembering which keys the test looked at.
struct Sdk<'a> {
    name: &'a str,
    map: &'a Map<String, Value>,
    used: BTreeSet<&'a str>,
}

impl<'a> Sdk<'a> {
    fn get(&mut self, key: &'a str) -> &'a Value {
        self.used.insert(key);
        self.map
            .get(key)
            .unwrap_or_else(|| panic!("{}: SDK dict has no {key}", self.name))
    }
    fn i64(&mut self, key: &'a str) -> i64 {
        let name = self.name;
        self.get(key)
            .as_i64()
            .unwrap_or_else(|| panic!("{name}: {key} is not an integer"))
    }
    fn f64(&mut self, key: &'a str) -> f64 {
        let name = self.name;
        self.get(key)
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: {key} is not a number"))
    }
    fn list(&mut self, key: &'a str) -> &'a Vec<Value> {
        let name = self.name;
        self.get(key)
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {key} is not a list"))
    }
    fn check_all_used(&self) {
        let unchecked: Vec<_> = self
            .map
            .keys()
            .filter(|k| !self.used.contains(k.as_str()))
            .collect();
        assert!(
            unchecked.is_empty(),
            "{}: unchecked SDK keys {unchecked:?}",
            self.name
        );
    }
}

fn field(entry: &Value, key: &str) -> i64 {
    entry[key]
        .as_i64()
        .unwrap_or_else(|| panic!("book entry has no integer {key}: {entry}"))
}

fn check_quote(sdk: &mut Sdk<'_>, q: &Quote) {
    let n = sdk.name;
    assert_eq!(
        sdk.i64("last_traded_quantity"),
        q.last_traded_quantity,
        "{n}"
    );
    assert_eq!(
        sdk.i64("average_traded_price"),
        q.average_traded_price,
        "{n}"
    );
    assert_eq!(sdk.i64("volume_trade_for_the_day"), q.volume, "{n}");
    assert_eq!(sdk.f64("total_buy_quantity"), q.total_buy_quantity, "{n}");
    assert_eq!(sdk.f64("total_sell_quantity"), q.total_sell_quantity, "{n}");
    assert_eq!(sdk.i64("open_price_of_the_day"), q.open, "{n}");
    assert_eq!(sdk.i64("high_price_of_the_day"), q.high, "{n}");
    assert_eq!(sdk.i64("low_price_of_the_day"), q.low, "{n}");
    assert_eq!(sdk.i64("closed_price"), q.close, "{n}");
}

fn check_best_five(name: &str, sdk: &[Value], ours: &[BestFive], seen: &mut BTreeSet<i64>) {
    assert_eq!(sdk.len(), ours.len(), "{name}: best-five group sizes");
    for (s, o) in sdk.iter().zip(ours) {
        // Python reads the flag and the order count as unsigned `<H`, and so do we.
        assert_eq!(field(s, "flag"), i64::from(o.flag), "{name}: flag");
        assert_eq!(field(s, "no of orders"), i64::from(o.orders), "{name}");
        assert_eq!(field(s, "quantity"), o.quantity, "{name}: quantity");
        assert_eq!(field(s, "price"), o.price, "{name}: price");
        seen.insert(i64::from(o.orders));
    }
}

fn check_snap(sdk: &mut Sdk<'_>, s: &SnapQuote, orders_seen: &mut BTreeSet<i64>) {
    let n = sdk.name;
    assert_eq!(
        sdk.i64("last_traded_timestamp"),
        s.last_traded_timestamp_s,
        "{n}"
    );
    assert_eq!(sdk.i64("open_interest"), s.open_interest, "{n}");
    // SDK QUIRK: Python unpacks the OI change % with `<q`, so it reports the IEEE-754 bit
    // pattern as an integer. We read the double; the bits must agree.
    assert_eq!(
        sdk.i64("open_interest_change_percentage"),
        s.open_interest_change_pct.to_bits() as i64,
        "{n}"
    );
    assert_eq!(sdk.i64("upper_circuit_limit"), s.upper_circuit, "{n}");
    assert_eq!(sdk.i64("lower_circuit_limit"), s.lower_circuit, "{n}");
    assert_eq!(sdk.i64("52_week_high_price"), s.week_52_high, "{n}");
    assert_eq!(sdk.i64("52_week_low_price"), s.week_52_low, "{n}");
    let buy = sdk.list("best_5_buy_data");
    check_best_five(n, buy, &s.best_five_buy, orders_seen);
    let sell = sdk.list("best_5_sell_data");
    check_best_five(n, sell, &s.best_five_sell, orders_seen);
}

fn check_depth_levels(name: &str, sdk: &[Value], ours: &[DepthLevel]) {
    assert_eq!(sdk.len(), 20, "{name}");
    assert_eq!(ours.len(), 20, "{name}");
    for (s, o) in sdk.iter().zip(ours) {
        assert_eq!(field(s, "quantity"), i64::from(o.quantity), "{name}");
        assert_eq!(field(s, "price"), i64::from(o.price), "{name}");
        assert_eq!(field(s, "num_of_orders"), i64::from(o.orders), "{name}");
    }
}

#[test]
fn every_golden_frame_matches_the_python_sdk() {
    let vectors: Vec<Value> = serde_json::from_str(GOLDEN).expect("golden JSON parses");
    assert!(vectors.len() >= 16, "golden file lost vectors");
    let mut modes_seen = BTreeSet::new();
    let mut exchanges_seen = BTreeSet::new();
    let mut orders_seen = BTreeSet::new();
    for v in &vectors {
        let name = v["name"].as_str().expect("name");
        let frame = hex::decode(v["hex"].as_str().expect("hex")).expect("hex decodes");
        let map = v["sdk"].as_object().expect("sdk dict");
        let mut sdk = Sdk {
            name,
            map,
            used: BTreeSet::new(),
        };
        let decoded = decode(&frame).unwrap_or_else(|e| panic!("{name}: {e}"));
        let packet = &decoded.packet;
        let mode = packet.mode();
        modes_seen.insert(mode);
        exchanges_seen.insert(packet.exchange_type().code());

        // The SDK ignores bytes past the mode's length; we count them.
        assert_eq!(decoded.trailing_bytes, frame.len() - mode.packet_len());
        assert_eq!(
            name.contains("trailing"),
            decoded.trailing_bytes > 0,
            "{name}"
        );

        assert_eq!(
            sdk.i64("subscription_mode"),
            i64::from(mode.code()),
            "{name}"
        );
        assert_eq!(
            sdk.i64("exchange_type"),
            i64::from(packet.exchange_type().code()),
            "{name}"
        );
        assert_eq!(sdk.get("token").as_str(), Some(packet.token()), "{name}");

        if let Some(ltp) = packet.ltp() {
            assert_eq!(sdk.get("subscription_mode_val").as_str(), Some(mode.name()));
            assert_eq!(sdk.i64("sequence_number"), ltp.sequence_number, "{name}");
            assert_eq!(
                sdk.i64("exchange_timestamp"),
                ltp.exchange_timestamp_ms,
                "{name}"
            );
            assert_eq!(
                sdk.i64("last_traded_price"),
                ltp.last_traded_price,
                "{name}"
            );
        }
        match packet {
            Packet::Ltp(_) => {}
            Packet::Quote(q) => check_quote(&mut sdk, q),
            Packet::SnapQuote(s) => {
                check_quote(&mut sdk, &s.quote);
                check_snap(&mut sdk, s, &mut orders_seen);
            }
            Packet::Depth(d) => {
                // SDK QUIRK: Python 1.5.5 drops bytes 27..35 and reports bytes 35..43 as
                // both `exchange_timestamp` and `packet_received_time`. We follow Java/JS
                // (SPEC §8.6): exchange timestamp at 27, packet-received time at 35.
                assert_eq!(sdk.i64("exchange_timestamp"), d.packet_received_time_ms);
                assert_eq!(sdk.i64("packet_received_time"), d.packet_received_time_ms);
                let at_27: [u8; 8] = frame[27..35].try_into().expect("8 bytes");
                assert_eq!(d.exchange_timestamp_ms, i64::from_le_bytes(at_27), "{name}");
                assert_ne!(d.exchange_timestamp_ms, d.packet_received_time_ms, "{name}");
                check_depth_levels(name, sdk.list("depth_20_buy_data"), &d.bids);
                check_depth_levels(name, sdk.list("depth_20_sell_data"), &d.asks);
            }
        }
        sdk.check_all_used();
    }
    assert_eq!(modes_seen.len(), 4, "every mode has a golden frame");
    assert!(
        exchanges_seen.contains(&13),
        "currency (13) has a golden frame"
    );
    for extreme in [0, 1, 32_767, 32_768, 65_535] {
        assert!(
            orders_seen.contains(&extreme),
            "a golden best-five entry has {extreme} orders: {orders_seen:?}"
        );
    }
    assert!(
        exchanges_seen.len() >= 6,
        "several exchange types: {exchanges_seen:?}"
    );
}
