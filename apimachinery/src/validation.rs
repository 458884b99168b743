//! Name, label and object-metadata validation with upstream's exact messages.
//!
//! The `is_*` functions return a list of human-readable problems (empty when the value is
//! valid), like upstream's `k8s.io/apimachinery/pkg/util/validation`. The `validate_*`
//! functions work on `serde_json::Value` objects and return [`FieldError`]s, which an API
//! server turns into a 422 `Invalid` Status: [`FieldError`]'s `Display` is the text used in
//! the Status message and [`FieldError::cause_message`] / [`FieldError::reason`] fill the
//! Status causes.
//!
//! Messages follow Kubernetes v1.35. Note that upstream words the length limit of DNS names
//! in characters but that of label keys and values in bytes; both are kept as they are.

use std::fmt;

use serde_json::Value;

/// Maximum length of a DNS-1123 label (RFC 1123).
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Maximum length of a DNS-1123 subdomain (RFC 1123).
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Maximum length of a DNS-1035 label (RFC 1035).
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
/// Maximum length of the name part of a qualified name (label key).
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Maximum length of a label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Maximum total size in bytes of all annotation keys and values of one object.
pub const TOTAL_ANNOTATION_SIZE_LIMIT_BYTES: usize = 256 * 1024;

/// The message upstream uses when a value may not be negative.
pub const IS_NEGATIVE_ERROR_MSG: &str = "must be greater than or equal to 0";
/// The message upstream uses when an immutable field changes.
pub const FIELD_IMMUTABLE_ERROR_MSG: &str = "field is immutable";

/// Finalizer that orphans dependents on deletion.
pub const FINALIZER_ORPHAN_DEPENDENTS: &str = "orphan";
/// Finalizer that deletes dependents in the foreground.
pub const FINALIZER_DELETE_DEPENDENTS: &str = "foregroundDeletion";

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_ERR_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Upstream's "string too long" explanation for DNS names: `must be no more than N characters`.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// Upstream's "string too long" explanation for label keys and values (the newer
/// `content` package): `must be no more than N bytes`.
pub fn max_len_bytes_error(length: usize) -> String {
    format!("must be no more than {length} bytes")
}

/// Upstream's "must not be empty" explanation.
pub fn empty_error() -> String {
    "must be non-empty".to_string()
}

/// Upstream's explanation of a regex mismatch, listing examples of valid values.
///
/// The odd `',  or '` spacing between examples is upstream's and is kept so messages match.
pub fn regex_error(msg: &str, regex: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{regex}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(regex);
    out.push_str("')");
    out
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
fn matches_dns1123_label(value: &str) -> bool {
    let b = value.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alnum(first)
                && is_lower_alnum(last)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
fn matches_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(matches_dns1123_label)
}

/// `^[a-z]([-a-z0-9]*[a-z0-9])?$`
fn matches_dns1035_label(value: &str) -> bool {
    value.as_bytes().first().is_some_and(u8::is_ascii_lowercase) && matches_dns1123_label(value)
}

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`
fn matches_label_key_name(value: &str) -> bool {
    let b = value.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Checks that `value` is a DNS-1123 label (RFC 1123): at most 63 lower case alphanumeric
/// characters or '-', starting and ending with an alphanumeric character.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            // A valid subdomain that is not a valid label can only be failing on its dots,
            // and saying so is clearer than the regex.
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

fn dns1123_subdomain_errors(value: &str, too_long: fn(usize) -> String) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(too_long(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Checks that `value` is a DNS-1123 subdomain (RFC 1123): at most 253 characters of
/// dot-separated DNS-1123 labels. This is the rule for most object names.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    dns1123_subdomain_errors(value, max_len_error)
}

/// Checks that `value` is a DNS-1035 label (RFC 1035): like a DNS-1123 label but starting
/// with a letter. This is the rule for Service names.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !matches_dns1035_label(value) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Checks that `value` is a qualified name, the format of label and annotation keys and
/// finalizers: an optional DNS-1123 subdomain prefix and '/', then a name of at most 63
/// alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                errs.extend(
                    dns1123_subdomain_errors(prefix, max_len_bytes_error)
                        .into_iter()
                        .map(|msg| format!("prefix part {msg}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    LABEL_KEY_ERR_MSG,
                    LABEL_KEY_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_bytes_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !matches_label_key_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                LABEL_KEY_ERR_MSG,
                LABEL_KEY_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Checks that `value` is a valid label value: empty, or at most 63 alphanumeric
/// characters, '-', '_' or '.', starting and ending with an alphanumeric character.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_bytes_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_label_key_name(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------
// Name validators for object metadata.

/// Replaces a trailing '-' of a generateName prefix so the prefix validates as a name once
/// random characters are appended. Upstream drops the last *two* characters before adding
/// the 'a'; that quirk is kept so the same prefixes are accepted and rejected.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        let mut chars: Vec<char> = name.chars().collect();
        chars.truncate(chars.len().saturating_sub(2));
        chars.push('a');
        chars.into_iter().collect()
    } else {
        name.to_string()
    }
}

/// Name validator for names that must be DNS-1123 subdomains (most resources).
/// `prefix` is true when validating a `generateName`.
pub fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    if prefix {
        is_dns1123_subdomain(&mask_trailing_dash(name))
    } else {
        is_dns1123_subdomain(name)
    }
}

/// Name validator for names that must be DNS-1123 labels (e.g. namespaces).
/// `prefix` is true when validating a `generateName`.
pub fn name_is_dns_label(name: &str, prefix: bool) -> Vec<String> {
    if prefix {
        is_dns1123_label(&mask_trailing_dash(name))
    } else {
        is_dns1123_label(name)
    }
}

/// Name validator for names that must be DNS-1035 labels (e.g. services).
/// `prefix` is true when validating a `generateName`.
pub fn name_is_dns1035_label(name: &str, prefix: bool) -> Vec<String> {
    if prefix {
        is_dns1035_label(&mask_trailing_dash(name))
    } else {
        is_dns1035_label(name)
    }
}

/// Validates a namespace name (a DNS-1123 label).
pub fn validate_namespace_name(name: &str, prefix: bool) -> Vec<String> {
    name_is_dns_label(name, prefix)
}

// ---------------------------------------------------------------------------------------
// Field errors.

/// Why a field is invalid; maps 1:1 to upstream's `field.ErrorType` and the Status cause
/// type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    /// A looked-up value was not found.
    NotFound,
    /// A required value is missing.
    Required,
    /// A value that must be unique is repeated.
    Duplicate,
    /// A value is malformed (bad format, out of range, ...).
    Invalid,
    /// A value is not one of the supported values of an enumeration.
    NotSupported,
    /// A value is well-formed but not allowed here.
    Forbidden,
    /// A value is too long; the value itself is not repeated in the message.
    TooLong,
    /// A list has too many items.
    TooMany,
    /// An error not caused by user input.
    Internal,
    /// A value has the wrong JSON type.
    TypeInvalid,
}

impl FieldErrorKind {
    /// The Status cause `reason` (upstream's `ErrorType` string), e.g. `FieldValueInvalid`.
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::NotFound => "FieldValueNotFound",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::Internal => "InternalError",
            FieldErrorKind::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The canonical text that starts the message, e.g. `Invalid value`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldErrorKind::NotFound => "Not found",
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Invalid | FieldErrorKind::TypeInvalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::Internal => "Internal error",
        }
    }
}

impl fmt::Display for FieldErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The offending value of a [`FieldError`], rendered into the message as upstream does:
/// strings Go-quoted (`"Foo_bar"`), everything else as JSON (`-1`, `["a","b"]`, `null`).
#[derive(Debug, Clone, PartialEq)]
pub enum BadValue {
    /// A string value, shown quoted.
    String(String),
    /// Any other value, shown as compact JSON.
    Json(Value),
}

impl BadValue {
    /// The value as it appears in a message.
    pub fn render(&self) -> String {
        match self {
            BadValue::String(s) => go_quote(s),
            BadValue::Json(Value::String(s)) => go_quote(s),
            BadValue::Json(v) => go_json(v),
        }
    }
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::String(s.to_string())
    }
}

impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue::String(s)
    }
}

impl From<&String> for BadValue {
    fn from(s: &String) -> Self {
        BadValue::String(s.clone())
    }
}

impl From<Value> for BadValue {
    fn from(v: Value) -> Self {
        BadValue::Json(v)
    }
}

impl From<&Value> for BadValue {
    fn from(v: &Value) -> Self {
        BadValue::Json(v.clone())
    }
}

impl From<i64> for BadValue {
    fn from(v: i64) -> Self {
        BadValue::Json(Value::from(v))
    }
}

impl From<Vec<String>> for BadValue {
    fn from(v: Vec<String>) -> Self {
        BadValue::Json(Value::from(v))
    }
}

/// One field-level validation error, like upstream's `field.Error`.
///
/// `Display` gives upstream's `Error()` text, e.g.
/// `metadata.name: Invalid value: "Foo_bar": a lowercase RFC 1123 subdomain must ...` or
/// `spec.containers: Required value`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// What kind of problem this is.
    pub kind: FieldErrorKind,
    /// The path of the field, e.g. `metadata.name` or `spec.containers[0].image`.
    pub field: String,
    /// The offending value, for the kinds whose message shows it (Invalid, Duplicate,
    /// NotSupported, NotFound, TooMany, TypeInvalid). `None` omits it.
    pub value: Option<BadValue>,
    /// Further explanation; may be empty.
    pub detail: String,
}

impl FieldError {
    /// A required value is missing (`Required value[: detail]`).
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Required, field, None, detail)
    }

    /// A value is malformed (`Invalid value: <value>: detail`).
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<BadValue>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(FieldErrorKind::Invalid, field, Some(value.into()), detail)
    }

    /// A value has the wrong type (`Invalid value: <value>: detail`, reason
    /// `FieldValueTypeInvalid`).
    pub fn type_invalid(
        field: impl Into<String>,
        value: impl Into<BadValue>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(
            FieldErrorKind::TypeInvalid,
            field,
            Some(value.into()),
            detail,
        )
    }

    /// A value that must be unique is repeated (`Duplicate value: <value>`).
    pub fn duplicate(field: impl Into<String>, value: impl Into<BadValue>) -> Self {
        Self::new(FieldErrorKind::Duplicate, field, Some(value.into()), "")
    }

    /// A looked-up value was not found (`Not found: <value>`).
    pub fn not_found(field: impl Into<String>, value: impl Into<BadValue>) -> Self {
        Self::new(FieldErrorKind::NotFound, field, Some(value.into()), "")
    }

    /// A value is not one of `valid` (`Unsupported value: <value>: supported values: "a", "b"`).
    pub fn not_supported<S: AsRef<str>>(
        field: impl Into<String>,
        value: impl Into<BadValue>,
        valid: &[S],
    ) -> Self {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| go_quote(v.as_ref())).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(
            FieldErrorKind::NotSupported,
            field,
            Some(value.into()),
            detail,
        )
    }

    /// A value is not allowed here (`Forbidden: detail`).
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Forbidden, field, None, detail)
    }

    /// A value is too long (`Too long: may not be more than N bytes`); `None` when the limit
    /// is unknown (`Too long: value is too long`).
    pub fn too_long(field: impl Into<String>, max_length: Option<usize>) -> Self {
        let detail = match max_length {
            Some(1) => "may not be more than 1 byte".to_string(),
            Some(n) => format!("may not be more than {n} bytes"),
            None => "value is too long".to_string(),
        };
        Self::new(FieldErrorKind::TooLong, field, None, detail)
    }

    /// A list has too many items (`Too many: <actual>: must have at most N items`).
    pub fn too_many(field: impl Into<String>, actual: Option<usize>, max: Option<usize>) -> Self {
        let detail = match max {
            Some(1) => "must have at most 1 item".to_string(),
            Some(n) => format!("must have at most {n} items"),
            None => "has too many items".to_string(),
        };
        let value = actual.map(|n| BadValue::Json(Value::from(n)));
        Self::new(FieldErrorKind::TooMany, field, value, detail)
    }

    /// An error not caused by user input (`Internal error: detail`).
    pub fn internal(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Internal, field, None, detail)
    }

    fn new(
        kind: FieldErrorKind,
        field: impl Into<String>,
        value: Option<BadValue>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }

    /// The Status cause `reason`, e.g. `FieldValueInvalid`.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// The message without the field path (upstream's `ErrorBody()`), used as the Status
    /// cause `message`, e.g. `Invalid value: "Foo_bar": a lowercase RFC 1123 ...`.
    pub fn cause_message(&self) -> String {
        let mut s = match (self.kind, &self.value) {
            (
                FieldErrorKind::Required
                | FieldErrorKind::Forbidden
                | FieldErrorKind::TooLong
                | FieldErrorKind::Internal,
                _,
            )
            | (_, None) => self.kind.as_str().to_string(),
            (_, Some(value)) => format!("{}: {}", self.kind.as_str(), value.render()),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.cause_message())
    }
}

impl std::error::Error for FieldError {}

/// Joins field errors as upstream's `ErrorList.ToAggregate().Error()` does: duplicates
/// dropped, a single error as is, several as `[e1, e2]`. Empty input gives `""`.
pub fn aggregate_message(errs: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for err in errs {
        let msg = err.to_string();
        if !seen.contains(&msg) {
            seen.push(msg);
        }
    }
    match seen.len() {
        0 => String::new(),
        1 => seen.remove(0),
        _ => format!("[{}]", seen.join(", ")),
    }
}

/// Quotes a string the way Go's `strconv.Quote` (`%q`) does, so messages carrying values
/// read exactly like upstream's.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Approximates Go's `unicode.IsPrint`: no control or format characters and no spaces
/// other than ASCII space.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c,
        '\u{ad}'
        | '\u{600}'..='\u{605}'
        | '\u{61c}'
        | '\u{6dd}'
        | '\u{70f}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{e000}'..='\u{f8ff}')
}

/// Compact JSON as Go's `json.Marshal` writes it, which escapes `<`, `>`, `&` and the
/// JavaScript line separators inside strings.
fn go_json(v: &Value) -> String {
    let s = v.to_string();
    // Outside strings, compact JSON never contains these characters, so a plain replace
    // only touches string contents.
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

// ---------------------------------------------------------------------------------------
// Field paths.

/// `parent.name`, or `name` at the root.
fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// `parent[key]`, upstream's rendering of map keys and list indices in paths.
fn subscript(parent: &str, key: impl fmt::Display) -> String {
    format!("{parent}[{key}]")
}

// ---------------------------------------------------------------------------------------
// Labels, annotations, label selectors.

/// Iterates a JSON map of strings (labels, annotations, matchLabels). `null` counts as
/// empty. Wrong types are reported as `FieldValueTypeInvalid` errors instead of entries.
fn string_map<'a>(
    map: &'a Value,
    field_path: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<(&'a str, &'a str)> {
    match map {
        Value::Null => Vec::new(),
        Value::Object(obj) => obj
            .iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k.as_str(), s.as_str())),
                other => {
                    errs.push(FieldError::type_invalid(
                        subscript(field_path, k),
                        other,
                        "must be of type string",
                    ));
                    None
                }
            })
            .collect(),
        other => {
            errs.push(FieldError::type_invalid(
                field_path,
                other,
                "must be of type object",
            ));
            Vec::new()
        }
    }
}

/// Validates a label key (qualified name) at `field_path`.
pub fn validate_label_name(key: &str, field_path: &str) -> Vec<FieldError> {
    is_qualified_name(key)
        .into_iter()
        .map(|msg| FieldError::invalid(field_path, key, msg))
        .collect()
}

/// Validates a labels map (`{"key": "value"}`, or `null`): keys must be qualified names and
/// values valid label values. Errors carry `field_path` itself, as upstream's do.
pub fn validate_labels(labels: &Value, field_path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in string_map(labels, field_path, &mut errs) {
        errs.extend(validate_label_name(k, field_path));
        errs.extend(
            is_valid_label_value(v)
                .into_iter()
                .map(|msg| FieldError::invalid(field_path, v, msg)),
        );
    }
    errs
}

/// Validates an annotations map (or `null`): keys must be qualified names (case does not
/// matter) and keys plus values may total at most 256 KiB.
pub fn validate_annotations(annotations: &Value, field_path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in string_map(annotations, field_path, &mut errs) {
        errs.extend(
            is_qualified_name(&k.to_lowercase())
                .into_iter()
                .map(|msg| FieldError::invalid(field_path, k, msg)),
        );
        total = total.saturating_add(k.len()).saturating_add(v.len());
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES {
        errs.push(FieldError::too_long(
            field_path,
            Some(TOTAL_ANNOTATION_SIZE_LIMIT_BYTES),
        ));
    }
    errs
}

/// Validates a metav1.LabelSelector (`{"matchLabels": {...}, "matchExpressions": [...]}`,
/// or `null`) as upstream's `ValidateLabelSelector` does for e.g. `spec.selector`.
pub fn validate_label_selector(selector: &Value, field_path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let obj = match selector {
        Value::Null => return errs,
        Value::Object(obj) => obj,
        other => {
            errs.push(FieldError::type_invalid(
                field_path,
                other,
                "must be of type object",
            ));
            return errs;
        }
    };
    if let Some(labels) = obj.get("matchLabels") {
        errs.extend(validate_labels(labels, &child(field_path, "matchLabels")));
    }
    let exprs_path = child(field_path, "matchExpressions");
    let exprs = match obj.get("matchExpressions") {
        None | Some(Value::Null) => return errs,
        Some(Value::Array(items)) => items,
        Some(other) => {
            errs.push(FieldError::type_invalid(
                exprs_path,
                other,
                "must be of type array",
            ));
            return errs;
        }
    };
    for (i, expr) in exprs.iter().enumerate() {
        let path = subscript(&exprs_path, i);
        let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
        let operator = expr.get("operator").and_then(Value::as_str).unwrap_or("");
        let values_path = child(&path, "values");
        let values: Vec<&str> = match expr.get("values") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(vs)) => vs
                .iter()
                .enumerate()
                .filter_map(|(j, v)| match v.as_str() {
                    Some(s) => Some(s),
                    None => {
                        errs.push(FieldError::type_invalid(
                            subscript(&values_path, j),
                            v,
                            "must be of type string",
                        ));
                        None
                    }
                })
                .collect(),
            Some(other) => {
                errs.push(FieldError::type_invalid(
                    &values_path,
                    other,
                    "must be of type array",
                ));
                Vec::new()
            }
        };
        match operator {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        &values_path,
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        &values_path,
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                child(&path, "operator"),
                other,
                "not a valid selector operator",
            )),
        }
        errs.extend(validate_label_name(key, &child(&path, "key")));
        for (j, value) in values.iter().enumerate() {
            errs.extend(
                is_valid_label_value(value)
                    .into_iter()
                    .map(|msg| FieldError::invalid(subscript(&values_path, j), *value, msg)),
            );
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------
// Object metadata.

/// A string field of metadata: absent and `null` read as `""`; other types are reported.
fn meta_str<'a>(
    meta: &'a Value,
    key: &str,
    field_path: &str,
    errs: &mut Vec<FieldError>,
) -> &'a str {
    match meta.get(key) {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s,
        Some(other) => {
            errs.push(FieldError::type_invalid(
                child(field_path, key),
                other,
                "must be of type string",
            ));
            ""
        }
    }
}

/// Validates `metadata` of an object being created, as upstream's `ValidateObjectMeta`
/// with the field path `metadata`. See [`validate_object_meta_at`].
pub fn validate_object_meta<F>(meta: &Value, namespaced: bool, name_validator: F) -> Vec<FieldError>
where
    F: Fn(&str, bool) -> Vec<String>,
{
    validate_object_meta_at(meta, namespaced, name_validator, "metadata")
}

/// Validates object metadata at `field_path` on create: `name` (or `generateName`) is
/// required and checked with `name_validator(name, is_prefix)` (e.g.
/// [`name_is_dns_subdomain`]); `namespace` is required for namespaced kinds and forbidden
/// otherwise; then generation, labels, annotations, owner references and finalizers.
///
/// Name generation is expected to have happened already; a `generateName` is still
/// validated as a prefix so a bad one is reported against `generateName`.
pub fn validate_object_meta_at<F>(
    meta: &Value,
    namespaced: bool,
    name_validator: F,
    field_path: &str,
) -> Vec<FieldError>
where
    F: Fn(&str, bool) -> Vec<String>,
{
    let mut errs = Vec::new();
    if !matches!(meta, Value::Object(_) | Value::Null) {
        errs.push(FieldError::type_invalid(
            field_path,
            meta,
            "must be of type object",
        ));
        return errs;
    }

    let generate_name = meta_str(meta, "generateName", field_path, &mut errs);
    if !generate_name.is_empty() {
        for msg in name_validator(generate_name, true) {
            errs.push(FieldError::invalid(
                child(field_path, "generateName"),
                generate_name,
                msg,
            ));
        }
    }
    let name = meta_str(meta, "name", field_path, &mut errs);
    if name.is_empty() {
        errs.push(FieldError::required(
            child(field_path, "name"),
            "name or generateName is required",
        ));
    } else {
        for msg in name_validator(name, false) {
            errs.push(FieldError::invalid(child(field_path, "name"), name, msg));
        }
    }

    let namespace = meta_str(meta, "namespace", field_path, &mut errs);
    let namespace_path = child(field_path, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(namespace_path, ""));
        } else {
            for msg in validate_namespace_name(namespace, false) {
                errs.push(FieldError::invalid(&namespace_path, namespace, msg));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            namespace_path,
            "not allowed on this type",
        ));
    }

    errs.extend(validate_common(meta, field_path, true));
    errs
}

/// The checks after name and namespace. On create these are generation, labels,
/// annotations, owner references and finalizers; upstream's update path leaves out
/// generation (checked against the old value instead) and finalizers.
fn validate_common(meta: &Value, field_path: &str, on_create: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let null = Value::Null;
    let get = |key: &str| meta.get(key).unwrap_or(&null);
    if on_create
        && let Some(generation) = get("generation").as_i64()
        && generation < 0
    {
        errs.push(FieldError::invalid(
            child(field_path, "generation"),
            generation,
            IS_NEGATIVE_ERROR_MSG,
        ));
    }
    errs.extend(validate_labels(get("labels"), &child(field_path, "labels")));
    errs.extend(validate_annotations(
        get("annotations"),
        &child(field_path, "annotations"),
    ));
    errs.extend(validate_owner_references(
        get("ownerReferences"),
        &child(field_path, "ownerReferences"),
    ));
    if on_create {
        errs.extend(validate_finalizers(
            get("finalizers"),
            &child(field_path, "finalizers"),
        ));
    }
    errs
}

/// Validates `metadata.ownerReferences` (a list, or `null`). Like upstream, errors name the
/// list's path without an index, and at most one reference may be the controller.
pub fn validate_owner_references(refs: &Value, field_path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let refs = match refs {
        Value::Null => return errs,
        Value::Array(refs) => refs,
        other => {
            errs.push(FieldError::type_invalid(
                field_path,
                other,
                "must be of type array",
            ));
            return errs;
        }
    };
    let mut first_controller: Option<String> = None;
    for r in refs {
        let get = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
        let (api_version, kind, name, uid) =
            (get("apiVersion"), get("kind"), get("name"), get("uid"));
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        if version.is_empty() {
            errs.push(FieldError::invalid(
                child(field_path, "apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        if kind.is_empty() {
            errs.push(FieldError::invalid(
                child(field_path, "kind"),
                kind,
                "must not be empty",
            ));
        }
        if name.is_empty() {
            errs.push(FieldError::invalid(
                child(field_path, "name"),
                name,
                "must not be empty",
            ));
        }
        if uid.is_empty() {
            errs.push(FieldError::invalid(
                child(field_path, "uid"),
                uid,
                "must not be empty",
            ));
        }
        // Events are deliberately short-lived and garbage-collected by TTL, so upstream
        // bans them as owners.
        if group.is_empty() && version == "v1" && kind == "Event" {
            errs.push(FieldError::invalid(
                field_path,
                r,
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{kind}/{name}");
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid(
                    field_path,
                    refs_value(refs),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                )),
                None => first_controller = Some(current),
            }
        }
    }
    errs
}

fn refs_value(refs: &[Value]) -> Value {
    Value::Array(refs.to_vec())
}

/// Validates `metadata.finalizers` (a list of qualified names, or `null`); `orphan` and
/// `foregroundDeletion` may not both be set.
pub fn validate_finalizers(finalizers: &Value, field_path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let items = match finalizers {
        Value::Null => return errs,
        Value::Array(items) => items,
        other => {
            errs.push(FieldError::type_invalid(
                field_path,
                other,
                "must be of type array",
            ));
            return errs;
        }
    };
    let mut orphan = false;
    let mut foreground = false;
    for (i, item) in items.iter().enumerate() {
        let Some(finalizer) = item.as_str() else {
            errs.push(FieldError::type_invalid(
                subscript(field_path, i),
                item,
                "must be of type string",
            ));
            continue;
        };
        errs.extend(
            is_qualified_name(finalizer)
                .into_iter()
                .map(|msg| FieldError::invalid(field_path, finalizer, msg)),
        );
        orphan |= finalizer == FINALIZER_ORPHAN_DEPENDENTS;
        foreground |= finalizer == FINALIZER_DELETE_DEPENDENTS;
    }
    if orphan && foreground {
        errs.push(FieldError::invalid(
            field_path,
            finalizers,
            format!(
                "finalizer {FINALIZER_ORPHAN_DEPENDENTS} and {FINALIZER_DELETE_DEPENDENTS} cannot be both set"
            ),
        ));
    }
    errs
}

/// Validates `metadata` on update, as upstream's `ValidateObjectMetaUpdate` with the field
/// path `metadata`: name, namespace, uid, creationTimestamp, deletionTimestamp and
/// deletionGracePeriodSeconds are immutable, generation may not decrease, resourceVersion
/// must be set (callers that allow unconditional updates fill it in from the stored object
/// first), no finalizers may be added once deletion started, and labels, annotations,
/// owner references and finalizers must be valid.
pub fn validate_object_meta_update(new_meta: &Value, old_meta: &Value) -> Vec<FieldError> {
    let field_path = "metadata";
    let mut errs = Vec::new();
    let null = Value::Null;
    let field =
        |meta: &'_ Value, key: &str| -> Value { meta.get(key).cloned().unwrap_or(Value::Null) };

    if !field(old_meta, "deletionTimestamp").is_null() {
        let old: Vec<&str> = str_list(old_meta.get("finalizers").unwrap_or(&null));
        let mut extra: Vec<&str> = str_list(new_meta.get("finalizers").unwrap_or(&null))
            .into_iter()
            .filter(|f| !old.contains(f))
            .collect();
        extra.sort_unstable();
        extra.dedup();
        if !extra.is_empty() {
            let quoted: Vec<String> = extra.iter().map(|f| go_quote(f)).collect();
            errs.push(FieldError::forbidden(
                child(field_path, "finalizers"),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    quoted.join(", ")
                ),
            ));
        }
    }

    let rv = new_meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if rv.is_empty() {
        errs.push(FieldError::invalid(
            child(field_path, "resourceVersion"),
            rv,
            "must be specified for an update",
        ));
    }

    let new_gen = new_meta
        .get("generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let old_gen = old_meta
        .get("generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if new_gen < old_gen {
        errs.push(FieldError::invalid(
            child(field_path, "generation"),
            new_gen,
            "must not be decremented",
        ));
    }

    for key in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        let (new, old) = (field(new_meta, key), field(old_meta, key));
        if !semantically_equal(&new, &old) {
            errs.push(FieldError::invalid(
                child(field_path, key),
                new,
                FIELD_IMMUTABLE_ERROR_MSG,
            ));
        }
    }

    errs.extend(validate_common(new_meta, field_path, false));
    errs
}

/// Equality where an absent field, `null` and `""` are the same, as they are for the Go
/// structs upstream compares.
fn semantically_equal(a: &Value, b: &Value) -> bool {
    let empty = |v: &Value| v.is_null() || v.as_str() == Some("");
    a == b || (empty(a) && empty(b))
}

fn str_list(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_trailing_dash_drops_two_characters_like_upstream() {
        assert_eq!(mask_trailing_dash("abc-"), "aba");
        assert_eq!(mask_trailing_dash("-"), "-");
        assert_eq!(mask_trailing_dash("ab"), "ab");
    }

    #[test]
    fn go_quote_escapes_like_strconv_quote() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\n\t\u{1}"), r#""\n\t\x01""#);
        assert_eq!(go_quote("héllo"), "\"héllo\"");
        assert_eq!(go_quote("\u{200b}"), r#""\u200b""#);
    }

    #[test]
    fn go_json_escapes_html() {
        assert_eq!(
            go_json(&serde_json::json!(["<a&b>"])),
            r#"["\u003ca\u0026b\u003e"]"#
        );
    }
}
