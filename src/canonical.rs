//! Canonical JSON: the one text of a JSON value that the mutation checksum
//! ([`crate::payload_checksum`]) hashes. PROTOCOL.md ("Canonical JSON")
//! states the rule for other implementations and `docs/checksum-vectors.json`
//! holds test vectors; this writer is the rule, written out so that it does
//! not depend on how a serde_json version (or a feature some dependency turns
//! on, such as `preserve_order`) happens to print a value.
//!
//! The rule is what every build so far has hashed (serde_json 1.0's compact
//! output with the keys sorted), so stored and queued checksums stay valid:
//!
//! * no whitespace; object members sorted by key, comparing the keys' UTF-8
//!   bytes (that is, by Unicode code point; RFC 8785 compares UTF-16 code
//!   units instead, which orders U+E000..U+FFFF after the astral planes);
//! * strings: `"` and `\` escaped as `\"` and `\\`; U+0008, U+0009, U+000A,
//!   U+000C, U+000D as `\b \t \n \f \r`; every other U+0000..U+001F as
//!   `\u00xx` (lower-case hex); every other character as itself in UTF-8
//!   (`/`, U+007F, U+2028 and all non-ASCII included);
//! * a number that was an integer token (no `.`, no exponent) within
//!   `-2^63..2^64-1`: its decimal digits, without leading zeros or `+`
//!   (`-0` excepted: it is the double -0);
//! * any other number (a fraction, an exponent, an integer out of that
//!   range) is the IEEE 754 double nearest to it, written with the fewest
//!   significant digits that read back as that double (of two such digit
//!   strings equally near it, the one ending in an even digit), laid out
//!   by its decimal exponent `E` (`d.ddd × 10^E`): for `-5 <= E <= 15` in
//!   positional form with at least one digit after the point (`100.0`,
//!   `0.00001`, `1000000000000000.0`); else `d.ddde+E` / `d.ddde-E` (`1e+16`,
//!   `1.5e-7`, `5e-324`); zero is `0.0` or `-0.0`.

use serde_json::{Map, Number, Value};
use std::fmt::Write as _;

/// The canonical text of `value`.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Appends the canonical text of `value` to `out`.
pub fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

/// Appends the canonical text of an object (members sorted by key bytes).
pub fn write_object(out: &mut String, map: &Map<String, Value>) {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push('{');
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

/// Appends a string with the escapes of the rule.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(f) = n.as_f64() {
        write_double(out, f);
    }
}

/// The shortest significant digits that read back as the positive finite
/// `f` (no leading or trailing zeros) and the decimal exponent `E` of the
/// first digit. Where two shortest strings are equally near `f`, the one
/// ending in an even digit, as ECMAScript's `Number::toString` and serde_json
/// choose (Ryū); Rust's `{:e}` rounds such a tie up instead
/// (1867739535303450.25 is `…450.2` here, `…450.3` there).
fn shortest_digits(f: f64) -> (String, i32) {
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(f);
    let (mantissa, exp) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().expect("ryu prints an integer exponent")),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = int.chars().chain(frac.chars()).collect();
    let leading = all.len() - all.trim_start_matches('0').len();
    let digits = all[leading..].trim_end_matches('0').to_string();
    (digits, int.len() as i32 - 1 - leading as i32 + exp)
}

/// Appends a finite double as the rule lays it out. (JSON has no NaN or
/// infinity, and serde_json's numbers are always finite.)
pub fn write_double(out: &mut String, f: f64) {
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    let (digits, exp) = shortest_digits(f.abs());
    if f < 0.0 {
        out.push('-');
    }
    if (-5..=15).contains(&exp) {
        let len = digits.len() as i32;
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else if len <= exp + 1 {
            out.push_str(&digits);
            for _ in 0..(exp + 1 - len) {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            let (int, frac) = digits.split_at((exp + 1) as usize);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        if exp > 0 {
            out.push('+');
        }
        let _ = write!(out, "{exp}");
    }
}

// Native only: proptest and the vectors file on disk.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(text: &str) -> String {
        to_canonical_string(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn numbers_follow_the_layout_rule() {
        for (text, want) in [
            ("1", "1"),
            ("1.0", "1.0"),
            ("-0", "-0.0"),
            ("0", "0"),
            ("1e2", "100.0"),
            ("1E+2", "100.0"),
            ("0.00001", "0.00001"),
            ("0.000015", "0.000015"),
            ("0.000001", "1e-6"),
            ("1.5e-7", "1.5e-7"),
            ("1e15", "1000000000000000.0"),
            ("1e16", "1e+16"),
            ("123.456", "123.456"),
            ("-2.5e10", "-25000000000.0"),
            ("18446744073709551615", "18446744073709551615"),
            ("18446744073709551616", "1.8446744073709552e+19"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("-9223372036854775809", "-9.223372036854776e+18"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            // Exactly halfway between the two shortest candidates: the even
            // last digit, as serde_json and JavaScript print it (a seed CI
            // found; Rust's `{:e}` prints `…450.3`).
            ("1867739535303450.25", "1867739535303450.2"),
            ("1867739535303450.75", "1867739535303450.8"),
        ] {
            assert_eq!(canon(text), want, "{text}");
        }
    }

    #[test]
    fn decimal_text_is_read_as_the_nearest_double() {
        // Without serde_json's `float_roundtrip` these read one ulp off.
        assert_eq!(canon("2.2250738585072011e-308"), "2.225073858507201e-308");
        assert_eq!(
            canon("1.00000000000000011102230246251565404236316680908203125"),
            "1.0"
        );
    }

    #[test]
    fn keys_sort_by_code_point_and_strings_escape_only_what_json_needs() {
        let v = json!({"b": 1, "a": {"\u{ffff}": 1, "\u{10000}": 2, "B": 3}, "é": "\u{7f}\u{2028}/\"\\\u{1}\n"});
        assert_eq!(
            to_canonical_string(&v),
            "{\"a\":{\"B\":3,\"\u{ffff}\":1,\"\u{10000}\":2},\"b\":1,\"é\":\"\u{7f}\u{2028}/\\\"\\\\\\u0001\\n\"}"
        );
    }

    /// Inputs of `docs/checksum-vectors.json`: (name, JSON text).
    const VALUE_INPUTS: &[(&str, &str)] = &[
        (
            "keys sorted, whitespace dropped",
            r#"{ "b": 1, "a": [true, false, null], "c": {} }"#,
        ),
        (
            "nested objects sorted too",
            r#"{"z": {"y": 1, "x": {"b": 2, "a": 1}}, "a": []}"#,
        ),
        (
            "keys compare by code point (UTF-8 bytes), not UTF-16",
            "{\"\\ud800\\udc00\": 2, \"\\uffff\": 1, \"B\": 3, \"a\": 4, \"\u{e9}\": 5}",
        ),
        ("a repeated key: the last one counts", r#"{"a": 1, "a": 2}"#),
        ("short escapes", r#""\" \\ \b \f \n \r \t""#),
        (
            "other controls as lower-case \\u00xx",
            r#""\u0000 \u001F \u000b""#,
        ),
        (
            "escaped non-ASCII is written as UTF-8",
            r#""\u00e9 \u20ac \ud83d\udece \u2028 \u007f \/""#,
        ),
        ("raw non-ASCII stays as it is", "\"caf\u{e9} \u{1f6ce}\""),
        (
            "integer tokens",
            "[0, 1, -1, 42, 9007199254740993, 18446744073709551615, -9223372036854775808]",
        ),
        (
            "integer tokens out of 64-bit range are doubles",
            "[18446744073709551616, -9223372036854775809, 100000000000000000000000]",
        ),
        ("-0 is the double -0", "[-0, -0.0, 0.0]"),
        (
            "fractions and exponents are doubles",
            "[1.0, 1.5, 100e0, 1E+2, 0.1, 123.456, -2.5e10, 0.30000000000000004]",
        ),
        (
            "positional from 1e-5 to below 1e16",
            "[0.00001, 0.000015, 1e15, 9999999999999998.0, 123456789.125]",
        ),
        (
            "exponent form outside it",
            "[0.000001, 1.5e-7, 1e16, 1.2345678901234567e20, 1e21, 5e-324, 1.7976931348623157e308]",
        ),
        (
            "the nearest double, rounding ties to even",
            "[1.00000000000000011102230246251565404236316680908203125, 2.2250738585072011e-308]",
        ),
        (
            "shortest digits that read back",
            "[0.1e1, 3.14159265358979323846, 1.1000000000000000888]",
        ),
        (
            "two shortest digit strings equally near: the even one",
            "[1867739535303450.25, 1867739535303450.75, 5e-324]",
        ),
    ];

    /// (name, collection, entity id, kind, payload JSON text or None).
    const MUTATION_INPUTS: &[(&str, &str, &str, &str, Option<&str>)] = &[
        ("patch", "rooms", "101", "patch", Some(r#"{"status": "clean"}"#)),
        ("create with nested fields", "rooms", "101", "create", Some(r#"{"status": "dirty", "floor": 1, "rate": 129.5, "tags": ["sea", "quiet"], "notes": {"by": "Ana", "at": 1732540000000}}"#)),
        ("patch removing a field (null)", "rooms", "101", "patch", Some(r#"{"minibar": null}"#)),
        ("delete: p is null", "rooms", "101", "delete", None),
        ("append with non-ASCII and escapes", "sales", "01HF3Z6Q0X8V3M9K2B7C4D5E6F", "append", Some("{\"item\": \"caf\u{e9} cr\u{e8}me \u{1f6ce}\", \"note\": \"line1\\nline2 \\\"q\\\"\", \"total\": 12.0}")),
        ("entity id with escapes", "rooms", "wing \"A\"\\1\u{e9}", "patch", Some(r#"{"x": 1}"#)),
        ("empty payload", "rooms", "7", "create", Some("{}")),
        ("key order of the payload does not matter", "rooms", "101", "patch", Some(r#"{"z": 1, "a": 2}"#)),
    ];

    fn kind(name: &str) -> MutationKind {
        serde_json::from_value(Value::String(name.into())).unwrap()
    }

    fn vectors() -> Value {
        let values: Vec<Value> = VALUE_INPUTS
            .iter()
            .map(|(name, text)| json!({"name": name, "json": text, "canonical": canon(text)}))
            .collect();
        let mutations: Vec<Value> = MUTATION_INPUTS
            .iter()
            .map(|(name, c, e, k, p)| {
                let payload: Option<Fields> = p.map(|t| serde_json::from_str(t).unwrap());
                json!({
                    "name": name, "collection": c, "entity_id": e, "kind": k, "payload": p,
                    "canonical": crate::canonical_payload(c, e, kind(k), payload.as_ref()),
                    "checksum": crate::payload_checksum(c, e, kind(k), payload.as_ref()),
                })
            })
            .collect();
        json!({
            "about": "Test vectors of the canonical JSON behind the mutation checksum (PROTOCOL.md, \"Canonical JSON\"). `json` and `payload` are JSON texts: the rule depends on how a number is written (1 is an integer, 1.0 a double), which a parsed value may no longer tell. `canonical` is the canonical text of the value (values) or of {\"c\",\"e\",\"k\",\"p\"} (mutations); `checksum` is the lower-case hex SHA-256 of its UTF-8 bytes. Checked by the core (src/canonical.rs) and by docs/checksum-vectors.test.mjs; regenerate with TIDESYNC_BLESS=1 cargo test --lib canonical.",
            "values": values,
            "mutations": mutations,
        })
    }

    use crate::protocol::{Fields, MutationKind};

    const VECTORS_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/checksum-vectors.json");

    /// The committed vectors are what the core computes, and every one of
    /// them holds (regenerate with `TIDESYNC_BLESS=1`).
    #[test]
    fn committed_vectors_match_the_core() {
        let want = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
        if std::env::var_os("TIDESYNC_BLESS").is_some() {
            std::fs::write(VECTORS_PATH, &want).unwrap();
        }
        let file = std::fs::read_to_string(VECTORS_PATH).expect("docs/checksum-vectors.json");
        let committed: Value = serde_json::from_str(&file).unwrap();
        for v in committed["values"].as_array().unwrap() {
            let text = v["json"].as_str().unwrap();
            assert_eq!(
                canon(text),
                v["canonical"].as_str().unwrap(),
                "{}",
                v["name"]
            );
        }
        for m in committed["mutations"].as_array().unwrap() {
            let s = |k: &str| m[k].as_str().unwrap();
            let payload: Option<Fields> = m["payload"]
                .as_str()
                .map(|t| serde_json::from_str(t).unwrap());
            let text = crate::canonical_payload(
                s("collection"),
                s("entity_id"),
                kind(s("kind")),
                payload.as_ref(),
            );
            assert_eq!(text, s("canonical"), "{}", s("name"));
            assert_eq!(
                crate::hash::sha256_hex(text.as_bytes()),
                s("checksum"),
                "{}",
                s("name")
            );
            assert_eq!(
                crate::payload_checksum(
                    s("collection"),
                    s("entity_id"),
                    kind(s("kind")),
                    payload.as_ref()
                ),
                s("checksum")
            );
        }
        assert_eq!(
            file, want,
            "docs/checksum-vectors.json is stale: TIDESYNC_BLESS=1 cargo test --lib canonical"
        );
    }

    proptest::proptest! {
        /// The writer prints what serde_json prints for every double (the
        /// checksums stored so far were made by serde_json with sorted keys).
        #[test]
        fn doubles_print_as_serde_json_prints_them(bits in proptest::num::u64::ANY) {
            let f = f64::from_bits(bits);
            proptest::prop_assume!(f.is_finite());
            let mut ours = String::new();
            write_double(&mut ours, f);
            proptest::prop_assert_eq!(ours, serde_json::to_string(&f).unwrap());
        }

        #[test]
        fn any_value_prints_as_sorted_serde_json(v in crate::canonical::tests::json_value()) {
            proptest::prop_assert_eq!(to_canonical_string(&v), serde_json::to_string(&v).unwrap());
        }
    }

    pub(super) fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
