//! Settings that may be infinite (`inf` disables a guard or a clip), in the saved JSON.
//!
//! JSON has no infinity (serde_json writes it as `null`, which then does not read back as
//! a number), so these settings are written as the string `"inf"` (or `"-inf"`) when
//! infinite and as a number otherwise, and read from either; `null`, which earlier versions
//! wrote for ∞, reads as ∞. Use with `#[serde(with = "unbounded")]`, or
//! `#[serde(with = "unbounded::option")]` for an `Option<f64>`.

use serde::{Deserialize, Deserializer, Serializer, de::Error};

/// A saved value: a number, `"inf"`/`"-inf"`, or `null` (∞, from earlier versions).
#[derive(Deserialize)]
#[serde(untagged)]
enum Saved {
    Number(f64),
    Text(String),
}

fn to_f64<E: Error>(saved: Option<Saved>) -> Result<f64, E> {
    match saved {
        None => Ok(f64::INFINITY),
        Some(Saved::Number(x)) => Ok(x),
        Some(Saved::Text(t)) => match t.as_str() {
            "inf" | "+inf" | "infinity" => Ok(f64::INFINITY),
            "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(E::custom(format!("expected a number or \"inf\", got {t:?}"))),
        },
    }
}

/// Writes `x` as a number, or as `"inf"`/`"-inf"` when infinite.
pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    if x.is_infinite() { s.serialize_str(if *x > 0.0 { "inf" } else { "-inf" }) } else { s.serialize_f64(*x) }
}

/// Reads a number, `"inf"`/`"-inf"`, or `null` as ∞.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    to_f64(Option::<Saved>::deserialize(d)?)
}

/// The same for an optional setting: `None` is left out (with `skip_serializing_if`) or
/// `null`, and reads back as `None`.
pub mod option {
    use super::*;
    use serde::Serialize;

    /// Writes `Some(x)` as [`super::serialize`] does, `None` as `null`.
    pub fn serialize<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match x {
            Some(v) if v.is_infinite() => super::serialize(v, s),
            other => other.serialize(s),
        }
    }

    /// Reads a number or `"inf"`/`"-inf"` as `Some`, `null` as `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Option::<Saved>::deserialize(d)? {
            None => Ok(None),
            saved => to_f64(saved).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct S {
        #[serde(with = "super")]
        x: f64,
        #[serde(default, with = "super::option", skip_serializing_if = "Option::is_none")]
        y: Option<f64>,
    }

    #[test]
    fn infinite_settings_round_trip_and_bad_text_is_named() {
        for (x, y) in [(10.0, None), (f64::INFINITY, Some(0.3)), (f64::NEG_INFINITY, Some(f64::INFINITY))] {
            let s = S { x, y };
            let text = serde_json::to_string(&s).unwrap();
            assert!(!text.contains("null"), "{text}");
            assert_eq!(serde_json::from_str::<S>(&text).unwrap(), s, "{text}");
        }
        assert_eq!(serde_json::to_string(&S { x: f64::INFINITY, y: None }).unwrap(), r#"{"x":"inf"}"#);
        // What earlier versions wrote for ∞.
        assert_eq!(serde_json::from_str::<S>(r#"{"x":null}"#).unwrap(), S { x: f64::INFINITY, y: None });
        assert_eq!(serde_json::from_str::<S>(r#"{"x":1,"y":null}"#).unwrap(), S { x: 1.0, y: None });
        let e = serde_json::from_str::<S>(r#"{"x":"lots"}"#).unwrap_err().to_string();
        assert!(e.contains("expected a number or \"inf\", got \"lots\""), "{e}");
    }
}
