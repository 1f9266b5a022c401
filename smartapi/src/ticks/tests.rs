//! Unit tests and proptests for the tick decoder. Frames are built here by hand from the
//! layout; the library itself has no encoder.

use proptest::prelude::*;

use super::layout as at;
use super::*;

/// A frame under construction: zeroed bytes of the mode's length.
struct Frame(Vec<u8>);

impl Frame {
    fn new(mode: u8, exchange: u8, token: &[u8]) -> Self {
        let len = Mode::from_code(mode).map_or(at::LTP_LEN, Mode::packet_len);
        let mut buf = vec![0u8; len];
        buf[at::MODE] = mode;
        buf[at::EXCHANGE_TYPE] = exchange;
        buf[at::TOKEN..at::TOKEN + token.len()].copy_from_slice(token);
        Self(buf)
    }
    fn u16(mut self, off: usize, v: u16) -> Self {
        self.0[off..off + 2].copy_from_slice(&v.to_le_bytes());
        self
    }
    fn i16(mut self, off: usize, v: i16) -> Self {
        self.0[off..off + 2].copy_from_slice(&v.to_le_bytes());
        self
    }
    fn i32(mut self, off: usize, v: i32) -> Self {
        self.0[off..off + 4].copy_from_slice(&v.to_le_bytes());
        self
    }
    fn i64(mut self, off: usize, v: i64) -> Self {
        self.0[off..off + 8].copy_from_slice(&v.to_le_bytes());
        self
    }
    fn f64(mut self, off: usize, v: f64) -> Self {
        self.0[off..off + 8].copy_from_slice(&v.to_le_bytes());
        self
    }
}

fn decode_ok(frame: &[u8]) -> Decoded {
    decode(frame).expect("valid frame")
}

#[test]
fn ltp_packet() {
    let f = Frame::new(1, 1, b"2885")
        .i64(at::SEQUENCE_NUMBER, 7)
        .i64(at::EXCHANGE_TIMESTAMP, 1_700_000_000_123)
        .i64(at::LAST_TRADED_PRICE, 245_050);
    let d = decode_ok(&f.0);
    assert_eq!(d.trailing_bytes, 0);
    assert_eq!(
        d.packet,
        Packet::Ltp(Ltp {
            exchange_type: ExchangeType::NseCm,
            token: "2885".into(),
            sequence_number: 7,
            exchange_timestamp_ms: 1_700_000_000_123,
            last_traded_price: 245_050,
        })
    );
    assert_eq!(
        d.packet.price_fields(),
        vec![("last_traded_price", 245_050)]
    );
}

#[test]
fn quote_packet_reads_doubles_and_ohlc() {
    let f = Frame::new(2, 2, b"43512")
        .i64(at::LAST_TRADED_PRICE, -5)
        .i64(at::LAST_TRADED_QUANTITY, 50)
        .i64(at::AVERAGE_TRADED_PRICE, 1234)
        .i64(at::VOLUME, 99_000)
        .f64(at::TOTAL_BUY_QUANTITY, 1.5e6)
        .f64(at::TOTAL_SELL_QUANTITY, 2.25)
        .i64(at::OPEN, 1)
        .i64(at::HIGH, 2)
        .i64(at::LOW, 3)
        .i64(at::CLOSE, 4);
    let Packet::Quote(q) = decode_ok(&f.0).packet else {
        panic!("not a quote")
    };
    assert_eq!(q.ltp.last_traded_price, -5);
    assert_eq!(q.ltp.exchange_type, ExchangeType::NseFo);
    assert_eq!(
        (q.last_traded_quantity, q.average_traded_price, q.volume),
        (50, 1234, 99_000)
    );
    assert_eq!((q.total_buy_quantity, q.total_sell_quantity), (1.5e6, 2.25));
    assert_eq!((q.open, q.high, q.low, q.close), (1, 2, 3, 4));
}

#[test]
fn snap_quote_groups_best_five_by_flag_in_wire_order() {
    let mut f = Frame::new(3, 3, b"500325")
        .i64(at::LAST_TRADED_TIMESTAMP, 1_700_000_000)
        .i64(at::OPEN_INTEREST, 42)
        .f64(at::OPEN_INTEREST_CHANGE_PCT, -1.25)
        .i64(at::UPPER_CIRCUIT, 11)
        .i64(at::LOWER_CIRCUIT, 12)
        .i64(at::WEEK_52_HIGH, 13)
        .i64(at::WEEK_52_LOW, 14);
    let flags = [1, 0, 1, u16::MAX, 0, 0, 1, 0, 2, 0];
    for (i, flag) in flags.into_iter().enumerate() {
        let base = at::BEST_FIVE + i * at::BEST_FIVE_ENTRY_LEN;
        f = f
            .u16(base + at::BEST_FIVE_FLAG, flag)
            .i64(base + at::BEST_FIVE_QUANTITY, i as i64 * 10)
            .i64(base + at::BEST_FIVE_PRICE, 1000 + i as i64)
            .u16(base + at::BEST_FIVE_ORDERS, i as u16);
    }
    let Packet::SnapQuote(s) = decode_ok(&f.0).packet else {
        panic!("not a snap quote")
    };
    assert_eq!(s.last_traded_timestamp_s, 1_700_000_000);
    assert_eq!(s.open_interest, 42);
    assert_eq!(s.open_interest_change_pct, -1.25);
    let prices = |v: &[BestFive]| v.iter().map(|e| e.price).collect::<Vec<_>>();
    assert_eq!(prices(&s.best_five_buy), vec![1000, 1002, 1003, 1006, 1008]);
    assert_eq!(
        prices(&s.best_five_sell),
        vec![1001, 1004, 1005, 1007, 1009]
    );
    assert_eq!(s.best_five_buy[2].flag, u16::MAX);
    assert_eq!(
        (
            s.upper_circuit,
            s.lower_circuit,
            s.week_52_high,
            s.week_52_low
        ),
        (11, 12, 13, 14)
    );
}

#[test]
fn best_five_flag_and_orders_are_unsigned_16_bit() {
    // The extremes of a u16: Angel One's parser reads `<H`, so 0xffff is 65535 orders,
    // never -1, and 0x8000 is 32768 (the first value a signed read would turn negative).
    let extremes = [0u16, 1, 32_767, 32_768, u16::MAX];
    let mut f = Frame::new(3, 1, b"2885");
    for i in 0..at::BEST_FIVE_ENTRIES {
        let base = at::BEST_FIVE + i * at::BEST_FIVE_ENTRY_LEN;
        let flag = if i < 5 { 1 } else { extremes[i - 5] };
        f = f
            .u16(base + at::BEST_FIVE_FLAG, flag)
            .i64(base + at::BEST_FIVE_QUANTITY, 1)
            .u16(base + at::BEST_FIVE_ORDERS, extremes[i % 5]);
    }
    let Packet::SnapQuote(s) = decode_ok(&f.0).packet else {
        panic!("not a snap quote")
    };
    let orders = |v: &[BestFive]| v.iter().map(|e| e.orders).collect::<Vec<_>>();
    let flags = |v: &[BestFive]| v.iter().map(|e| e.flag).collect::<Vec<_>>();
    // Flag 0 is the only sell; 32768 and 65535 are buys like 1.
    assert_eq!(
        flags(&s.best_five_buy),
        vec![1, 1, 1, 1, 1, 1, 32_767, 32_768, 65_535]
    );
    assert_eq!(
        orders(&s.best_five_buy),
        vec![0, 1, 32_767, 32_768, 65_535, 1, 32_767, 32_768, 65_535]
    );
    assert_eq!(orders(&s.best_five_sell), vec![0]);
    let json = serde_json::to_value(s.best_five_buy[4]).expect("serialises");
    assert_eq!(json["orders"], 65_535);
}

#[test]
fn depth_packet_has_its_own_layout() {
    let mut f = Frame::new(4, 1, b"1594")
        .i64(at::DEPTH_EXCHANGE_TIMESTAMP, 1_700_000_000_001)
        .i64(at::DEPTH_PACKET_RECEIVED, 1_700_000_000_999);
    for i in 0..at::DEPTH_LEVELS {
        let bid = at::DEPTH_BIDS + i * at::DEPTH_LEVEL_LEN;
        let ask = at::DEPTH_ASKS + i * at::DEPTH_LEVEL_LEN;
        f = f
            .i32(bid + at::DEPTH_QUANTITY, 100 + i as i32)
            .i32(bid + at::DEPTH_PRICE, 5000 - i as i32)
            .i16(bid + at::DEPTH_ORDERS, i as i16)
            .i32(ask + at::DEPTH_QUANTITY, 200 + i as i32)
            .i32(ask + at::DEPTH_PRICE, 5001 + i as i32)
            .i16(ask + at::DEPTH_ORDERS, -(i as i16));
    }
    let Packet::Depth(d) = decode_ok(&f.0).packet else {
        panic!("not depth")
    };
    assert_eq!(d.exchange_timestamp_ms, 1_700_000_000_001);
    assert_eq!(d.packet_received_time_ms, 1_700_000_000_999);
    assert_eq!((d.bids.len(), d.asks.len()), (20, 20));
    assert_eq!(
        d.bids[19],
        DepthLevel {
            quantity: 119,
            price: 4981,
            orders: 19
        }
    );
    assert_eq!(d.asks[3].orders, -3);
}

#[test]
fn token_of_25_chars_has_no_nul_and_padding_is_dropped() {
    let long = b"ABCDEFGHIJKLMNOPQRSTUVWXY";
    let d = decode_ok(&Frame::new(1, 5, long).0);
    assert_eq!(d.packet.token(), "ABCDEFGHIJKLMNOPQRSTUVWXY");
    // Bytes after the first NUL are padding, whatever they hold.
    let mut f = Frame::new(1, 5, b"12\0\xff").0;
    f[at::TOKEN + 10] = b'x';
    assert_eq!(decode_ok(&f).packet.token(), "12");
}

#[test]
fn trailing_bytes_are_accepted_and_counted() {
    let mut f = Frame::new(2, 13, b"1").0;
    f.extend_from_slice(&[9, 9, 9]);
    let d = decode_ok(&f);
    assert_eq!(d.trailing_bytes, 3);
    assert_eq!(d.packet.mode(), Mode::Quote);
}

#[test]
fn oversized_frames_are_refused_before_reading() {
    let mut f = Frame::new(2, 13, b"1").0;
    f.resize(MAX_FRAME_BYTES, 0);
    assert!(decode(&f).is_ok());
    f.push(0);
    assert_eq!(
        decode(&f),
        Err(TickError::TooLong {
            got: MAX_FRAME_BYTES + 1,
            limit: MAX_FRAME_BYTES
        })
    );
}

#[test]
fn errors_name_the_problem() {
    assert_eq!(decode(&[]), Err(TickError::Empty));
    assert_eq!(decode(&[9; 500]), Err(TickError::UnknownMode(9)));
    assert_eq!(
        decode(&Frame::new(1, 6, b"1").0),
        Err(TickError::UnknownExchangeType(6))
    );
    assert_eq!(
        decode(&Frame::new(3, 1, b"1").0[..378]),
        Err(TickError::TooShort {
            mode: Mode::SnapQuote,
            expected: 379,
            got: 378
        })
    );
    assert_eq!(
        decode(&Frame::new(1, 1, b"ab\xe9").0),
        Err(TickError::NonAsciiToken {
            offset: 2,
            byte: 0xe9
        })
    );
    let msg = decode(&[4, 1])
        .map(|_| ())
        .expect_err("too short")
        .to_string();
    assert_eq!(msg, "DEPTH frame too short: expected 443 bytes, got 2");
}

#[test]
fn price_divisor_is_100_except_currency() {
    assert_eq!(ExchangeType::NseCm.price_divisor(), 100);
    assert_eq!(ExchangeType::McxFo.price_divisor(), 100);
    assert_eq!(ExchangeType::CdeFo.price_divisor(), 10_000_000);
    assert_eq!(ExchangeType::CdeFo.to_rupees(832_525_000), 83.2525);
    assert_eq!(ExchangeType::NseCm.to_rupees(245_050), 2450.5);
}

#[test]
fn serialises_with_mode_tag_and_flat_fields() {
    let f = Frame::new(1, 13, b"1").i64(at::LAST_TRADED_PRICE, 3);
    let json = serde_json::to_value(decode_ok(&f.0)).expect("serialises");
    assert_eq!(json["mode"], "LTP");
    assert_eq!(json["exchange_type"], "cde_fo");
    assert_eq!(json["last_traded_price"], 3);
    assert_eq!(json["trailing_bytes"], 0);
}

fn valid_frame() -> impl Strategy<Value = Vec<u8>> {
    (1u8..=4, prop::sample::select(vec![1u8, 2, 3, 4, 5, 7, 13]))
        .prop_flat_map(|(mode, exchange)| {
            let len = Mode::from_code(mode).map_or(0, Mode::packet_len);
            (
                Just(mode),
                Just(exchange),
                prop::collection::vec(any::<u8>(), len..len + 8),
                prop::collection::vec(b'0'..=b'z', 0..=25),
            )
        })
        .prop_map(|(mode, exchange, mut body, token)| {
            body[0] = mode;
            body[1] = exchange;
            body[at::TOKEN..at::TOKEN + at::TOKEN_LEN].fill(0);
            body[at::TOKEN..at::TOKEN + token.len()].copy_from_slice(&token);
            body
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn valid_frames_decode_and_truncations_are_too_short(frame in valid_frame(), cut in any::<prop::sample::Index>()) {
        let d = decode(&frame).expect("valid frame decodes");
        let len = d.packet.mode().packet_len();
        prop_assert_eq!(d.trailing_bytes, frame.len() - len);
        let cut = 1 + cut.index(len - 1);
        prop_assert_eq!(
            decode(&frame[..cut]),
            Err(TickError::TooShort { mode: d.packet.mode(), expected: len, got: cut })
        );
    }
}
