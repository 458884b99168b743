//! Label selector parsing, printing, matching and error messages.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use skiff_apimachinery::labels::{LabelSelectorError, Operator, Requirement, Selector};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse_err(s: &str) -> String {
    match Selector::parse(s) {
        Ok(sel) => panic!("{s:?} parsed as {sel}, expected an error"),
        Err(e) => e.to_string(),
    }
}

const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const LABEL_KEY_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

#[test]
fn good_selectors_print_canonically() {
    // (input, canonical form): keys sorted, whitespace dropped, set values sorted.
    let cases = [
        ("x=a,y=b,z=c", "x=a,y=b,z=c"),
        ("", ""),
        ("x!=a,y=b", "x!=a,y=b"),
        ("x=", "x="),
        ("x= ", "x="),
        ("x=,z= ", "x=,z="),
        ("x= ,z= ", "x=,z="),
        ("!x", "!x"),
        ("x>1", "x>1"),
        ("x>1,z<5", "x>1,z<5"),
        ("x==a", "x==a"),
        ("  y = b ,  x  ", "x,y=b"),
        ("x=a,a=x", "a=x,x=a"),
        ("x in (c,b,a)", "x in (a,b,c)"),
        ("x notin(b , a)", "x notin (a,b)"),
        ("x in ()", "x in ()"),
        ("x in (,a)", "x in (,a)"),
        ("x in (a,,b)", "x in (,a,b)"),
        ("x in (in,notin)", "x in (in,notin)"),
        ("in in (notin)", "in in (notin)"),
        ("example.com/app=web", "example.com/app=web"),
        ("\tapp\n=\rweb", "app=web"),
    ];
    for (input, canonical) in cases {
        let sel = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(sel.to_string(), canonical, "input {input:?}");
        // The canonical form parses back to the same selector.
        assert_eq!(
            Selector::parse(canonical).unwrap(),
            sel,
            "reparse {canonical:?}"
        );
    }
}

#[test]
fn parsed_requirements_have_operators_and_sorted_values() {
    let sel: Selector = "tier notin (b,a,b), app, !beta, env==prod, n<3"
        .parse()
        .unwrap();
    let got: Vec<(&str, Operator, Vec<&str>)> = sel
        .requirements()
        .iter()
        .map(|r| {
            (
                r.key(),
                r.operator(),
                r.values().iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("app", Operator::Exists, vec![]),
            ("beta", Operator::DoesNotExist, vec![]),
            ("env", Operator::DoubleEquals, vec!["prod"]),
            ("n", Operator::LessThan, vec!["3"]),
            ("tier", Operator::NotIn, vec!["a", "b"]),
        ]
    );
}

#[test]
fn syntax_errors_have_upstream_messages() {
    let cases = [
        ("x==a==b", "found '==', expected: ',' or 'end of string'"),
        ("!x=a", "found '=', expected: ',' or 'end of string'"),
        ("a=b,", "found '', expected: identifier after ','"),
        ("a=b,,c", "found ',', expected: identifier after ','"),
        (
            ",a",
            "found ',', expected: !, identifier, or 'end of string'",
        ),
        (
            "=a",
            "found '=', expected: !, identifier, or 'end of string'",
        ),
        (
            "a b",
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
        ),
        (
            "a!b",
            "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, gt, lt",
        ),
        (
            "!",
            "unable to parse requirement: found '', expected: identifier",
        ),
        (
            "!=a",
            "found '!=', expected: !, identifier, or 'end of string'",
        ),
        (
            "! =a",
            "unable to parse requirement: found '=', expected: identifier",
        ),
        (
            "a=(b)",
            "unable to parse requirement: found '(', expected: identifier",
        ),
        (
            "a in x",
            "unable to parse requirement: found 'x' expected: '('",
        ),
        (
            "a in",
            "unable to parse requirement: found '' expected: '('",
        ),
        (
            "a in (x",
            "unable to parse requirement: found '', expected: ',' or ')'",
        ),
        (
            "a in (x y)",
            "unable to parse requirement: found 'y', expected: ',' or ')'",
        ),
        (
            "a in (=)",
            "unable to parse requirement: found '=', expected: ',', ')' or identifier",
        ),
        (
            "a in (x,=)",
            "unable to parse requirement: found '=', expected: ',', or identifier",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(parse_err(input), want, "input {input:?}");
    }
}

#[test]
fn invalid_keys_and_values_have_upstream_messages() {
    assert_eq!(
        parse_err("x=a||y=b"),
        format!(
            "unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {LABEL_VALUE_MSG}"
        )
    );
    assert_eq!(
        parse_err("x<a"),
        "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"
    );
    // The key is checked with a nil field path upstream, which prints as <nil>.
    assert_eq!(
        parse_err("Foo/bar/baz=x"),
        "unable to parse requirement: <nil>: Invalid value: \"Foo/bar/baz\": a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
    );
    assert_eq!(
        parse_err("-x"),
        format!("unable to parse requirement: <nil>: Invalid value: \"-x\": {LABEL_KEY_NAME_MSG}")
    );
    // Several messages for one key are joined with "; ".
    assert_eq!(
        parse_err("x/"),
        format!(
            "unable to parse requirement: <nil>: Invalid value: \"x/\": name part must be non-empty; {LABEL_KEY_NAME_MSG}"
        )
    );
    let long = "v".repeat(64);
    assert_eq!(
        parse_err(&format!("k={long}")),
        format!(
            "unable to parse requirement: values[0][k]: Invalid value: \"{long}\": must be no more than 63 bytes"
        )
    );
    // Several invalid values aggregate as [e1, e2], values in sorted order.
    assert_eq!(
        parse_err("k in (-b,-a)"),
        format!(
            "unable to parse requirement: [values[0][k]: Invalid value: \"-a\": {LABEL_VALUE_MSG}, values[1][k]: Invalid value: \"-b\": {LABEL_VALUE_MSG}]"
        )
    );
    // Values are quoted the way Go's %q does.
    assert_eq!(
        parse_err("k=a\"b"),
        format!(
            "unable to parse requirement: values[0][k]: Invalid value: \"a\\\"b\": {LABEL_VALUE_MSG}"
        )
    );
    assert!(matches!(
        Selector::parse("x=-"),
        Err(LabelSelectorError::Requirement(_))
    ));
    assert!(matches!(
        Selector::parse("a=b,"),
        Err(LabelSelectorError::Syntax(_))
    ));
}

#[test]
fn matching_follows_upstream_semantics() {
    let set = labels(&[("x", "y"), ("n", "5"), ("empty", "")]);
    let matching = [
        "",
        "x=y",
        "x==y",
        "x!=z",
        "z!=y",
        "x in (y,z)",
        "x notin (a)",
        "z notin (a)",
        "x",
        "!z",
        "n>4",
        "n<6",
        "empty=",
        "empty in ()",
        "x=y,n,!z",
    ];
    for s in matching {
        assert!(
            Selector::parse(s).unwrap().matches(&set),
            "{s:?} should match"
        );
    }
    let not_matching = [
        "x=z",
        "x!=y",
        "z=y",
        "x in (a,b)",
        "z in (y)",
        "x notin (y)",
        "z",
        "!x",
        "n>5",
        "n<5",
        "x>1",
        "missing<9",
        "empty=a",
        "x=y,z",
    ];
    for s in not_matching {
        assert!(
            !Selector::parse(s).unwrap().matches(&set),
            "{s:?} should not match"
        );
    }
}

#[test]
fn matches_other_label_containers() {
    let sel = Selector::parse("app=web,!canary").unwrap();
    let mut hm = HashMap::new();
    hm.insert("app".to_string(), "web".to_string());
    assert!(sel.matches(&hm));
    assert!(sel.matches(&json!({"app": "web", "tier": "fe"})));
    assert!(!sel.matches(&json!({"app": "web", "canary": "true"})));
    assert!(!sel.matches(&json!(null)));
    let obj = json!({"app": "web"});
    assert!(sel.matches(obj.as_object().unwrap()));
    assert!(Selector::parse("!x").unwrap().matches(&json!(null)));
}

#[test]
fn empty_everything_and_nothing() {
    assert!(Selector::parse("").unwrap().is_empty());
    assert!(Selector::parse("  ").unwrap().is_empty());
    assert!(Selector::everything().is_empty());
    assert!(Selector::everything().matches(&labels(&[("a", "b")])));
    assert!(!Selector::parse("a").unwrap().is_empty());
    let nothing = Selector::nothing();
    assert!(!nothing.is_empty());
    assert!(nothing.matches_nothing());
    assert!(!nothing.matches(&labels(&[])));
    assert_eq!(nothing.to_string(), "");
}

#[test]
fn exact_match_introspection() {
    let sel = Selector::parse("a=1,b in (2),c in (3,4),d!=5").unwrap();
    assert_eq!(sel.requires_exact_match("a"), Some("1"));
    assert_eq!(sel.requires_exact_match("b"), Some("2"));
    assert_eq!(sel.requires_exact_match("c"), None);
    assert_eq!(sel.requires_exact_match("d"), None);
    assert_eq!(sel.requires_exact_match("e"), None);
}

#[test]
fn from_set_requires_each_pair() {
    let set = labels(&[("b", "2"), ("a", "1")]);
    let sel = Selector::from_set(&set);
    assert_eq!(sel.to_string(), "a=1,b=2");
    assert!(sel.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
    assert!(!sel.matches(&labels(&[("a", "1")])));
    assert!(Selector::from_set(&BTreeMap::new()).is_empty());
}

#[test]
fn from_label_selector_converts_match_labels_and_expressions() {
    let sel = Selector::from_label_selector(
        &json!({"app": "web"}),
        &json!([
            {"key": "tier", "operator": "In", "values": ["b", "a"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
            {"key": "team", "operator": "Exists", "values": []},
        ]),
    )
    .unwrap();
    assert_eq!(
        sel.to_string(),
        "app=web,!canary,env notin (dev),team,tier in (a,b)"
    );
    assert!(sel.matches(&json!({"app": "web", "tier": "a", "team": "x"})));
    assert!(!sel.matches(&json!({"app": "web", "tier": "c", "team": "x"})));
    assert!(!sel.matches(&json!({"app": "web", "tier": "a", "team": "x", "canary": "1"})));
    assert!(!sel.matches(&json!({"app": "web", "tier": "a", "team": "x", "env": "dev"})));

    assert!(
        Selector::from_label_selector(&json!(null), &json!(null))
            .unwrap()
            .is_empty()
    );
    assert!(
        Selector::from_label_selector(&json!({}), &json!([]))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn from_label_selector_value_null_matches_nothing() {
    let nothing = Selector::from_label_selector_value(&json!(null)).unwrap();
    assert!(nothing.matches_nothing());
    let everything = Selector::from_label_selector_value(&json!({})).unwrap();
    assert!(everything.is_empty());
    let sel = Selector::from_label_selector_value(
        &json!({"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "c", "operator": "Exists"}]}),
    )
    .unwrap();
    assert_eq!(sel.to_string(), "a=b,c");
}

#[test]
fn from_label_selector_errors_have_upstream_messages() {
    let err = |labels: serde_json::Value, exprs: serde_json::Value| {
        Selector::from_label_selector(&labels, &exprs)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(json!(null), json!([{"key": "a", "operator": "Foo"}])),
        "\"Foo\" is not a valid label selector operator"
    );
    assert_eq!(
        err(json!(null), json!([{"key": "a"}])),
        "\"\" is not a valid label selector operator"
    );
    // Upstream hands a nil slice to NewRequirement, which Go prints as null.
    assert_eq!(
        err(json!(null), json!([{"key": "a", "operator": "In"}])),
        "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"
    );
    assert_eq!(
        err(
            json!(null),
            json!([{"key": "a", "operator": "Exists", "values": ["x"]}])
        ),
        "values: Invalid value: [\"x\"]: values set must be empty for exists and does not exist"
    );
    assert_eq!(
        err(json!({"a b": "-x"}), json!(null)),
        format!(
            "[key: Invalid value: \"a b\": {LABEL_KEY_NAME_MSG}, values[0][a b]: Invalid value: \"-x\": {LABEL_VALUE_MSG}]"
        )
    );
    assert_eq!(
        err(json!({"a": 1}), json!(null)),
        "matchLabels[a]: Invalid value: 1: must be of type string"
    );
    assert_eq!(
        err(json!(null), json!({"key": "a"})),
        "matchExpressions: Invalid value: {\"key\":\"a\"}: must be of type array"
    );
    assert_eq!(
        err(
            json!(null),
            json!([{"key": "a", "operator": "In", "values": [1]}])
        ),
        "matchExpressions[0].values[0]: Invalid value: 1: must be of type string"
    );
    assert!(matches!(
        Selector::from_label_selector(&json!(null), &json!([{"key": "a", "operator": "Foo"}])),
        Err(LabelSelectorError::UnknownOperator(op)) if op == "Foo"
    ));
}

#[test]
fn requirement_new_validates_like_new_requirement() {
    let r = Requirement::new("app", Operator::In, vec!["a".into(), "b".into()]).unwrap();
    assert_eq!(r.to_string(), "app in (a,b)");
    assert!(r.matches(&json!({"app": "b"})));

    let e = |key: &str, op: Operator, values: &[&str]| {
        Requirement::new(key, op, values.iter().map(|v| v.to_string()).collect())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        e("a", Operator::In, &[]),
        "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
    );
    assert_eq!(
        e("a", Operator::Equals, &["x", "y"]),
        "values: Invalid value: [\"x\",\"y\"]: exact-match compatibility requires one single value"
    );
    assert_eq!(
        e("a", Operator::GreaterThan, &[]),
        "values: Invalid value: []: for 'Gt', 'Lt' operators, exactly one value is required"
    );
    // "-1" is an integer but not a valid label value.
    assert_eq!(
        e("a", Operator::LessThan, &["-1"]),
        format!("values[0][a]: Invalid value: \"-1\": {LABEL_VALUE_MSG}")
    );
    assert_eq!(
        e("a", Operator::GreaterThan, &["x"]),
        "values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
    );
}
