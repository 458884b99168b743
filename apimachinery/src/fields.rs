//! Field selectors: the `fieldSelector` query syntax (`metadata.name=foo,status.phase!=Running`).
//!
//! Terms are `field=value`, `field==value` or `field!=value`, joined by `,` (AND). In values,
//! `\,`, `\=` and `\\` stand for a literal comma, equals sign and backslash; field names
//! have no escaping. Parsing, matching and error messages follow upstream's
//! `k8s.io/apimachinery/pkg/fields`.

use std::fmt;
use std::str::FromStr;

/// How a [`FieldRequirement`] compares the field with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOp {
    /// `field=value` or `field==value`.
    Eq,
    /// `field!=value`.
    NotEq,
}

impl FieldOp {
    /// The operator as written in a selector (`=` or `!=`).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldOp::Eq => "=",
            FieldOp::NotEq => "!=",
        }
    }
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field label, e.g. `metadata.name`.
    pub field: String,
    /// Equal or not equal.
    pub op: FieldOp,
    /// The value, unescaped.
    pub value: String,
}

impl FieldRequirement {
    /// Whether a field whose value is `actual` satisfies this term; a missing field has
    /// the value `""`, as upstream's `Fields.Get`.
    pub fn matches_value(&self, actual: &str) -> bool {
        match self.op {
            FieldOp::Eq => actual == self.value,
            FieldOp::NotEq => actual != self.value,
        }
    }
}

/// `field=value` or `field!=value`, with the value escaped so it parses back.
impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.field,
            self.op.as_str(),
            escape_value(&self.value)
        )
    }
}

/// A field selector that could not be parsed or is not supported. `Display` is upstream's
/// message, suitable as the message of a 400 BadRequest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// A term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    InvalidTerm {
        /// The whole selector.
        selector: String,
        /// The term that could not be split.
        term: String,
    },
    /// A backslash followed by something other than `\`, `,` or `=`, or a trailing one.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscapeSequence(String),
    /// An unescaped `,` or `=` in a value. Upstream prints the character's code point
    /// (`61` for `=`), and so does this.
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.0))]
    UnescapedCharacter(char),
    /// A field label the resource does not support, as a server reports it.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// A parsed field selector: the AND of its requirements. The empty selector matches
/// everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// A selector that matches everything.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parses a `fieldSelector` string. Empty terms (`a=b,,c=d`, `""`) are ignored. Terms are
    /// sorted as strings first, as upstream does, so equal selectors print equally.
    pub fn parse(selector: &str) -> Result<Self, FieldSelectorError> {
        let mut terms = split_terms(selector);
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let Some((field, op, raw_value)) = split_term(term) else {
                return Err(FieldSelectorError::InvalidTerm {
                    selector: selector.to_string(),
                    term: term.to_string(),
                });
            };
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value: unescape_value(raw_value)?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Builds a selector from requirements, e.g. for `metadata.name=<name>` lookups.
    pub fn from_requirements(requirements: Vec<FieldRequirement>) -> Self {
        FieldSelector { requirements }
    }

    /// The requirements, in parse order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// True when the selector restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object matches. `get` returns a field's value by label (e.g.
    /// `metadata.name`); `None` is treated as `""`, like upstream.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches_value(get(&r.field).as_deref().unwrap_or("")))
    }

    /// The distinct field labels used, in order of first use; lets a server check them
    /// against what a resource supports.
    pub fn fields(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.requirements {
            if !out.contains(&r.field.as_str()) {
                out.push(&r.field);
            }
        }
        out
    }

    /// Fails with `field label not supported: <name>` for the first field label that
    /// `is_supported` rejects.
    pub fn check_supported(
        &self,
        is_supported: impl Fn(&str) -> bool,
    ) -> Result<(), FieldSelectorError> {
        match self.fields().into_iter().find(|f| !is_supported(f)) {
            Some(field) => Err(FieldSelectorError::UnsupportedField(field.to_string())),
            None => Ok(()),
        }
    }

    /// If the selector requires `field` to equal a single value, that value; lets a
    /// server narrow a lookup (e.g. by `metadata.name`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op == FieldOp::Eq)
            .map(|r| r.value.as_str())
    }
}

/// Terms joined by `,`, values escaped (`==` prints as `=`).
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = FieldSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// Escapes a literal value for use in a field selector (`\` → `\\`, `,` → `\,`,
/// `=` → `\=`).
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reverses [`escape_value`]. Unescaped `,` or `=` and unknown escapes are errors.
pub fn unescape_value(value: &str) -> Result<String, FieldSelectorError> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(other) => {
                    return Err(FieldSelectorError::InvalidEscapeSequence(format!(
                        "\\{other}"
                    )));
                }
                None => {
                    return Err(FieldSelectorError::InvalidEscapeSequence("\\".to_string()));
                }
            },
            ',' | '=' => return Err(FieldSelectorError::UnescapedCharacter(c)),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Splits on commas that are not escaped; escapes stay in the terms for
/// [`unescape_value`].
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at the first operator. Field names cannot be escaped, so the first
/// `!=`, `==` or `=` (tried in that order at each position) is the split point.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op_str, op) in [
            ("!=", FieldOp::NotEq),
            ("==", FieldOp::Eq),
            ("=", FieldOp::Eq),
        ] {
            if let Some(value) = rest.strip_prefix(op_str) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}
