//! Whole numbers as JSON spells them. JSON has one kind of number, so `4` and `4.0` are
//! the same one, and a schema's `integer` (JSON Schema, OpenAPI 3.1) takes both. The
//! readers here take either spelling for an integer field, as long as the number is
//! whole, in the field's range, and (written with a fraction or an exponent) within
//! ±2^53, where a float still holds every whole number exactly.
//!
//! `#[serde(deserialize_with = "crate::whole::i64")]` (or `u64`) on a field.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// The largest magnitude up to which every whole number is a float of its own.
const EXACT: f64 = 9_007_199_254_740_992.0;

struct Whole<T>(std::marker::PhantomData<T>);

fn from_float<T: TryFrom<i64>, E: de::Error>(v: f64, expected: &dyn de::Expected) -> Result<T, E> {
    if v.fract() != 0.0 || !v.is_finite() || v.abs() > EXACT {
        return Err(E::invalid_value(de::Unexpected::Float(v), expected));
    }
    // Within ±2^53 and whole: the conversion is exact.
    #[allow(clippy::cast_possible_truncation)]
    let n = v as i64;
    T::try_from(n).map_err(|_| E::invalid_value(de::Unexpected::Float(v), expected))
}

impl<'de, T> Visitor<'de> for Whole<T>
where
    T: TryFrom<i64> + TryFrom<u64>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number in range")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        from_float(v, &self)
    }
}

/// Reads an `i64` from a whole JSON number, however it is written.
pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(Whole(std::marker::PhantomData))
}

/// Reads a `u64` from a whole JSON number, however it is written.
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Whole(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Signed {
        #[serde(deserialize_with = "super::i64")]
        n: i64,
    }

    #[derive(Debug, Deserialize)]
    struct Unsigned {
        #[serde(deserialize_with = "super::u64")]
        n: u64,
    }

    fn signed(json: &str) -> Option<i64> {
        serde_json::from_str::<Signed>(json).ok().map(|s| s.n)
    }

    fn unsigned(json: &str) -> Option<u64> {
        serde_json::from_str::<Unsigned>(json).ok().map(|s| s.n)
    }

    #[test]
    fn a_whole_number_is_read_however_it_is_written() {
        assert_eq!(signed(r#"{"n": 114}"#), Some(114));
        assert_eq!(signed(r#"{"n": 114.0}"#), Some(114));
        assert_eq!(signed(r#"{"n": 1.14e2}"#), Some(114));
        assert_eq!(signed(r#"{"n": -3.0}"#), Some(-3));
        assert_eq!(signed(r#"{"n": 9223372036854775807}"#), Some(i64::MAX));
        assert_eq!(signed(r#"{"n": 9007199254740992.0}"#), Some(1 << 53));
        assert_eq!(unsigned(r#"{"n": 18446744073709551615}"#), Some(u64::MAX));
        assert_eq!(unsigned(r#"{"n": 7.0}"#), Some(7));
    }

    #[test]
    fn anything_else_is_refused() {
        for json in [
            r#"{"n": 114.5}"#,
            r#"{"n": 9223372036854775808}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": 9007199254740994.0}"#,
            r#"{"n": "114"}"#,
            r#"{"n": true}"#,
            r#"{"n": null}"#,
        ] {
            assert_eq!(signed(json), None, "{json}");
        }
        assert_eq!(unsigned(r#"{"n": -1}"#), None);
        assert_eq!(unsigned(r#"{"n": -1.0}"#), None);
    }
}
