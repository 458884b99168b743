//! DNS names, qualified names and label values: accepted values and exact messages.

use skiff_apimachinery::validation::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_label_value, name_is_dns_label, name_is_dns_subdomain, name_is_dns1035_label,
};

const SUBDOMAIN_MSG: &str = r"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const KEY_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn none() -> Vec<String> {
    Vec::new()
}

#[test]
fn dns1123_subdomain() {
    for ok in [
        "a",
        "ab",
        "abc",
        "a1",
        "a-1",
        "a--1--2--b",
        "0",
        "01",
        "a.a",
        "a.b.c.d",
        "1.2.3.4",
        "a-b.c-d",
        &"a".repeat(253),
        &format!("{}.{}", "a".repeat(63), "b".repeat(63)),
    ] {
        assert_eq!(is_dns1123_subdomain(ok), none(), "{ok:?}");
    }
    for bad in [
        "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a",
        "a_b", "1_", "_1", "1_2", ".", "a.", ".a", "a..b", "1.", ".1", "1..2", " ", "a ", " a",
        "a b", "1 ", " 1", "1 2", "A.a", "aB.a", "ab.A", "A1.a", "a1.A", "A.1", "aB.1", "A1.1",
        "1.A", "A-1.1", "1-A.1", "a@b", "a,b", "a_b", "a;b", "a:b", "a%b", "a?b", "a$b", "a\n",
        "é",
    ] {
        assert_eq!(is_dns1123_subdomain(bad), vec![SUBDOMAIN_MSG], "{bad:?}");
    }
    assert_eq!(
        is_dns1123_subdomain(&"a".repeat(254)),
        vec!["must be no more than 253 characters"]
    );
    assert_eq!(
        is_dns1123_subdomain(&"A".repeat(254)),
        vec!["must be no more than 253 characters", SUBDOMAIN_MSG]
    );
}

#[test]
fn dns1123_label() {
    for ok in [
        "a",
        "ab",
        "abc",
        "a1",
        "a-1",
        "a--1--2--b",
        "0",
        "01",
        "012",
        "1a",
        "1-a",
        &"a".repeat(63),
    ] {
        assert_eq!(is_dns1123_label(ok), none(), "{ok:?}");
    }
    for bad in [
        "", "A", "ABC", "aBc", "A1", "-", "a-", "-a", "_", "a_", "a_b", " ", "a b", "a@b",
    ] {
        assert_eq!(is_dns1123_label(bad), vec![LABEL_MSG], "{bad:?}");
    }
    // A valid subdomain that is not a valid label only fails on its dots.
    assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
    assert_eq!(is_dns1123_label("a..b"), vec![LABEL_MSG]);
    assert_eq!(
        is_dns1123_label(&"a".repeat(64)),
        vec!["must be no more than 63 characters"]
    );
}

#[test]
fn dns1035_label() {
    for ok in ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", &"a".repeat(63)] {
        assert_eq!(is_dns1035_label(ok), none(), "{ok:?}");
    }
    for bad in [
        "0", "01", "012", "1a", "1-a", "", "A", "ABC", "aBc", "A1", "-", "a-", "-a", "a.b", "a_b",
    ] {
        assert_eq!(is_dns1035_label(bad), vec![DNS1035_MSG], "{bad:?}");
    }
    assert_eq!(
        is_dns1035_label(&"a".repeat(64)),
        vec!["must be no more than 63 characters"]
    );
}

#[test]
fn qualified_name() {
    for ok in [
        "simple",
        "now-with-dashes",
        "1-starts-with-num",
        "1234",
        "simple/simple",
        "now-with-dashes/simple",
        "now-with-dashes/now-with-dashes",
        "now.with.dots/simple",
        "now-with.dashes-and.dots/simple",
        "1-num.2-num/3-num",
        "1234/5678",
        "1.2.3.4/5678",
        "Uppercase_Is_OK_123",
        "example.com/Uppercase_Is_OK_123",
        "requests.storage-foo",
        &"a".repeat(63),
        &format!("{}/{}", "a".repeat(253), "b".repeat(63)),
    ] {
        assert_eq!(is_qualified_name(ok), none(), "{ok:?}");
    }
    for bad in [
        "nospecialchars%^=@",
        "cantendwithadash-",
        "-cantstartwithadash-",
        "only/one/slash",
        "Example.com/x",
    ] {
        assert!(!is_qualified_name(bad).is_empty(), "{bad:?}");
    }
    assert_eq!(is_qualified_name("-x"), vec![KEY_NAME_MSG]);
    assert_eq!(
        is_qualified_name("/x"),
        vec!["prefix part must be non-empty"]
    );
    assert_eq!(
        is_qualified_name("x/"),
        vec![
            "name part must be non-empty".to_string(),
            KEY_NAME_MSG.to_string()
        ]
    );
    assert_eq!(
        is_qualified_name("Example.com/x"),
        vec![format!("prefix part {SUBDOMAIN_MSG}")]
    );
    assert_eq!(
        is_qualified_name(&"a".repeat(64)),
        vec!["name part must be no more than 63 bytes"]
    );
    // The prefix limit is worded in bytes here, unlike is_dns1123_subdomain.
    assert_eq!(
        is_qualified_name(&format!("{}/b", "a".repeat(254))),
        vec!["prefix part must be no more than 253 bytes"]
    );
    assert_eq!(
        is_qualified_name("a/b/c"),
        vec![
            "a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    );
}

#[test]
fn label_value() {
    for ok in [
        "",
        "simple",
        "now-with-dashes",
        "1-starts-with-num",
        "end-with-num-1",
        "1234",
        "Upper_Case.Dots-1",
        &"a".repeat(63),
    ] {
        assert_eq!(is_valid_label_value(ok), none(), "{ok:?}");
    }
    for bad in [
        "nospecialchars%^=@",
        "Tama-nui-te-rā.is.Māori.sun",
        "\\backslashes\\are\\bad",
        "-starts-with-dash",
        "ends-with-dash-",
        ".starts.with.dot",
        "ends.with.dot.",
        "a/b",
        "a b",
    ] {
        assert_eq!(is_valid_label_value(bad), vec![VALUE_MSG], "{bad:?}");
    }
    assert_eq!(
        is_valid_label_value(&"a".repeat(64)),
        vec!["must be no more than 63 bytes"]
    );
}

#[test]
fn name_validators_accept_generate_name_prefixes() {
    // A prefix may end in '-' because random characters are appended.
    assert_eq!(name_is_dns_subdomain("web-", true), none());
    assert_eq!(name_is_dns_subdomain("web-", false), vec![SUBDOMAIN_MSG]);
    assert_eq!(name_is_dns_label("ns-", true), none());
    assert_eq!(name_is_dns1035_label("svc-", true), none());
    assert_eq!(name_is_dns1035_label("1svc-", true), vec![DNS1035_MSG]);
    assert_eq!(name_is_dns_subdomain("Web-", true), vec![SUBDOMAIN_MSG]);
    assert_eq!(name_is_dns_subdomain("-", true), vec![SUBDOMAIN_MSG]);
}
