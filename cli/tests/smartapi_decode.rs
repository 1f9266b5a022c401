//! `pinnacle smartapi decode HEX`, run as the built binary: a good frame prints JSON, bad
//! input exits non-zero with a one-line message and no panic.

use std::process::{Command, Output};

use serde_json::Value;

/// A currency (exchange type 13) LTP tick: token 1180, sequence 77, LTP 832525000.
const CDE_LTP: &str = "010d313138300000000000000000000000000000000000000000004d0000000000000002a83e4393010000c8529f3100000000";

fn pinnacle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pinnacle"))
        .args(args)
        .output()
        .expect("runs the pinnacle binary")
}

#[test]
fn good_frame_prints_json_with_rupees() {
    let out = pinnacle(&["smartapi", "decode", &format!("0x{CDE_LTP}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(json["mode"], "LTP");
    assert_eq!(json["exchange_type"], "cde_fo");
    assert_eq!(json["token"], "1180");
    assert_eq!(json["sequence_number"], 77);
    assert_eq!(json["last_traded_price"], 832_525_000);
    assert_eq!(json["price_divisor"], 10_000_000);
    assert_eq!(json["rupees"]["last_traded_price"], 83.2525);
    assert_eq!(json["trailing_bytes"], 0);
}

#[test]
fn spaced_hex_in_several_arguments_works() {
    let spaced: Vec<String> = CDE_LTP
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let mut args = vec!["smartapi", "decode"];
    args.extend(spaced.iter().map(String::as_str));
    let out = pinnacle(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_input_exits_non_zero_with_one_line() {
    for (input, expected) in [
        ("0x0401", "DEPTH frame too short: expected 443 bytes, got 2"),
        ("zz", "bad hex"),
        ("123", "bad hex"),
        ("07", "unknown subscription mode 7"),
    ] {
        let out = pinnacle(&["smartapi", "decode", input]);
        assert!(!out.status.success(), "{input} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{input}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{input}: {stderr}");
        assert_eq!(stderr.matches(expected).count(), 1, "said twice: {stderr}");
        assert!(!stderr.contains("panicked"), "{input}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}
