//! The rule set against golden text: chain names are checked against values from upstream's
//! own tests (pkg/proxy/iptables/proxier_test.go), rules against kube-proxy's shapes.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use super::config::ProxyConfig;
use super::rules::{build_ruleset, endpoint_chain, external_chain, service_chain};

fn config() -> ProxyConfig {
    ProxyConfig {
        cluster_cidr: Some("10.0.0.0/8".parse().expect("cidr")),
        ..ProxyConfig::new("node-a")
    }
}

fn service(name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": "ns1", "name": name},
        "spec": spec,
    }))
    .expect("service")
}

fn slice(service: &str, name: &str, ports: Value, endpoints: Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"namespace": "ns1", "name": name,
            "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
    .expect("endpoint slice")
}

fn ready(ip: &str) -> Value {
    json!({"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}})
}

fn ruleset(services: &[Service], slices: &[EndpointSlice]) -> String {
    let rules = build_ruleset(&config(), services, slices, &[]);
    assert_jumps_declared(&rules);
    rules
}

/// Every `-j SKIFF-…` target is declared in its table: iptables-restore refuses the whole
/// input otherwise.
fn assert_jumps_declared(rules: &str) {
    for table in ["filter", "nat"] {
        let chains = declared(rules, table);
        let body = rules
            .split(&format!("*{table}\n"))
            .nth(1)
            .and_then(|rest| rest.split("COMMIT\n").next())
            .unwrap_or_default();
        for target in body
            .lines()
            .flat_map(|l| l.split(" -j ").skip(1))
            .filter_map(|t| t.split_whitespace().next())
            .filter(|t| t.starts_with("SKIFF-"))
        {
            assert!(
                chains.iter().any(|c| c == target),
                "{target} not declared in {table}:\n{rules}"
            );
        }
    }
}

/// The rules (not declarations) of one table and chain, in order.
fn rules_of(ruleset: &str, table: &str, chain: &str) -> Vec<String> {
    let body = ruleset
        .split(&format!("*{table}\n"))
        .nth(1)
        .and_then(|rest| rest.split("COMMIT\n").next())
        .unwrap_or_default();
    let prefix = format!("-A {chain} ");
    body.lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

fn declared(ruleset: &str, table: &str) -> Vec<String> {
    let body = ruleset
        .split(&format!("*{table}\n"))
        .nth(1)
        .and_then(|rest| rest.split("COMMIT\n").next())
        .unwrap_or_default();
    body.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn chain_names_hash_as_kube_proxy_does() {
    assert_eq!(
        service_chain("ns1/svc1:p80", "tcp"),
        "SKIFF-SVC-XPGD46QRK7WJZT7O"
    );
    assert_eq!(
        endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80"),
        "SKIFF-SEP-SXIVWICOYRO3J4NJ"
    );
    assert!(service_chain("ns1/svc1:p80", "udp") != service_chain("ns1/svc1:p80", "tcp"));
    assert!(external_chain("ns1/svc1:p80", "tcp").starts_with("SKIFF-EXT-XPGD46QRK7WJZT7O"));
}

#[test]
fn cluster_ip_with_two_endpoints() {
    let svc = service(
        "svc1",
        json!({"clusterIP": "172.30.0.41", "ports": [{"name": "p80", "port": 80, "targetPort": 8080}]}),
    );
    let eps = slice(
        "svc1",
        "svc1-abc",
        json!([{"name": "p80", "port": 80, "protocol": "TCP"}]),
        json!([ready("10.180.0.2"), ready("10.180.0.1")]),
    );
    let rules = ruleset(&[svc], &[eps]);
    let sep1 = "SKIFF-SEP-SXIVWICOYRO3J4NJ";
    let sep2 = endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.2:80");
    let expected = format!(
        r#"*filter
:SKIFF-SERVICES - [0:0]
:SKIFF-EXTERNAL-SERVICES - [0:0]
:SKIFF-FORWARD - [0:0]
:SKIFF-FIREWALL - [0:0]
-A SKIFF-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A SKIFF-FORWARD -m conntrack --ctstate INVALID -j DROP
-A SKIFF-FORWARD -m comment --comment "skiff forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A SKIFF-FORWARD -m comment --comment "skiff forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:SKIFF-SERVICES - [0:0]
:SKIFF-NODEPORTS - [0:0]
:SKIFF-POSTROUTING - [0:0]
:SKIFF-MARK-MASQ - [0:0]
:SKIFF-SVC-XPGD46QRK7WJZT7O - [0:0]
:{sep1} - [0:0]
:{sep2} - [0:0]
-A SKIFF-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A SKIFF-POSTROUTING -j MARK --xor-mark 0x4000
-A SKIFF-POSTROUTING -m comment --comment "skiff service traffic requiring SNAT" -j MASQUERADE --random-fully
-A SKIFF-MARK-MASQ -j MARK --or-mark 0x4000
-A SKIFF-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j SKIFF-SVC-XPGD46QRK7WJZT7O
-A SKIFF-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j SKIFF-MARK-MASQ
-A SKIFF-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j {sep1}
-A SKIFF-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j {sep2}
-A {sep1} -m comment --comment ns1/svc1:p80 -s 10.180.0.1/32 -j SKIFF-MARK-MASQ
-A {sep1} -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A {sep2} -m comment --comment ns1/svc1:p80 -s 10.180.0.2/32 -j SKIFF-MARK-MASQ
-A {sep2} -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
-A SKIFF-SERVICES -m comment --comment "skiff service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j SKIFF-NODEPORTS
COMMIT
"#
    );
    assert_eq!(rules, expected);
}

#[test]
fn probabilities_are_one_over_the_endpoints_left() {
    let svc = service(
        "web",
        json!({"clusterIP": "172.30.0.9", "ports": [{"port": 80}]}),
    );
    let eps = slice(
        "web",
        "web-1",
        json!([{"port": 8080}]),
        json!([
            ready("10.1.0.1"),
            ready("10.1.0.2"),
            ready("10.1.0.3"),
            ready("10.1.0.4")
        ]),
    );
    let rules = ruleset(&[svc], &[eps]);
    let chain = service_chain("ns1/web", "tcp");
    let balancing: Vec<String> = rules_of(&rules, "nat", &chain)
        .into_iter()
        .filter(|r| r.contains(" -> "))
        .collect();
    assert_eq!(balancing.len(), 4);
    assert!(balancing[0].contains("--probability 0.2500000000 "));
    assert!(balancing[1].contains("--probability 0.3333333333 "));
    assert!(balancing[2].contains("--probability 0.5000000000 "));
    assert!(!balancing[3].contains("statistic"));
    // An unnamed port is hashed and commented as "namespace/name".
    assert!(balancing[3].contains("\"ns1/web -> 10.1.0.4:8080\""));
}

#[test]
fn node_port_goes_through_the_external_chain() {
    let svc = service(
        "svc2",
        json!({"type": "NodePort", "clusterIP": "172.30.0.42",
            "ports": [{"name": "p80", "port": 80, "nodePort": 3001}]}),
    );
    let eps = slice(
        "svc2",
        "svc2-a",
        json!([{"name": "p80", "port": 80}]),
        json!([ready("10.180.0.3")]),
    );
    let rules = ruleset(&[svc], &[eps]);
    let svc_chain = service_chain("ns1/svc2:p80", "tcp");
    let ext = external_chain("ns1/svc2:p80", "tcp");
    assert_eq!(
        rules_of(&rules, "nat", "SKIFF-NODEPORTS"),
        [format!(
            "-A SKIFF-NODEPORTS -m comment --comment ns1/svc2:p80 -m tcp -p tcp --dport 3001 -j {ext}"
        )]
    );
    assert_eq!(
        rules_of(&rules, "nat", &ext),
        [
            format!(
                "-A {ext} -m comment --comment \"masquerade traffic for ns1/svc2:p80 external destinations\" -j SKIFF-MARK-MASQ"
            ),
            format!("-A {ext} -j {svc_chain}"),
        ]
    );
    assert!(declared(&rules, "nat").contains(&ext));
    // The ClusterIP still works as for any Service.
    assert!(rules_of(&rules, "nat", "SKIFF-SERVICES")[0].ends_with(&format!("-j {svc_chain}")));
}

#[test]
fn node_ports_on_given_addresses_and_without_localhost() {
    let mut config = config();
    config.localhost_node_ports = false;
    let rules = build_ruleset(&config, &[], &[], &[]);
    assert!(
        rules_of(&rules, "nat", "SKIFF-SERVICES")[0]
            .contains("-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j SKIFF-NODEPORTS")
    );
    assert!(rules_of(&rules, "filter", "SKIFF-FIREWALL").is_empty());

    config.node_ips = vec![
        "192.168.5.10".parse().expect("ip"),
        "127.0.0.1".parse().expect("ip"),
    ];
    let rules = build_ruleset(&config, &[], &[], &[]);
    let jumps = rules_of(&rules, "nat", "SKIFF-SERVICES");
    assert_eq!(jumps.len(), 1, "{jumps:?}");
    assert!(jumps[0].ends_with("-d 192.168.5.10 -j SKIFF-NODEPORTS"));
}

#[test]
fn client_ip_affinity_uses_recent() {
    let svc = service(
        "sticky",
        json!({"clusterIP": "172.30.0.43", "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
            "ports": [{"name": "http", "port": 80}]}),
    );
    let eps = slice(
        "sticky",
        "sticky-a",
        json!([{"name": "http", "port": 8080}]),
        json!([ready("10.1.0.1"), ready("10.1.0.2")]),
    );
    let rules = ruleset(&[svc], &[eps]);
    let chain = service_chain("ns1/sticky:http", "tcp");
    let sep1 = endpoint_chain("ns1/sticky:http", "tcp", "10.1.0.1:8080");
    let sep2 = endpoint_chain("ns1/sticky:http", "tcp", "10.1.0.2:8080");
    let svc_rules = rules_of(&rules, "nat", &chain);
    assert_eq!(
        svc_rules[1..3],
        [
            format!(
                "-A {chain} -m comment --comment \"ns1/sticky:http -> 10.1.0.1:8080\" -m recent --name {sep1} --rcheck --seconds 600 --reap -j {sep1}"
            ),
            format!(
                "-A {chain} -m comment --comment \"ns1/sticky:http -> 10.1.0.2:8080\" -m recent --name {sep2} --rcheck --seconds 600 --reap -j {sep2}"
            ),
        ]
    );
    assert!(svc_rules[3].contains("--probability 0.5000000000"));
    assert_eq!(
        rules_of(&rules, "nat", &sep1)[1],
        format!(
            "-A {sep1} -m comment --comment ns1/sticky:http -m recent --name {sep1} --set -m tcp -p tcp -j DNAT --to-destination 10.1.0.1:8080"
        )
    );

    // Without a timeout the default is three hours.
    let svc = service(
        "sticky",
        json!({"clusterIP": "172.30.0.43", "sessionAffinity": "ClientIP", "ports": [{"name": "http", "port": 80}]}),
    );
    let eps = slice(
        "sticky",
        "sticky-a",
        json!([{"name": "http", "port": 8080}]),
        json!([ready("10.1.0.1")]),
    );
    assert!(ruleset(&[svc], &[eps]).contains("--rcheck --seconds 10800 --reap"));
}

#[test]
fn no_endpoints_rejects_cluster_ip_and_node_port() {
    let svc = service(
        "empty",
        json!({"type": "NodePort", "clusterIP": "172.30.0.44",
            "ports": [{"name": "p", "port": 80, "nodePort": 30080, "protocol": "UDP"}]}),
    );
    let not_ready =
        json!([{"addresses": ["10.1.0.9"], "conditions": {"ready": false, "serving": false}}]);
    let eps = slice(
        "empty",
        "empty-a",
        json!([{"name": "p", "port": 53, "protocol": "UDP"}]),
        not_ready,
    );
    let rules = ruleset(&[svc], &[eps]);
    assert_eq!(
        rules_of(&rules, "filter", "SKIFF-SERVICES"),
        [
            "-A SKIFF-SERVICES -m comment --comment \"ns1/empty:p has no endpoints\" -m udp -p udp -d 172.30.0.44 --dport 80 -j REJECT"
        ]
    );
    assert_eq!(
        rules_of(&rules, "filter", "SKIFF-EXTERNAL-SERVICES"),
        [
            "-A SKIFF-EXTERNAL-SERVICES -m comment --comment \"ns1/empty:p has no endpoints\" -m addrtype --dst-type LOCAL -m udp -p udp --dport 30080 -j REJECT"
        ]
    );
    // No nat chains at all for it.
    assert_eq!(declared(&rules, "nat").len(), 4);
    assert!(rules_of(&rules, "nat", "SKIFF-NODEPORTS").is_empty());
}

#[test]
fn named_target_ports_use_the_slice_port_numbers() {
    // targetPort "http" resolves per pod; the slice carries the number under the Service
    // port's name, and two slices may carry different numbers.
    let svc = service(
        "named",
        json!({"clusterIP": "172.30.0.45", "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}),
    );
    let a = slice(
        "named",
        "named-a",
        json!([{"name": "web", "port": 8080}]),
        json!([ready("10.1.0.1")]),
    );
    let b = slice(
        "named",
        "named-b",
        json!([{"name": "web", "port": 9090}]),
        json!([ready("10.1.0.2")]),
    );
    let rules = ruleset(&[svc], &[a, b]);
    assert!(rules.contains("-j DNAT --to-destination 10.1.0.1:8080\n"));
    assert!(rules.contains("-j DNAT --to-destination 10.1.0.2:9090\n"));
    assert!(!rules.contains(":80\n"));
}

#[test]
fn each_port_and_protocol_gets_its_own_chains() {
    let svc = service(
        "dns",
        json!({"clusterIP": "172.30.0.10", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            {"name": "metrics", "port": 9153, "protocol": "SCTP"}]}),
    );
    let eps = slice(
        "dns",
        "dns-a",
        json!([{"name": "dns", "port": 5353, "protocol": "UDP"},
               {"name": "dns-tcp", "port": 5353, "protocol": "TCP"},
               {"name": "metrics", "port": 9153, "protocol": "SCTP"}]),
        json!([ready("10.1.0.5")]),
    );
    let rules = ruleset(&[svc], &[eps]);
    let services = rules_of(&rules, "nat", "SKIFF-SERVICES");
    assert_eq!(services.len(), 4, "{services:#?}"); // three ports and the NodePort jump
    for (name, proto, port) in [
        ("dns", "udp", 53),
        ("dns-tcp", "tcp", 53),
        ("metrics", "sctp", 9153),
    ] {
        let chain = service_chain(&format!("ns1/dns:{name}"), proto);
        let expected = format!(
            "-A SKIFF-SERVICES -m comment --comment \"ns1/dns:{name} cluster IP\" -m {proto} -p {proto} -d 172.30.0.10 --dport {port} -j {chain}"
        );
        assert!(services.contains(&expected), "{expected} in {services:#?}");
        let sep = endpoint_chain(
            &format!("ns1/dns:{name}"),
            proto,
            &format!("10.1.0.5:{}", if name == "metrics" { 9153 } else { 5353 }),
        );
        assert!(
            rules_of(&rules, "nat", &sep)[1].contains(&format!("-m {proto} -p {proto} -j DNAT"))
        );
    }
}

#[test]
fn headless_external_name_and_foreign_objects_get_no_rules() {
    let headless = service(
        "headless",
        json!({"clusterIP": "None", "ports": [{"port": 80}]}),
    );
    let external = service(
        "ext",
        json!({"type": "ExternalName", "externalName": "example.com", "ports": [{"port": 80}]}),
    );
    let eps = vec![
        slice(
            "headless",
            "headless-a",
            json!([{"port": 80}]),
            json!([ready("10.1.0.1")]),
        ),
        slice(
            "ext",
            "ext-a",
            json!([{"port": 80}]),
            json!([ready("10.1.0.2")]),
        ),
    ];
    let empty = ruleset(&[], &[]);
    assert_eq!(ruleset(&[headless, external], &eps), empty);

    // An IPv6 slice or one for a Service port that does not exist adds nothing either.
    let svc = service(
        "v4",
        json!({"clusterIP": "172.30.0.46", "ports": [{"name": "a", "port": 80}]}),
    );
    let mut v6 = slice(
        "v4",
        "v4-v6",
        json!([{"name": "a", "port": 80}]),
        json!([{"addresses": ["fd00::1"]}]),
    );
    v6.address_type = "IPv6".into();
    let other_port = slice(
        "v4",
        "v4-b",
        json!([{"name": "b", "port": 80}]),
        json!([ready("10.1.0.3")]),
    );
    let rules = ruleset(&[svc], &[v6, other_port]);
    assert!(rules.contains("\"ns1/v4:a has no endpoints\""));
    assert!(!rules.contains("-j DNAT"));
}

#[test]
fn terminating_endpoints_serve_only_when_none_is_ready() {
    let svc = service(
        "t",
        json!({"clusterIP": "172.30.0.47", "ports": [{"port": 80}]}),
    );
    let terminating = json!({"addresses": ["10.1.0.1"],
        "conditions": {"ready": false, "serving": true, "terminating": true}});
    let terminating_not_serving = json!({"addresses": ["10.1.0.2"],
        "conditions": {"ready": false, "serving": false, "terminating": true}});

    let eps = slice(
        "t",
        "t-a",
        json!([{"port": 80}]),
        json!([terminating, terminating_not_serving, ready("10.1.0.3")]),
    );
    let rules = ruleset(std::slice::from_ref(&svc), &[eps]);
    assert!(rules.contains("--to-destination 10.1.0.3:80"));
    assert!(!rules.contains("--to-destination 10.1.0.1:80"));

    let eps = slice(
        "t",
        "t-a",
        json!([{"port": 80}]),
        json!([terminating, terminating_not_serving]),
    );
    let rules = ruleset(&[svc], &[eps]);
    assert!(rules.contains("--to-destination 10.1.0.1:80"));
    assert!(!rules.contains("--to-destination 10.1.0.2:80"));
    assert!(!rules.contains("REJECT"));
}

#[test]
fn endpoints_in_two_slices_count_once_and_missing_ready_means_ready() {
    let svc = service(
        "d",
        json!({"clusterIP": "172.30.0.48", "ports": [{"port": 80}]}),
    );
    let a = slice(
        "d",
        "d-a",
        json!([{"port": 80}]),
        json!([{"addresses": ["10.1.0.1"]}]),
    );
    let b = slice(
        "d",
        "d-b",
        json!([{"port": 80}]),
        json!([ready("10.1.0.1")]),
    );
    let rules = ruleset(&[svc], &[a, b]);
    assert_eq!(
        rules
            .matches("-j DNAT --to-destination 10.1.0.1:80")
            .count(),
        1
    );
    assert!(!rules.contains("statistic"));
}

#[test]
fn external_traffic_policy_local_uses_this_nodes_endpoints() {
    let svc = service(
        "lcl",
        json!({"type": "NodePort", "clusterIP": "172.30.0.49", "externalTrafficPolicy": "Local",
            "ports": [{"port": 80, "nodePort": 30001}]}),
    );
    let mut here = ready("10.1.0.1");
    here["nodeName"] = json!("node-a");
    let mut there = ready("10.2.0.1");
    there["nodeName"] = json!("node-b");
    let eps = slice(
        "lcl",
        "lcl-a",
        json!([{"port": 80}]),
        json!([here, there.clone()]),
    );
    let rules = ruleset(std::slice::from_ref(&svc), &[eps]);
    let ext = external_chain("ns1/lcl", "tcp");
    let svc_chain = service_chain("ns1/lcl", "tcp");
    let svl = super::rules::local_chain("ns1/lcl", "tcp");
    let ext_rules = rules_of(&rules, "nat", &ext);
    assert_eq!(ext_rules.len(), 4, "{ext_rules:#?}");
    assert!(ext_rules[0].ends_with(&format!("-s 10.0.0.0/8 -j {svc_chain}")));
    assert!(ext_rules[1].ends_with("-m addrtype --src-type LOCAL -j SKIFF-MARK-MASQ"));
    assert!(ext_rules[2].ends_with(&format!("-m addrtype --src-type LOCAL -j {svc_chain}")));
    assert_eq!(ext_rules[3], format!("-A {ext} -j {svl}"));
    let svl_rules = rules_of(&rules, "nat", &svl);
    assert_eq!(svl_rules.len(), 1);
    assert!(svl_rules[0].contains("10.1.0.1:80"));
    // The ClusterIP still balances over both.
    assert_eq!(rules_of(&rules, "nat", &svc_chain).len(), 3);

    // Endpoints only elsewhere: external traffic is dropped, not rejected.
    let eps = slice("lcl", "lcl-a", json!([{"port": 80}]), json!([there]));
    let rules = ruleset(&[svc], &[eps]);
    assert_eq!(
        rules_of(&rules, "filter", "SKIFF-EXTERNAL-SERVICES"),
        [
            "-A SKIFF-EXTERNAL-SERVICES -m comment --comment \"ns1/lcl has no local endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30001 -j DROP"
        ]
    );
    assert!(!declared(&rules, "nat").contains(&svl));
}

#[test]
fn stale_service_chains_are_deleted_and_others_left_alone() {
    let svc = service(
        "keep",
        json!({"clusterIP": "172.30.0.50", "ports": [{"port": 80}]}),
    );
    let eps = slice(
        "keep",
        "keep-a",
        json!([{"port": 80}]),
        json!([ready("10.1.0.1")]),
    );
    let keep = service_chain("ns1/keep", "tcp");
    let existing = vec![
        "PREROUTING".to_string(),
        "KUBE-SVC-XPGD46QRK7WJZT7O".to_string(),
        "SKIFF-SERVICES".to_string(),
        keep.clone(),
        "SKIFF-SVC-GONEGONEGONEGONE".to_string(),
        "SKIFF-SEP-GONEGONEGONEGONE".to_string(),
    ];
    let rules = build_ruleset(&config(), &[svc], &[eps], &existing);
    let nat = rules.split("*nat\n").nth(1).unwrap_or_default();
    assert!(nat.contains(":SKIFF-SVC-GONEGONEGONEGONE - [0:0]\n"));
    assert!(nat.contains("\n-X SKIFF-SVC-GONEGONEGONEGONE\n"));
    assert!(nat.contains("\n-X SKIFF-SEP-GONEGONEGONEGONE\n"));
    assert!(!nat.contains(&format!("-X {keep}")));
    assert!(!rules.contains("KUBE-"));
    assert!(!rules.contains("PREROUTING"));
    assert_eq!(rules.matches("-X ").count(), 2);
}

#[test]
fn external_ips_and_load_balancer_ips_jump_to_the_external_chain() {
    let mut svc = service(
        "lb",
        json!({"type": "LoadBalancer", "clusterIP": "172.30.0.51", "externalIPs": ["192.0.2.7"],
            "ports": [{"port": 443, "nodePort": 30443}]}),
    );
    svc.status =
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.9"}]}}))
            .expect("status");
    let eps = slice(
        "lb",
        "lb-a",
        json!([{"port": 8443}]),
        json!([ready("10.1.0.1")]),
    );
    let rules = ruleset(&[svc], &[eps]);
    let ext = external_chain("ns1/lb", "tcp");
    let services = rules_of(&rules, "nat", "SKIFF-SERVICES");
    assert!(services.contains(&format!("-A SKIFF-SERVICES -m comment --comment \"ns1/lb external IP\" -m tcp -p tcp -d 192.0.2.7 --dport 443 -j {ext}")));
    assert!(services.contains(&format!("-A SKIFF-SERVICES -m comment --comment \"ns1/lb loadbalancer IP\" -m tcp -p tcp -d 198.51.100.9 --dport 443 -j {ext}")));
}

#[test]
fn both_traffic_policies_local_still_short_circuit_through_the_cluster_chain() {
    let svc = service(
        "both",
        json!({"type": "NodePort", "clusterIP": "172.30.0.52", "externalTrafficPolicy": "Local",
            "internalTrafficPolicy": "Local", "ports": [{"port": 80, "nodePort": 30002}]}),
    );
    let mut there = ready("10.2.0.1");
    there["nodeName"] = json!("node-b");
    let eps = slice("both", "both-a", json!([{"port": 80}]), json!([there]));
    // ruleset() checks every jump target is declared.
    let rules = ruleset(&[svc], &[eps]);
    let svc_chain = service_chain("ns1/both", "tcp");
    assert!(declared(&rules, "nat").contains(&svc_chain));
    assert_eq!(
        rules_of(&rules, "filter", "SKIFF-SERVICES"),
        [
            "-A SKIFF-SERVICES -m comment --comment \"ns1/both has no local endpoints\" -m tcp -p tcp -d 172.30.0.52 --dport 80 -j DROP"
        ]
    );
}
