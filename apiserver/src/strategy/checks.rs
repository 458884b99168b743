//! Format checks of `k8s.io/apimachinery/pkg/util/validation` and the path helpers of the
//! core validation package that the apimachinery crate does not (yet) provide, with
//! upstream's messages.

use std::net::IpAddr;

use skiff_apimachinery::validation::{FieldError, max_len_error, regex_error};

use super::inclusive_range_error;

/// Upstream's `IsValidPortNum`.
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// Upstream's `IsValidPortName` (an IANA_SVC_NAME).
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty()
        || !port
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !port.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// Upstream's `IsConfigMapKey`: the keys of ConfigMap and Secret data.
pub fn is_config_map_key(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push(max_len_error(253));
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if key == "." {
        errs.push("must not be '.'".into());
    } else if key == ".." {
        errs.push("must not be '..'".into());
    } else if key.starts_with("..") {
        errs.push("must not start with '..'".into());
    }
    errs
}

/// Upstream's `IsRelaxedEnvVarName` (the relaxed rules are GA since v1.34): any printable
/// ASCII but `=`.
pub fn is_env_var_name(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.is_empty() {
        errs.push("environment variable name must be non-empty".into());
    }
    if name.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(
            "a valid environment variable name must consist only of printable ASCII characters other than '='"
                .into(),
        );
    }
    errs
}

/// Upstream's `IsValidIP`, as field errors.
pub fn valid_ip(field: &str, value: &str) -> Vec<FieldError> {
    if value.parse::<IpAddr>().is_ok() {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            field,
            value,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        )]
    }
}

/// Whether `value` parses as an IPv6 address.
pub fn is_ipv6(value: &str) -> bool {
    value.parse::<std::net::Ipv6Addr>().is_ok()
}

/// Upstream's `IsValidCIDR`, as field errors.
pub fn valid_cidr(field: &str, value: &str) -> Vec<FieldError> {
    let ok = value.split_once('/').is_some_and(|(ip, bits)| {
        let Ok(addr) = ip.parse::<IpAddr>() else {
            return false;
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        bits.parse::<u8>().is_ok_and(|b| b <= max) && !bits.starts_with('+')
    });
    if ok {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            field,
            value,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        )]
    }
}

/// Upstream's `IsValidPercent`.
pub fn is_valid_percent(value: &str) -> Vec<String> {
    let ok = value
        .strip_suffix('%')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Vec::new()
    } else {
        vec![regex_error(
            "a valid percent string must be a numeric string followed by an ending '%'",
            "[0-9]+%",
            &["1%", "93%"],
        )]
    }
}

/// Upstream's `IsHTTPHeaderName`.
pub fn is_http_header_name(value: &str) -> Vec<String> {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Vec::new()
    } else {
        vec![regex_error(
            "a valid HTTP header must consist of alphanumeric characters or '-'",
            "[-A-Za-z0-9]+",
            &["X-Header-Name"],
        )]
    }
}

/// Upstream's `IsValidUserID` / `IsValidGroupID`.
pub fn is_valid_id(id: i64) -> Vec<String> {
    if (0..=i64::from(i32::MAX)).contains(&id) {
        Vec::new()
    } else {
        vec![inclusive_range_error(0, i64::from(i32::MAX))]
    }
}

/// Upstream's `validatePathNoBacksteps`.
pub fn path_no_backsteps(path: &str, field: &str) -> Vec<FieldError> {
    if path.split(['/', '\\']).any(|p| p == "..") {
        vec![FieldError::invalid(field, path, "must not contain '..'")]
    } else {
        Vec::new()
    }
}

/// Upstream's `validateLocalDescendingPath`.
pub fn local_descending_path(path: &str, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if path.starts_with('/') {
        errs.push(FieldError::invalid(field, path, "must be a relative path"));
    }
    errs.extend(path_no_backsteps(path, field));
    errs
}

/// Upstream's `ValidateLocalNonReservedPath`.
pub fn local_non_reserved_path(path: &str, field: &str) -> Vec<FieldError> {
    let mut errs = local_descending_path(path, field);
    if path.starts_with("..") && !path.starts_with("../") {
        errs.push(FieldError::invalid(field, path, "must not start with '..'"));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names() {
        assert!(is_valid_port_name("http").is_empty());
        assert!(is_valid_port_name("web-8080").is_empty());
        assert_eq!(
            is_valid_port_name("8080"),
            vec!["must contain at least one letter (a-z)".to_string()]
        );
        assert_eq!(
            is_valid_port_name("Http"),
            vec![
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
                    .to_string()
            ]
        );
    }

    #[test]
    fn config_keys() {
        assert!(is_config_map_key("key.name_1-x").is_empty());
        assert_eq!(
            is_config_map_key("a b"),
            vec!["a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string()]
        );
        assert_eq!(
            is_config_map_key(".."),
            vec!["must not be '..'".to_string()]
        );
    }

    #[test]
    fn env_names_are_relaxed() {
        assert!(is_env_var_name("1FOO.bar-baz").is_empty());
        assert_eq!(is_env_var_name("A=B").len(), 1);
    }

    #[test]
    fn ips_and_cidrs() {
        assert!(valid_ip("f", "10.0.0.1").is_empty());
        assert_eq!(
            valid_ip("spec.clusterIPs[0]", "10.0.0.500")[0].to_string(),
            "spec.clusterIPs[0]: Invalid value: \"10.0.0.500\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
        );
        assert!(valid_cidr("f", "10.0.0.0/8").is_empty());
        assert_eq!(valid_cidr("f", "10.0.0.0/33").len(), 1);
    }
}
