//! Resource quantities (`500m`, `1Gi`, `1e3`): parsing, comparison and upstream's canonical
//! serialization. Upstream decodes every quantity into `resource.Quantity` and writes it back
//! in canonical form (`1000m` is stored as `1`, `0.5` as `500m`), and rounds resource lists up
//! to milli precision when defaulting; stored objects must show the same strings.

use std::cmp::Ordering;

/// How a quantity was written; it decides the suffix family of its canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// An exact quantity in units of 10^-9 (upstream rounds anything finer up to nano).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    pub nanos: i128,
    pub format: Format,
}

/// Upstream's error text for a string that is not a quantity.
pub const PARSE_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

const NANO: i128 = 1_000_000_000;

impl Quantity {
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        let (negative, rest) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, suffix) = rest.split_at(num_end);
        let (int_part, frac_part) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return None;
        }
        let (base10_exp, binary_pow, format) = parse_suffix(suffix)?;
        // value = digits * 10^(base10_exp - frac_len) * 1024^binary_pow, scaled to nanos.
        let mut digits: i128 = 0;
        for c in int_part.bytes().chain(frac_part.bytes()) {
            digits = digits.checked_mul(10)?.checked_add(i128::from(c - b'0'))?;
        }
        let mut exp10 = base10_exp - frac_part.len() as i32 + 9;
        let mut value = digits.checked_mul(1024i128.checked_pow(binary_pow)?)?;
        while exp10 > 0 {
            value = value.checked_mul(10)?;
            exp10 -= 1;
        }
        if exp10 < 0 {
            // Finer than a nano: round up, as upstream does.
            let div = 10i128.checked_pow(exp10.unsigned_abs())?;
            let (q, r) = (value / div, value % div);
            value = if r != 0 { q + 1 } else { q };
        }
        Some(Quantity {
            nanos: if negative { -value } else { value },
            format,
        })
    }

    /// Round away from zero to milli precision (upstream's `RoundUp(-3)` on resource lists).
    pub fn round_up_milli(self) -> Quantity {
        let unit = NANO / 1000;
        let r = self.nanos % unit;
        let nanos = if r == 0 {
            self.nanos
        } else if self.nanos > 0 {
            self.nanos - r + unit
        } else {
            self.nanos - r - unit
        };
        Quantity { nanos, ..self }
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn cmp_value(&self, other: &Quantity) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }

    pub fn plus(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            format: self.format,
        }
    }

    /// The canonical string upstream serializes this quantity as.
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".to_string();
        }
        let mut format = self.format;
        if format == Format::BinarySI {
            let small = self.nanos.abs() < 1024 * NANO;
            let integral = self.nanos % NANO == 0;
            if small || !integral {
                format = Format::DecimalSI;
            }
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let magnitude = self.nanos.unsigned_abs();
        if format == Format::BinarySI {
            let mut n = magnitude / NANO as u128;
            let mut pow = 0;
            while n.is_multiple_of(1024) && pow < 6 {
                n /= 1024;
                pow += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][pow];
            return format!("{sign}{n}{suffix}");
        }
        let mut mantissa = magnitude;
        let mut exp: i32 = -9;
        while mantissa.is_multiple_of(10) {
            mantissa /= 10;
            exp += 1;
        }
        // The exponent must be a multiple of three, moving toward smaller units.
        match exp.rem_euclid(3) {
            1 => {
                mantissa *= 10;
                exp -= 1;
            }
            2 => {
                mantissa *= 100;
                exp -= 2;
            }
            _ => {}
        }
        let suffix = match format {
            Format::DecimalExponent => {
                if exp == 0 {
                    String::new()
                } else {
                    format!("e{exp}")
                }
            }
            _ => match exp {
                -9 => "n".into(),
                -6 => "u".into(),
                -3 => "m".into(),
                0 => String::new(),
                3 => "k".into(),
                6 => "M".into(),
                9 => "G".into(),
                12 => "T".into(),
                15 => "P".into(),
                18 => "E".into(),
                other => format!("e{other}"),
            },
        };
        format!("{sign}{mantissa}{suffix}")
    }
}

/// (power of ten, power of 1024, format) for a suffix.
fn parse_suffix(s: &str) -> Option<(i32, u32, Format)> {
    let dec = |e| Some((e, 0, Format::DecimalSI));
    let bin = |p| Some((0, p, Format::BinarySI));
    match s {
        "" => dec(0),
        "n" => dec(-9),
        "u" => dec(-6),
        "m" => dec(-3),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        "Ki" => bin(1),
        "Mi" => bin(2),
        "Gi" => bin(3),
        "Ti" => bin(4),
        "Pi" => bin(5),
        "Ei" => bin(6),
        _ => {
            let rest = s.strip_prefix('e').or_else(|| s.strip_prefix('E'))?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let e: i32 = rest.parse().ok()?;
            if !(-100..=100).contains(&e) {
                return None;
            }
            Some((e, 0, Format::DecimalExponent))
        }
    }
}

/// Rewrite every quantity in a resource list to its milli-rounded canonical form, as
/// upstream's `SetDefaults_ResourceList` plus serialization do. Strings that do not parse
/// are left for validation to report.
pub fn canonicalize_list(list: &mut serde_json::Value) {
    if let Some(m) = list.as_object_mut() {
        for v in m.values_mut() {
            let parsed = match v {
                serde_json::Value::String(s) => Quantity::parse(s),
                serde_json::Value::Number(n) => Quantity::parse(&n.to_string()),
                _ => None,
            };
            if let Some(q) = parsed {
                *v = serde_json::Value::String(q.round_up_milli().canonical());
            }
        }
    }
}

/// Parse a quantity held in a JSON value (k8s-openapi keeps them as strings; numbers are
/// accepted too, as upstream's decoder does).
pub fn parse_value(v: &serde_json::Value) -> Option<Quantity> {
    match v {
        serde_json::Value::String(s) => Quantity::parse(s),
        serde_json::Value::Number(n) => Quantity::parse(&n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Quantity::parse(s)
            .map(|q| q.round_up_milli().canonical())
            .unwrap_or_default()
    }

    #[test]
    fn canonical_forms_match_upstream() {
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("1.5"), "1500m");
        assert_eq!(canon("100m"), "100m");
        assert_eq!(canon("2000"), "2k");
        assert_eq!(canon("128Mi"), "128Mi");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("1.5Gi"), "1536Mi");
        assert_eq!(canon("1000Ki"), "1000Ki");
        assert_eq!(canon("512"), "512");
        assert_eq!(canon("1e3"), "1e3");
        assert_eq!(canon("1.0001"), "1001m");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("0.1Ki"), "102400m");
        assert_eq!(canon("100M"), "100M");
        assert_eq!(canon("-1.5"), "-1500m");
        assert_eq!(canon("129e6"), "129e6");
        assert_eq!(canon("10G"), "10G");
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in ["", "abc", "1.2.3", "1Qi", "1e", "--1", "."] {
            assert!(Quantity::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn comparison_is_by_value() {
        let a = Quantity::parse("500m").unwrap_or(Quantity {
            nanos: 0,
            format: Format::DecimalSI,
        });
        let b = Quantity::parse("0.5").unwrap_or(Quantity {
            nanos: 1,
            format: Format::DecimalSI,
        });
        assert_eq!(a.cmp_value(&b), Ordering::Equal);
        let c = Quantity::parse("1Gi").map(|q| q.nanos);
        assert_eq!(c, Some(1_073_741_824 * NANO));
    }
}
