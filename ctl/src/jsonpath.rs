//! kubectl's `-o jsonpath=TEMPLATE`: text with `{.a.b}`, `{.items[*].metadata.name}`,
//! `{range .items[*]}…{end}` and quoted literals (`{"\n"}`). Each `{…}` expression is
//! evaluated by jsonpath-rust (RFC 9535) as `$` + the expression; several results are joined
//! by spaces, strings print bare and other values as JSON, as kubectl does.

use jsonpath_rust::JsonPath;
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JsonPathError {
    #[error("unclosed action in template {0:?}")]
    Unclosed(String),
    #[error("{{range}} without {{end}} in template {0:?}")]
    UnclosedRange(String),
    #[error("unexpected {{end}} in template {0:?}")]
    UnexpectedEnd(String),
    #[error("error executing jsonpath {expression:?}: {message}")]
    Query { expression: String, message: String },
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Expression(String),
    Range(String, Vec<Node>),
}

/// Renders `template` against `root`.
pub fn render(template: &str, root: &Value) -> Result<String, JsonPathError> {
    let nodes = parse(template)?;
    let mut out = String::new();
    render_nodes(&nodes, root, &mut out)?;
    Ok(out)
}

fn parse(template: &str) -> Result<Vec<Node>, JsonPathError> {
    let mut stack: Vec<(String, Vec<Node>)> = vec![(String::new(), Vec::new())];
    let mut rest = template;
    while !rest.is_empty() {
        let Some(open) = rest.find('{') else {
            push(&mut stack, Node::Text(rest.to_string()));
            break;
        };
        if open > 0 {
            push(&mut stack, Node::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 1..];
        let close =
            closing_brace(after).ok_or_else(|| JsonPathError::Unclosed(template.to_string()))?;
        let action = after[..close].trim();
        rest = &after[close + 1..];
        if let Some(expression) = action.strip_prefix("range ") {
            stack.push((expression.trim().to_string(), Vec::new()));
        } else if action == "end" {
            if stack.len() < 2 {
                return Err(JsonPathError::UnexpectedEnd(template.to_string()));
            }
            let Some((expression, body)) = stack.pop() else {
                return Err(JsonPathError::UnexpectedEnd(template.to_string()));
            };
            push(&mut stack, Node::Range(expression, body));
        } else if let Some(literal) = quoted(action) {
            push(&mut stack, Node::Text(literal));
        } else {
            push(&mut stack, Node::Expression(action.to_string()));
        }
    }
    if stack.len() != 1 {
        return Err(JsonPathError::UnclosedRange(template.to_string()));
    }
    Ok(stack.pop().map(|(_, nodes)| nodes).unwrap_or_default())
}

fn push(stack: &mut [(String, Vec<Node>)], node: Node) {
    if let Some((_, nodes)) = stack.last_mut() {
        nodes.push(node);
    }
}

/// The `}` closing an action, skipping braces inside quoted strings.
fn closing_brace(text: &str) -> Option<usize> {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(_), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(q), c) if c == q && !escaped => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '}') => return Some(i),
            _ => {}
        }
        escaped = false;
    }
    None
}

/// A quoted literal action's text, with `\n`, `\t` and `\\` unescaped.
fn quoted(action: &str) -> Option<String> {
    let inner = action
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .or_else(|| action.strip_prefix('\'').and_then(|a| a.strip_suffix('\'')))?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn query<'a>(expression: &str, root: &'a Value) -> Result<Vec<&'a Value>, JsonPathError> {
    let path = match expression {
        "" | "$" | "@" | "." => return Ok(vec![root]),
        e if e.starts_with('$') => e.to_string(),
        e if e.starts_with('.') || e.starts_with('[') => format!("${e}"),
        e => format!("$.{e}"),
    };
    root.query(&path).map_err(|e| JsonPathError::Query {
        expression: expression.to_string(),
        message: e.to_string(),
    })
}

fn render_nodes(nodes: &[Node], root: &Value, out: &mut String) -> Result<(), JsonPathError> {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Expression(expression) => {
                let values = query(expression, root)?;
                let texts: Vec<String> = values.into_iter().map(value_text).collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range(expression, body) => {
                for value in query(expression, root)? {
                    render_nodes(body, value, out)?;
                }
            }
        }
    }
    Ok(())
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> Value {
        json!({"kind": "List", "items": [
            {"metadata": {"name": "a", "labels": {"app": "web"}}, "spec": {"replicas": 3}},
            {"metadata": {"name": "b"}, "spec": {"replicas": 1}},
        ]})
    }

    #[test]
    fn fields_and_wildcards() {
        assert_eq!(render("{.items[*].metadata.name}", &list()).unwrap(), "a b");
        assert_eq!(
            render("first={.items[0].spec.replicas}!", &list()).unwrap(),
            "first=3!"
        );
        assert_eq!(
            render("{.items[0].metadata.labels}", &list()).unwrap(),
            r#"{"app":"web"}"#
        );
        assert_eq!(render("{.nothing}", &list()).unwrap(), "");
    }

    #[test]
    fn ranges_and_literals() {
        assert_eq!(
            render(
                r#"{range .items[*]}{.metadata.name}{"\t"}{.spec.replicas}{"\n"}{end}"#,
                &list()
            )
            .unwrap(),
            "a\t3\nb\t1\n"
        );
        assert_eq!(render(r#"{'}'}"#, &list()).unwrap(), "}");
    }

    #[test]
    fn malformed_templates() {
        assert!(matches!(
            render("{.items", &list()),
            Err(JsonPathError::Unclosed(_))
        ));
        assert!(matches!(
            render("{range .items[*]}x", &list()),
            Err(JsonPathError::UnclosedRange(_))
        ));
        assert!(matches!(
            render("x{end}", &list()),
            Err(JsonPathError::UnexpectedEnd(_))
        ));
    }
}
