//! Label selectors: parsing the `labelSelector` query syntax, converting the
//! metav1.LabelSelector JSON form, and matching against label sets.
//!
//! The grammar, the canonical `Display` form and the error messages follow upstream's
//! `k8s.io/apimachinery/pkg/labels`, so a bad selector in a list request yields the same
//! 400 message as a real API server (`unable to parse requirement: ...`).
//!
//! ```text
//! <selector>    ::= <requirement> | <requirement> "," <selector>
//! <requirement> ::= [!] KEY [ ("in" | "notin") "(" VALUES ")" | ("=" | "==" | "!=") VALUE
//!                             | (">" | "<") INTEGER ]
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use serde_json::Value;

use crate::validation::{
    BadValue, FieldError, aggregate_message, go_quote, is_qualified_name, is_valid_label_value,
};

/// How a [`Requirement`] relates a label's value to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// `key in (a,b)`: the label exists and its value is one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or its value is none of the values.
    NotIn,
    /// `key=a`: the label exists with this value.
    Equals,
    /// `key==a`: same as [`Operator::Equals`].
    DoubleEquals,
    /// `key!=a`: the label is absent or has another value.
    NotEquals,
    /// `key`: the label exists.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>1`: the label's value is an integer greater than the value.
    GreaterThan,
    /// `key<1`: the label's value is an integer less than the value.
    LessThan,
}

impl Operator {
    /// Upstream's `selection.Operator` string (`in`, `notin`, `=`, `==`, `!=`, `exists`,
    /// `!`, `gt`, `lt`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Operators that take a value, in upstream's order; used in "expected:" messages.
const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

/// Key or value errors of one requirement, shown as upstream's aggregated field errors
/// (one message, or `[m1, m2]`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", aggregate_message(.0))]
pub struct InvalidRequirement(pub Vec<FieldError>);

/// Why one requirement of a selector string could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequirementError {
    /// Unexpected token, e.g. `found 'b', expected: in, notin, =, ==, !=, gt, lt`.
    #[error("{0}")]
    Syntax(String),
    /// The key or a value is not valid.
    #[error(transparent)]
    Invalid(#[from] InvalidRequirement),
}

/// A label selector that could not be parsed or built. `Display` is upstream's message,
/// suitable as the message of a 400 BadRequest.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelSelectorError {
    /// Unexpected token between requirements, e.g.
    /// `found '', expected: identifier after ','`.
    #[error("{0}")]
    Syntax(String),
    /// A requirement of a selector string is malformed or invalid.
    #[error("unable to parse requirement: {0}")]
    Requirement(RequirementError),
    /// A requirement built from a metav1.LabelSelector (or [`Requirement::new`]) is
    /// invalid, or the JSON does not have the LabelSelector shape.
    #[error(transparent)]
    Invalid(#[from] InvalidRequirement),
    /// A matchExpressions operator other than In, NotIn, Exists and DoesNotExist.
    #[error("{} is not a valid label selector operator", go_quote(.0))]
    UnknownOperator(String),
}

/// Read access to a set of labels, so selectors can match whatever map a caller holds.
pub trait Labels {
    /// The value of label `key`, if present.
    fn get_label(&self, key: &str) -> Option<&str>;

    /// Whether label `key` is present.
    fn has_label(&self, key: &str) -> bool {
        self.get_label(key).is_some()
    }
}

impl Labels for BTreeMap<String, String> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// A JSON object of string values, e.g. `metadata.labels`. Non-string values count as
/// absent.
impl Labels for serde_json::Map<String, Value> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// A JSON value: an object is read as [`serde_json::Map`]; anything else (including `null`,
/// i.e. no labels) has no labels.
impl Labels for Value {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.as_object().and_then(|m| m.get_label(key))
    }
}

impl<L: Labels + ?Sized> Labels for &L {
    fn get_label(&self, key: &str) -> Option<&str> {
        (**self).get_label(key)
    }
}

/// One condition of a selector: a key, an operator and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, validating it as upstream's `NewRequirement`: the key must be a
    /// qualified name, values valid label values; In/NotIn need at least one value,
    /// the equality operators exactly one, Exists/DoesNotExist none, Gt/Lt one integer.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Self, InvalidRequirement> {
        Self::build(key.into(), operator, values, false)
    }

    /// `empty_is_nil` renders an empty value list as `null` rather than `[]` in messages:
    /// upstream passes a nil slice when converting a LabelSelector without values, and Go
    /// marshals that as `null`.
    fn build(
        key: String,
        operator: Operator,
        values: Vec<String>,
        empty_is_nil: bool,
    ) -> Result<Self, InvalidRequirement> {
        let mut errs = Vec::new();
        let key_errs = is_qualified_name(&key);
        if !key_errs.is_empty() {
            errs.push(FieldError::invalid(
                "key",
                key.as_str(),
                key_errs.join("; "),
            ));
        }
        let values_value = || {
            if values.is_empty() && empty_is_nil {
                BadValue::Json(Value::Null)
            } else {
                BadValue::from(values.clone())
            }
        };
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    errs.push(FieldError::invalid(
                        "values",
                        values_value(),
                        "for 'in', 'notin' operators, values set can't be empty",
                    ));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    errs.push(FieldError::invalid(
                        "values",
                        values_value(),
                        "exact-match compatibility requires one single value",
                    ));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    errs.push(FieldError::invalid(
                        "values",
                        values_value(),
                        "values set must be empty for exists and does not exist",
                    ));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(FieldError::invalid(
                        "values",
                        values_value(),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(FieldError::invalid(
                            format!("values[{i}]"),
                            v.as_str(),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let value_errs = is_valid_label_value(v);
            if !value_errs.is_empty() {
                errs.push(FieldError::invalid(
                    format!("values[{i}][{key}]"),
                    v.as_str(),
                    value_errs.join("; "),
                ));
            }
        }
        if errs.is_empty() {
            Ok(Requirement {
                key,
                operator,
                values,
            })
        } else {
            Err(InvalidRequirement(errs))
        }
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, in the order given (sorted and deduplicated when parsed).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let has_value = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                labels.get_label(&self.key).is_some_and(has_value)
            }
            Operator::NotIn | Operator::NotEquals => {
                !labels.get_label(&self.key).is_some_and(has_value)
            }
            Operator::Exists => labels.has_label(&self.key),
            Operator::DoesNotExist => !labels.has_label(&self.key),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(actual) = labels
                    .get_label(&self.key)
                    .and_then(|v| v.parse::<i64>().ok())
                else {
                    return false;
                };
                let [wanted] = self.values.as_slice() else {
                    return false;
                };
                let Ok(wanted) = wanted.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > wanted
                } else {
                    actual < wanted
                }
            }
        }
    }
}

/// Upstream's canonical form: `!key`, `key`, `key=v`, `key in (a,b)` (values sorted).
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, parens) = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", false),
            Operator::DoubleEquals => ("==", false),
            Operator::NotEquals => ("!=", false),
            Operator::In => (" in ", true),
            Operator::NotIn => (" notin ", true),
            Operator::GreaterThan => (">", false),
            Operator::LessThan => ("<", false),
        };
        f.write_str(op)?;
        if parens {
            f.write_str("(")?;
        }
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        f.write_str(&values.join(","))?;
        if parens {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: the AND of its requirements.
///
/// The empty selector (from `""` or an empty LabelSelector) matches everything; the
/// "nothing" selector (from a `null` LabelSelector) matches no object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl Selector {
    /// A selector that matches every label set.
    pub fn everything() -> Self {
        Selector::default()
    }

    /// A selector that matches nothing (upstream's `labels.Nothing()`).
    pub fn nothing() -> Self {
        Selector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the `labelSelector` query syntax, e.g. `app=web,tier in (a,b),!canary`.
    /// Requirements are sorted by key, as upstream does, so equal selectors print equally.
    pub fn parse(selector: &str) -> Result<Self, LabelSelectorError> {
        let mut requirements = Parser::new(selector).parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector {
            requirements,
            nothing: false,
        })
    }

    /// A selector requiring every `key=value` of `set` (upstream's `SelectorFromSet`). No
    /// validation is done, as upstream; use [`Selector::from_label_selector`] to validate.
    pub fn from_set<'a, I>(set: I) -> Self
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        let mut requirements: Vec<Requirement> = set
            .into_iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector {
            requirements,
            nothing: false,
        }
    }

    /// Converts the parts of a metav1.LabelSelector: `match_labels` is a JSON object of
    /// strings, `match_expressions` a list of `{key, operator, values}` with operators In,
    /// NotIn, Exists and DoesNotExist. Either may be `null`. Both empty gives
    /// [`Selector::everything`].
    pub fn from_label_selector(
        match_labels: &Value,
        match_expressions: &Value,
    ) -> Result<Self, LabelSelectorError> {
        let mut requirements = Vec::new();
        match match_labels {
            Value::Null => {}
            Value::Object(labels) => {
                for (k, v) in labels {
                    let Some(v) = v.as_str() else {
                        return Err(type_error(format!("matchLabels[{k}]"), v, "string"));
                    };
                    requirements.push(Requirement::new(
                        k.as_str(),
                        Operator::Equals,
                        vec![v.to_string()],
                    )?);
                }
            }
            other => return Err(type_error("matchLabels".into(), other, "object")),
        }
        match match_expressions {
            Value::Null => {}
            Value::Array(exprs) => {
                for (i, expr) in exprs.iter().enumerate() {
                    requirements.push(expression_requirement(i, expr)?);
                }
            }
            other => return Err(type_error("matchExpressions".into(), other, "array")),
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector {
            requirements,
            nothing: false,
        })
    }

    /// Converts a whole metav1.LabelSelector JSON value, as upstream's
    /// `LabelSelectorAsSelector`: `null` gives [`Selector::nothing`], an object its
    /// `matchLabels` and `matchExpressions`.
    pub fn from_label_selector_value(selector: &Value) -> Result<Self, LabelSelectorError> {
        match selector {
            Value::Null => Ok(Selector::nothing()),
            Value::Object(obj) => Selector::from_label_selector(
                obj.get("matchLabels").unwrap_or(&Value::Null),
                obj.get("matchExpressions").unwrap_or(&Value::Null),
            ),
            other => Err(type_error("selector".into(), other, "object")),
        }
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True when the selector does not restrict anything (matches every label set).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for the selector that matches nothing.
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// If the selector pins label `key` to a single value (`key=v`, `key==v` or
    /// `key in (v)`), that value; lets a server narrow a lookup.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => {
                Some(value.as_str())
            }
            _ => None,
        }
    }
}

/// Requirements joined by `,` (the nothing selector prints as `""`, like upstream).
impl fmt::Display for Selector {
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

impl FromStr for Selector {
    type Err = LabelSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

fn type_error(field: String, value: &Value, want: &str) -> LabelSelectorError {
    LabelSelectorError::Invalid(InvalidRequirement(vec![FieldError::type_invalid(
        field,
        value,
        format!("must be of type {want}"),
    )]))
}

/// One `matchExpressions` entry as a requirement.
fn expression_requirement(index: usize, expr: &Value) -> Result<Requirement, LabelSelectorError> {
    let path = format!("matchExpressions[{index}]");
    let Value::Object(obj) = expr else {
        return Err(type_error(path, expr, "object"));
    };
    let string_field = |name: &str| -> Result<&str, LabelSelectorError> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(""),
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(type_error(format!("{path}.{name}"), other, "string")),
        }
    };
    let key = string_field("key")?;
    let operator = match string_field("operator")? {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => return Err(LabelSelectorError::UnknownOperator(other.to_string())),
    };
    let values = match obj.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| type_error(format!("{path}.values[{j}]"), v, "string"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(type_error(format!("{path}.values"), other, "array")),
    };
    Ok(Requirement::build(key.to_string(), operator, values, true)?)
}

// ---------------------------------------------------------------------------------------
// Lexer and parser. They mirror upstream's token-by-token behaviour so that the same
// inputs are accepted and the same "found '...', expected: ..." messages come out.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special_symbol(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// Splits the input into tokens. Every special character is a token on its own, so
/// scanning always succeeds; only the parser can reject input.
fn lex(input: &str) -> Vec<(Token, String)> {
    let chars: Vec<char> = input.chars().collect();
    let mut pos = 0;
    let mut items = Vec::new();
    loop {
        while pos < chars.len() && is_whitespace(chars[pos]) {
            pos += 1;
        }
        let Some(&c) = chars.get(pos) else {
            items.push((Token::EndOfString, String::new()));
            return items;
        };
        if is_special_symbol(c) {
            // Longest run of special characters that is still an operator: `!=` and `==`
            // are one token, `=(` is `=` then `(`.
            let mut buffer = String::new();
            let mut last: Option<(Token, usize)> = None;
            let mut end = pos;
            while let Some(&c) = chars.get(end) {
                if !is_special_symbol(c) {
                    break;
                }
                buffer.push(c);
                end += 1;
                match keyword(&buffer) {
                    Some(tok) => last = Some((tok, end)),
                    None if last.is_some() => break,
                    None => {}
                }
            }
            // The first character alone is always an operator, so `last` is set.
            let (tok, tok_end) = last.unwrap_or((Token::EndOfString, end));
            items.push((tok, chars[pos..tok_end].iter().collect()));
            pos = tok_end;
        } else {
            let start = pos;
            while pos < chars.len() && !is_special_symbol(chars[pos]) && !is_whitespace(chars[pos])
            {
                pos += 1;
            }
            let literal: String = chars[start..pos].iter().collect();
            let tok = keyword(&literal).unwrap_or(Token::Identifier);
            items.push((tok, literal));
        }
    }
}

/// In a value position `in` and `notin` are plain identifiers (`x in (in)`); as a key
/// they are identifiers too, but after a key they are operators.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn new(input: &str) -> Self {
        Parser {
            items: lex(input),
            position: 0,
        }
    }

    fn peek(&self, context: Context) -> (Token, String) {
        // The lexer always ends with EndOfString and the parser never consumes past it,
        // but stay total rather than index out of bounds.
        let (tok, lit) = self
            .items
            .get(self.position)
            .cloned()
            .unwrap_or((Token::EndOfString, String::new()));
        match (context, tok) {
            (Context::Values, Token::In | Token::NotIn) => (Token::Identifier, lit),
            _ => (tok, lit),
        }
    }

    fn next(&mut self, context: Context) -> (Token, String) {
        let item = self.peek(context);
        if self.position < self.items.len() {
            self.position += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, LabelSelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.peek(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(LabelSelectorError::Requirement)?;
                    requirements.push(r);
                    let (tok, lit) = self.next(Context::Values);
                    match tok {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (tok, lit) = self.peek(Context::Values);
                            if tok != Token::Identifier && tok != Token::DoesNotExist {
                                return Err(LabelSelectorError::Syntax(format!(
                                    "found '{lit}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(LabelSelectorError::Syntax(format!(
                                "found '{lit}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(LabelSelectorError::Syntax(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, RequirementError> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(op) = inferred {
            return Ok(Requirement::new(key, op, Vec::new())?);
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Ok(Requirement::new(
            key,
            operator,
            values.into_iter().collect(),
        )?)
    }

    /// Reads `[!]KEY`; the operator is Exists or DoesNotExist when no other operator can
    /// follow.
    fn parse_key_and_infer_operator(
        &mut self,
    ) -> Result<(String, Option<Operator>), RequirementError> {
        let mut operator = None;
        let (mut tok, mut literal) = self.next(Context::Values);
        if tok == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (tok, literal) = self.next(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(RequirementError::Syntax(format!(
                "found '{literal}', expected: identifier"
            )));
        }
        let errs = is_qualified_name(&literal);
        if !errs.is_empty() {
            // Upstream validates the key here with a nil field path, which prints as
            // "<nil>"; real API servers answer exactly that.
            return Err(InvalidRequirement(vec![FieldError::invalid(
                "<nil>",
                literal.as_str(),
                errs.join("; "),
            )])
            .into());
        }
        let (next, _) = self.peek(Context::Values);
        if operator.is_none() && matches!(next, Token::EndOfString | Token::Comma) {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, RequirementError> {
        let (tok, lit) = self.next(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(RequirementError::Syntax(format!(
                    "found '{lit}', expected: {BINARY_OPERATORS}"
                )));
            }
        })
    }

    /// Reads `(a,b,...)`. Empty entries are the empty value: `()` is `{""}`.
    fn parse_values(&mut self) -> Result<BTreeSet<String>, RequirementError> {
        let (tok, lit) = self.next(Context::Values);
        if tok != Token::OpenPar {
            // Upstream's message really lacks the comma here.
            return Err(RequirementError::Syntax(format!(
                "found '{lit}' expected: '('"
            )));
        }
        let (tok, lit) = self.peek(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (tok, _) = self.next(Context::Values);
                if tok != Token::ClosedPar {
                    return Err(RequirementError::Syntax(format!(
                        "found '{lit}', expected: ')'"
                    )));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.next(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(RequirementError::Syntax(format!(
                "found '{lit}', expected: ',', ')' or identifier"
            ))),
        }
    }

    /// Reads a possibly empty, comma-separated list of possibly empty values, stopping
    /// before the closing parenthesis.
    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, RequirementError> {
        let mut values = BTreeSet::new();
        loop {
            let (tok, lit) = self.next(Context::Values);
            match tok {
                Token::Identifier => {
                    values.insert(lit);
                    let (next, next_lit) = self.peek(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => {
                            return Err(RequirementError::Syntax(format!(
                                "found '{next_lit}', expected: ',' or ')'"
                            )));
                        }
                    }
                }
                Token::Comma => {
                    // A comma next to a parenthesis or another comma stands for "".
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    let (next, _) = self.peek(Context::Values);
                    if next == Token::ClosedPar {
                        values.insert(String::new());
                        return Ok(values);
                    }
                    if next == Token::Comma {
                        values.insert(String::new());
                    }
                }
                _ => {
                    return Err(RequirementError::Syntax(format!(
                        "found '{lit}', expected: ',', or identifier"
                    )));
                }
            }
        }
    }

    /// Reads the single value after `=`, `==`, `!=`, `>` or `<`; nothing means "".
    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, RequirementError> {
        let (tok, _) = self.peek(Context::Values);
        if matches!(tok, Token::EndOfString | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit) = self.next(Context::Values);
        if tok == Token::Identifier {
            Ok(BTreeSet::from([lit]))
        } else {
            Err(RequirementError::Syntax(format!(
                "found '{lit}', expected: identifier"
            )))
        }
    }
}
