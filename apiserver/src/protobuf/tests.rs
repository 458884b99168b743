//! Tests of the protobuf decoder: real kubectl/helm bodies, objects encoded independently with
//! k8s-pb, the table against k8s-openapi and its own decoder constants, errors, and garbage.

use serde_json::{Value, json};

use super::decode;
use super::table::{self, Kind, Shape, Special};
use super::wire::enc;
use super::{MAGIC, ProtobufError, decode_body};

mod kubectl;
mod openapi;
mod prost_encoded;

/// A body as client-go frames it: prefix, then runtime.Unknown {typeMeta, raw}.
fn frame(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut tm = Vec::new();
    enc::string(&mut tm, 1, api_version);
    enc::string(&mut tm, 2, kind);
    let mut out = MAGIC.to_vec();
    enc::len(&mut out, 1, &tm);
    enc::len(&mut out, 2, raw);
    out
}

#[test]
fn envelope_and_special_constants_match_the_table() {
    let by_name = |name: &str| {
        table::messages()
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the table"))
    };
    let number = |msg: &str, field: &str| {
        by_name(msg)
            .fields
            .iter()
            .find(|f| f.json == field)
            .unwrap_or_else(|| panic!("{msg} has no field {field}"))
            .number
    };
    let unknown = "k8s.io.apimachinery.pkg.runtime.Unknown";
    assert_eq!(number(unknown, "typeMeta"), super::UNKNOWN_TYPE_META);
    assert_eq!(number(unknown, "-"), super::UNKNOWN_RAW);
    assert_eq!(
        number(unknown, "ContentEncoding"),
        super::UNKNOWN_CONTENT_ENCODING
    );
    assert_eq!(number(unknown, "ContentType"), super::UNKNOWN_CONTENT_TYPE);
    let tm = "k8s.io.apimachinery.pkg.runtime.TypeMeta";
    assert_eq!(number(tm, "apiVersion"), super::TYPE_META_API_VERSION);
    assert_eq!(number(tm, "kind"), super::TYPE_META_KIND);

    // The special types' fields are named by prost (snake case) or Go (no json tag).
    let quantity = by_name("k8s.io.apimachinery.pkg.api.resource.Quantity");
    assert_eq!(quantity.special, Some(Special::Quantity));
    assert_eq!(quantity.fields[0].number, decode::QUANTITY_STRING);
    assert_eq!(quantity.fields[0].kind, Kind::String);
    let intstr = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
    assert_eq!(number(intstr, "Type"), decode::INTSTR_TYPE);
    assert_eq!(number(intstr, "IntVal"), decode::INTSTR_INT);
    assert_eq!(number(intstr, "StrVal"), decode::INTSTR_STR);
    for t in [
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time",
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime",
    ] {
        assert_eq!(number(t, "seconds"), decode::TIME_SECONDS);
        assert_eq!(number(t, "nanos"), decode::TIME_NANOS);
    }
    let fields = by_name("k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1");
    assert_eq!(fields.fields[0].number, decode::RAW_BYTES);
    assert_eq!(fields.fields[0].kind, Kind::Bytes);
    // Not reached by a served kind today; k8s-pb's layouts, for when one is added.
    assert_eq!(decode::DURATION_NANOS, 1);
}

#[test]
fn table_is_well_formed() {
    let messages = table::messages();
    for m in messages {
        assert!(
            m.fields.windows(2).all(|w| w[0].number < w[1].number),
            "{}: fields must be sorted by number",
            m.name
        );
        for f in m.fields {
            if let Kind::Message(i) = f.kind {
                assert!(usize::from(i) < messages.len(), "{}.{}", m.name, f.json);
            }
            if f.inline {
                assert!(matches!(f.kind, Kind::Message(_)) && f.shape == Shape::Single);
            }
        }
    }
    let served = [
        ("v1", "Namespace"),
        ("v1", "Pod"),
        ("v1", "Node"),
        ("v1", "Service"),
        ("v1", "Endpoints"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("v1", "Event"),
        ("v1", "Binding"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
        ("coordination.k8s.io/v1", "Lease"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("autoscaling/v1", "Scale"),
        ("policy/v1", "Eviction"),
        ("v1", "DeleteOptions"),
        ("apps/v1", "DeleteOptions"),
        ("meta.k8s.io/v1", "DeleteOptions"),
    ];
    for (av, kind) in served {
        let m = table::root(av, kind).unwrap_or_else(|| panic!("{av} {kind} is not served"));
        assert!(
            m.name.ends_with(&format!(".{kind}")),
            "{av} {kind} -> {}",
            m.name
        );
    }
    // Every served kind must be a registered resource or a known subresource body.
    for r in table::roots() {
        let known = crate::registry::by_kind(
            r.api_version.rsplit_once('/').map_or("", |(g, _)| g),
            r.kind,
        )
        .is_some()
            || ["Binding", "Scale", "Eviction", "DeleteOptions"].contains(&r.kind);
        assert!(
            known,
            "{} {} is not served by the registry",
            r.api_version, r.kind
        );
    }
    assert!(table::root("apps/v1", "StatefulSet").is_none());
    assert!(table::root("v2", "Pod").is_none());
}

#[test]
fn errors_are_reported_not_panicked() {
    assert!(matches!(decode_body(b""), Err(ProtobufError::Empty)));
    assert!(matches!(decode_body(b"k8s\0"), Err(ProtobufError::Empty)));
    assert!(matches!(
        decode_body(b"{\"kind\":\"Pod\"}"),
        Err(ProtobufError::MissingPrefix)
    ));
    assert!(matches!(
        decode_body(&frame("v1", "", b"")),
        Err(ProtobufError::MissingKind)
    ));
    let e = decode_body(&frame("apps/v1", "StatefulSet", b"")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "StatefulSet (apps/v1) cannot be sent as protobuf to this server; send it as application/json"
    );
    let mut body = frame("v1", "Pod", b"");
    enc::string(&mut body, 3, "gzip");
    assert!(matches!(
        decode_body(&body),
        Err(ProtobufError::ContentEncoding(e)) if e == "gzip"
    ));
    // Envelope cut in the middle of the typeMeta.
    let body = frame("v1", "Pod", b"");
    assert!(matches!(
        decode_body(&body[..8]),
        Err(ProtobufError::Envelope(_))
    ));

    // A wrong wire type deep inside names the JSON path: Deployment.spec(2).template(3)
    // .spec(2).containers(2)[0].ports(6) sent as a varint.
    let mut container = Vec::new();
    enc::string(&mut container, 1, "c");
    enc::int(&mut container, 6, 80);
    let mut pod_spec = Vec::new();
    enc::len(&mut pod_spec, 2, &container);
    let mut template = Vec::new();
    enc::len(&mut template, 2, &pod_spec);
    let mut spec = Vec::new();
    enc::len(&mut spec, 3, &template);
    let mut deploy = Vec::new();
    enc::len(&mut deploy, 2, &spec);
    let e = decode_body(&frame("apps/v1", "Deployment", &deploy)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed protobuf Deployment at spec.template.spec.containers[0].ports: \
         varint value where a length-delimited one belongs"
    );

    // A length running past the end.
    let mut deploy = Vec::new();
    enc::key(&mut deploy, 1, 2);
    enc::varint(&mut deploy, 1 << 40);
    let e = decode_body(&frame("apps/v1", "Deployment", &deploy)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed protobuf Deployment at metadata: unexpected end of data"
    );
}

#[test]
fn unknown_fields_are_skipped_and_duplicates_follow_protobuf() {
    let mut meta = Vec::new();
    enc::string(&mut meta, 1, "first");
    enc::int(&mut meta, 999, 7); // unknown varint
    enc::string(&mut meta, 998, "x"); // unknown bytes
    enc::key(&mut meta, 997, 1); // unknown fixed64
    meta.extend_from_slice(&[0; 8]);
    enc::key(&mut meta, 996, 5); // unknown fixed32
    meta.extend_from_slice(&[0; 4]);
    enc::string(&mut meta, 1, "second"); // last one wins
    let mut label = Vec::new();
    enc::string(&mut label, 1, "a");
    enc::string(&mut label, 2, "1");
    enc::len(&mut meta, 11, &label);
    let mut label = Vec::new();
    enc::string(&mut label, 1, "a");
    enc::string(&mut label, 2, "2");
    enc::len(&mut meta, 11, &label);
    enc::string(&mut meta, 14, "f1");
    enc::string(&mut meta, 14, "f2");
    let mut cm = Vec::new();
    enc::len(&mut cm, 1, &meta);
    // A message field sent twice is merged.
    let mut more = Vec::new();
    enc::string(&mut more, 3, "ns");
    enc::len(&mut cm, 1, &more);
    let v = decode_body(&frame("v1", "ConfigMap", &cm)).unwrap();
    assert_eq!(
        v,
        json!({
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": "second", "labels": {"a": "2"}, "finalizers": ["f1", "f2"], "namespace": "ns"}
        })
    );
}

#[test]
fn packed_and_unpacked_repeated_numbers() {
    // PodSecurityContext.supplementalGroups (4, repeated int64) in PodSpec.securityContext (14):
    // gogo writes proto2 numbers unpacked, other encoders may pack them; both are accepted.
    let mut psc = Vec::new();
    enc::int(&mut psc, 4, 1); // unpacked
    let mut packed = Vec::new();
    enc::varint(&mut packed, 2);
    enc::varint(&mut packed, u64::MAX); // -1 as int64
    enc::len(&mut psc, 4, &packed);
    let mut spec = Vec::new();
    enc::len(&mut spec, 14, &psc);
    let mut pod = Vec::new();
    enc::len(&mut pod, 2, &spec);
    let v = decode_body(&frame("v1", "Pod", &pod)).unwrap();
    assert_eq!(
        v["spec"]["securityContext"]["supplementalGroups"],
        json!([1, 2, -1])
    );
}

#[test]
fn special_types() {
    let time = |s: i64, n: i64| {
        let mut b = Vec::new();
        enc::int(&mut b, 1, s);
        enc::int(&mut b, 2, n);
        b
    };
    // Event: firstTimestamp (Time, 6), lastTimestamp (7), count (int32, 8), eventTime
    // (MicroTime, 10).
    let mut ev = Vec::new();
    enc::len(&mut ev, 6, &time(1_700_000_000, 123_456_789));
    enc::len(&mut ev, 7, &time(-62_135_596_800, 0)); // Go's zero time: unset
    enc::len(&mut ev, 10, &time(1_700_000_000, 123_456_789));
    enc::int(&mut ev, 8, 0);
    let v = decode_body(&frame("v1", "Event", &ev)).unwrap();
    // Time keeps whole seconds (upstream drops the nanoseconds when decoding protobuf).
    assert_eq!(v["firstTimestamp"], json!("2023-11-14T22:13:20Z"));
    assert_eq!(v.get("lastTimestamp"), Some(&Value::Null));
    assert_eq!(v["eventTime"], json!("2023-11-14T22:13:20.123456Z"));
    // count is a plain omitempty int32: a zero is left out, as Go's JSON does.
    assert!(v.get("count").is_none());

    // Out-of-range times are errors, not panics.
    let mut ev = Vec::new();
    enc::len(&mut ev, 6, &time(i64::MAX, 0));
    assert!(decode_body(&frame("v1", "Event", &ev)).is_err());
    let mut ev = Vec::new();
    enc::len(&mut ev, 10, &time(i64::MAX, -1));
    assert!(decode_body(&frame("v1", "Event", &ev)).is_err());

    // ServicePort.targetPort (IntOrString, 4): int and string forms; a bad type is an error.
    let port = |t: i64, i: i64, s: &str| {
        let mut ios = Vec::new();
        enc::int(&mut ios, 1, t);
        enc::int(&mut ios, 2, i);
        enc::string(&mut ios, 3, s);
        let mut p = Vec::new();
        enc::int(&mut p, 3, 80);
        enc::len(&mut p, 4, &ios);
        let mut spec = Vec::new();
        enc::len(&mut spec, 1, &p);
        let mut svc = Vec::new();
        enc::len(&mut svc, 2, &spec);
        decode_body(&frame("v1", "Service", &svc))
    };
    assert_eq!(
        port(0, 8080, "")
            .unwrap()
            .pointer("/spec/ports/0/targetPort"),
        Some(&json!(8080))
    );
    assert_eq!(
        port(1, 0, "http")
            .unwrap()
            .pointer("/spec/ports/0/targetPort"),
        Some(&json!("http"))
    );
    assert!(port(2, 0, "").is_err());
}

#[test]
fn go_duration_strings() {
    // Go's own time.Duration.String() cases.
    let cases: [(i64, &str); 12] = [
        (0, "0s"),
        (1, "1ns"),
        (1_100, "1.1µs"),
        (2_200_000, "2.2ms"),
        (3_300_000_000, "3.3s"),
        (4 * 60_000_000_000 + 5_000_000_000, "4m5s"),
        (4 * 60_000_000_000 + 5_001_000_000, "4m5.001s"),
        (
            5 * 3_600_000_000_000 + 6 * 60_000_000_000 + 7_001_000_000,
            "5h6m7.001s",
        ),
        (8 * 60_000_000_000 + 1, "8m0.000000001s"),
        (i64::MAX, "2562047h47m16.854775807s"),
        (i64::MIN, "-2562047h47m16.854775808s"),
        (-1_500_000, "-1.5ms"),
    ];
    for (nanos, want) in cases {
        assert_eq!(decode::go_duration(nanos), want, "{nanos}");
    }
}

/// Deterministic xorshift, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn garbage_never_panics() {
    let fixtures = kubectl::fixtures();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Every truncation of every real body.
    for (_, body, _) in &fixtures {
        for cut in 0..body.len() {
            let _ = decode_body(&body[..cut]);
        }
    }
    // Random corruptions of real bodies: flipped, inserted and deleted bytes.
    for _ in 0..20_000 {
        let (_, body, _) = &fixtures[rng.below(fixtures.len())];
        let mut b = body.clone();
        for _ in 0..1 + rng.below(4) {
            let at = 4 + rng.below(b.len().saturating_sub(4).max(1));
            match rng.below(3) {
                0 if at < b.len() => b[at] ^= 1 << rng.below(8),
                1 => b.insert(at.min(b.len()), rng.next() as u8),
                _ if at < b.len() => drop(b.remove(at)),
                _ => {}
            }
        }
        let _ = decode_body(&b);
    }
    // Random objects of every served kind, and random envelopes.
    for _ in 0..20_000 {
        let len = rng.below(64);
        let raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let r = &table::roots()[rng.below(table::roots().len())];
        let av = if r.api_version == "*" {
            "v1"
        } else {
            r.api_version
        };
        let _ = decode_body(&frame(av, r.kind, &raw));
        let mut env = MAGIC.to_vec();
        env.extend_from_slice(&raw);
        let _ = decode_body(&env);
    }
    // Deeply nested length-delimited fields: bounded by the table, not by the input.
    let mut nested = Vec::new();
    for _ in 0..2_000 {
        let mut outer = Vec::new();
        enc::len(&mut outer, 2, &nested);
        nested = outer;
    }
    let _ = decode_body(&frame("v1", "Pod", &nested));
}
