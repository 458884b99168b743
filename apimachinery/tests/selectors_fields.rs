//! Field selector parsing, escaping, matching and error messages.

use std::collections::BTreeMap;

use skiff_apimachinery::fields::{
    FieldOp, FieldRequirement, FieldSelector, FieldSelectorError, escape_value, unescape_value,
};

fn req(field: &str, op: FieldOp, value: &str) -> FieldRequirement {
    FieldRequirement {
        field: field.into(),
        op,
        value: value.into(),
    }
}

fn getter(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |f: &str| map.get(f).cloned()
}

#[test]
fn parses_terms_into_requirements() {
    let sel =
        FieldSelector::parse("status.phase!=Running,metadata.name==foo,spec.nodeName=").unwrap();
    // Terms are sorted as strings before parsing, like upstream.
    assert_eq!(
        sel.requirements(),
        &[
            req("metadata.name", FieldOp::Eq, "foo"),
            req("spec.nodeName", FieldOp::Eq, ""),
            req("status.phase", FieldOp::NotEq, "Running"),
        ]
    );
    assert_eq!(
        sel.to_string(),
        "metadata.name=foo,spec.nodeName=,status.phase!=Running"
    );
    assert_eq!(
        sel.fields(),
        vec!["metadata.name", "spec.nodeName", "status.phase"]
    );
}

#[test]
fn good_selectors_round_trip() {
    for s in [
        "x=a,y=b,z=c",
        "",
        "x!=a,y=b",
        r"x=a||y\=b",
        r"x=a\=\=b",
        r"x=a\,b\\",
    ] {
        let sel = FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert_eq!(sel.to_string(), s);
    }
    // Empty terms are skipped; == prints as =.
    assert_eq!(FieldSelector::parse(",a==b,,").unwrap().to_string(), "a=b");
}

#[test]
fn escaped_values_unescape() {
    let sel = FieldSelector::parse(r"metadata.name=a\,b\=c\\d,x=1").unwrap();
    assert_eq!(sel.requirements()[0].value, r"a,b=c\d");
    assert_eq!(sel.requirements()[1], req("x", FieldOp::Eq, "1"));
    assert_eq!(escape_value(r"a,b=c\d"), r"a\,b\=c\\d");
    assert_eq!(unescape_value(r"a\,b\=c\\d").unwrap(), r"a,b=c\d");
    assert_eq!(unescape_value("plain").unwrap(), "plain");
}

#[test]
fn bad_selectors_have_upstream_messages() {
    let cases = [
        ("x", "invalid selector: 'x'; can't understand 'x'"),
        ("x=a,b", "invalid selector: 'x=a,b'; can't understand 'b'"),
        (
            "x in (a)",
            "invalid selector: 'x in (a)'; can't understand 'x in (a)'",
        ),
        // The code point of the unescaped character is printed, as upstream does.
        (
            "x==a==b",
            "invalid field selector: unescaped character in value: 61",
        ),
        (
            "x=a||y=b",
            "invalid field selector: unescaped character in value: 61",
        ),
        (
            r"k=\a",
            r"invalid field selector: invalid escape sequence: \a",
        ),
        (
            r"k=a\",
            r"invalid field selector: invalid escape sequence: \",
        ),
    ];
    for (input, want) in cases {
        let err = FieldSelector::parse(input).unwrap_err();
        assert_eq!(err.to_string(), want, "input {input:?}");
    }
    assert!(matches!(
        FieldSelector::parse("x"),
        Err(FieldSelectorError::InvalidTerm { .. })
    ));
    assert_eq!(
        unescape_value("a,b"),
        Err(FieldSelectorError::UnescapedCharacter(','))
    );
}

#[test]
fn first_operator_splits_the_term() {
    // Field names are not escaped: the first operator wins, the rest is the value.
    let sel = FieldSelector::parse(r"a!=\=b").unwrap();
    assert_eq!(sel.requirements(), &[req("a", FieldOp::NotEq, "=b")]);
    let sel = FieldSelector::parse("=b").unwrap();
    assert_eq!(sel.requirements(), &[req("", FieldOp::Eq, "b")]);
}

#[test]
fn matching_treats_missing_fields_as_empty() {
    let obj = getter(&[("metadata.name", "foo"), ("status.phase", "Running")]);
    let yes = [
        "",
        "metadata.name=foo",
        "metadata.name==foo",
        "metadata.name!=bar",
        "spec.nodeName=",
        "spec.nodeName!=node1",
        "metadata.name=foo,status.phase=Running",
    ];
    for s in yes {
        assert!(
            FieldSelector::parse(s).unwrap().matches(&obj),
            "{s:?} should match"
        );
    }
    let no = [
        "metadata.name=bar",
        "metadata.name!=foo",
        "spec.nodeName=node1",
        "metadata.name=foo,status.phase!=Running",
    ];
    for s in no {
        assert!(
            !FieldSelector::parse(s).unwrap().matches(&obj),
            "{s:?} should not match"
        );
    }
}

#[test]
fn unsupported_fields_are_reported_by_name() {
    let sel = FieldSelector::parse("metadata.name=a,spec.foo=b,metadata.name!=c").unwrap();
    assert_eq!(sel.fields(), vec!["metadata.name", "spec.foo"]);
    let supported = |f: &str| matches!(f, "metadata.name" | "metadata.namespace");
    let err = sel.check_supported(supported).unwrap_err();
    assert_eq!(err.to_string(), "field label not supported: spec.foo");
    assert_eq!(err, FieldSelectorError::UnsupportedField("spec.foo".into()));
    assert!(
        FieldSelector::parse("metadata.namespace=x")
            .unwrap()
            .check_supported(supported)
            .is_ok()
    );
}

#[test]
fn empty_and_exact_match() {
    assert!(FieldSelector::parse("").unwrap().is_empty());
    assert!(FieldSelector::everything().is_empty());
    assert!(FieldSelector::everything().matches(|_| None));
    let sel: FieldSelector = "metadata.name=foo,spec.nodeName!=n".parse().unwrap();
    assert!(!sel.is_empty());
    assert_eq!(sel.requires_exact_match("metadata.name"), Some("foo"));
    assert_eq!(sel.requires_exact_match("spec.nodeName"), None);
    let built = FieldSelector::from_requirements(vec![req("metadata.name", FieldOp::Eq, "a,b")]);
    assert_eq!(built.to_string(), r"metadata.name=a\,b");
    assert_eq!(FieldSelector::parse(&built.to_string()).unwrap(), built);
}
