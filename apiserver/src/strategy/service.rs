//! Services: `SetDefaults_Service`, the service strategy (normalizing clusterIP/clusterIPs,
//! keeping allocated values, dropping type-dependent fields), the IP-family defaults the
//! allocator sets upstream, and `ValidateService`/`ValidateServiceUpdate`. Addresses and
//! node ports themselves are allocated by the handler.

use std::collections::HashSet;

use serde_json::{Value, json};
use skiff_apimachinery::validation::{self as v, FieldError, FieldErrorKind};

use super::podspec::{validate_port_num_or_name, validate_protocol};
use super::util::{
    arr_of, at, child_obj, default_str, each_mut, has, int_of, is_empty, semantic_eq, set_default,
    str_of,
};
use super::{Strategy, checks, go_string_slice, invalid_raw, raw_error};

pub struct ServiceStrategy;

const NODE_PORT_MIN: i64 = 30000;
const NODE_PORT_MAX: i64 = 32767;
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;

fn svc_type(svc: &Value) -> &str {
    str_of(at(svc, &["spec"]), "type")
}

fn needs_cluster_ip(svc: &Value) -> bool {
    svc_type(svc) != "ExternalName"
}

fn needs_node_port(svc: &Value) -> bool {
    matches!(svc_type(svc), "NodePort" | "LoadBalancer")
}

fn externally_accessible(svc: &Value) -> bool {
    let spec = at(svc, &["spec"]);
    match svc_type(svc) {
        "NodePort" | "LoadBalancer" => true,
        "ClusterIP" => !is_empty(spec, "externalIPs"),
        _ => false,
    }
}

fn is_headless(svc: &Value) -> bool {
    let ips = arr_of(at(svc, &["spec"]), "clusterIPs");
    ips.len() == 1 && ips[0].as_str() == Some("None")
}

fn needs_health_check(svc: &Value) -> bool {
    svc_type(svc) == "LoadBalancer"
        && str_of(at(svc, &["spec"]), "externalTrafficPolicy") == "Local"
}

impl Strategy for ServiceStrategy {
    fn default(&self, obj: &mut Value) {
        let accessible = {
            let mut probe = obj.clone();
            if let Some(spec) = child_obj(&mut probe, "spec") {
                default_str(spec, "type", "ClusterIP");
            }
            externally_accessible(&probe)
        };
        let Some(spec) = child_obj(obj, "spec") else {
            return;
        };
        default_str(spec, "sessionAffinity", "None");
        let affinity = str_of(spec, "sessionAffinity").to_string();
        let timeout_unset = at(
            spec,
            &["sessionAffinityConfig", "clientIP", "timeoutSeconds"],
        )
        .is_null();
        if affinity == "None"
            && let Some(m) = spec.as_object_mut()
        {
            m.remove("sessionAffinityConfig");
        } else if affinity == "ClientIP" && timeout_unset {
            spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 10800}});
        }
        default_str(spec, "type", "ClusterIP");
        for port in each_mut(spec, "ports") {
            default_str(port, "protocol", "TCP");
            let unset = match port.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(_) => false,
            };
            if unset && let Some(p) = port.get("port").cloned() {
                port["targetPort"] = p;
            }
        }
        if accessible {
            default_str(spec, "externalTrafficPolicy", "Cluster");
        }
        let t = str_of(spec, "type").to_string();
        if matches!(t.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
            set_default(spec, "internalTrafficPolicy", json!("Cluster"));
        }
        if t == "LoadBalancer" {
            set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
            if let Some(ingress) = obj
                .pointer_mut("/status/loadBalancer/ingress")
                .and_then(Value::as_array_mut)
            {
                for ing in ingress {
                    if !str_of(ing, "ip").is_empty() {
                        set_default(ing, "ipMode", json!("VIP"));
                    }
                }
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({"loadBalancer": {}}));
        }
        if let Some(spec) = child_obj(obj, "spec") {
            // A client that only knows the singular field gets the plural one filled.
            let ip = str_of(spec, "clusterIP").to_string();
            if !ip.is_empty() && is_empty(spec, "clusterIPs") {
                spec["clusterIPs"] = json!([ip]);
            }
        }
        init_ip_families(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        patch_allocated_values(new, old);
        normalize_cluster_ips(new, old);
        drop_type_dependent_fields(new, old);
        if needs_cluster_ip(new) && needs_cluster_ip(old) && is_headless(new) == is_headless(old) {
            let old_spec = at(old, &["spec"]).clone();
            if let Some(spec) = child_obj(new, "spec") {
                for key in ["ipFamilies", "ipFamilyPolicy"] {
                    if is_empty(spec, key) && !is_empty(&old_spec, key) {
                        spec[key] = old_spec[key].clone();
                    }
                }
            }
        }
        init_ip_families(new);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_service(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_cluster_ips_update(new, old);
        errs.extend(validate_ip_families_update(new, old));
        let (n, o) = (at(new, &["spec"]), at(old, &["spec"]));
        if svc_type(new) == "LoadBalancer"
            && svc_type(old) == "LoadBalancer"
            && !semantic_eq(at(n, &["loadBalancerClass"]), at(o, &["loadBalancerClass"]))
        {
            errs.push(FieldError::invalid(
                "spec.loadBalancerClass",
                n.get("loadBalancerClass").cloned().unwrap_or(Value::Null),
                "may not change once set",
            ));
        }
        if needs_health_check(new)
            && needs_health_check(old)
            && int_of(n, "healthCheckNodePort") != int_of(o, "healthCheckNodePort")
        {
            errs.push(FieldError::forbidden(
                "spec.healthCheckNodePort",
                "field is immutable",
            ));
        }
        errs
    }

    fn validate_status_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let ingress = arr_of(at(new, &["status", "loadBalancer"]), "ingress");
        let path = "status.loadBalancer.ingress";
        if svc_type(new) != "LoadBalancer" && !ingress.is_empty() {
            errs.push(FieldError::forbidden(
                path,
                "may only be used when `spec.type` is 'LoadBalancer'",
            ));
            return errs;
        }
        for (i, ing) in ingress.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let ip = str_of(ing, "ip");
            if !ip.is_empty() {
                errs.extend(checks::valid_ip(&format!("{p}.ip"), ip));
            }
            if let Some(mode) = ing.get("ipMode").and_then(Value::as_str) {
                if ip.is_empty() {
                    errs.push(FieldError::forbidden(
                        format!("{p}.ipMode"),
                        "may not be specified when `ip` is not set",
                    ));
                } else if mode != "VIP" && mode != "Proxy" {
                    errs.push(FieldError::not_supported(
                        format!("{p}.ipMode"),
                        mode,
                        &["Proxy", "VIP"],
                    ));
                }
            }
            let host = str_of(ing, "hostname");
            if !host.is_empty() {
                for msg in v::is_dns1123_subdomain(host) {
                    errs.push(FieldError::invalid(format!("{p}.hostname"), host, msg));
                }
                if host.parse::<std::net::IpAddr>().is_ok() {
                    errs.push(FieldError::invalid(
                        format!("{p}.hostname"),
                        host,
                        "must be a DNS name, not an IP address",
                    ));
                }
            }
        }
        errs
    }

    fn validate_name(&self, name: &str) -> Vec<String> {
        v::name_is_dns1035_label(name, false)
    }
}

/// What the allocator fills upstream before validation: the IP family policy and families.
/// Skiff's service network is IPv4 only.
fn init_ip_families(svc: &mut Value) {
    let headless = is_headless(svc);
    let external_name = !needs_cluster_ip(svc);
    let Some(spec) = child_obj(svc, "spec") else {
        return;
    };
    if external_name {
        if let Some(m) = spec.as_object_mut() {
            m.remove("ipFamilies");
            m.remove("ipFamilyPolicy");
        }
        return;
    }
    if !has(spec, "ipFamilyPolicy") {
        // Headless Services without selectors serve every family the cluster has.
        let policy = if headless && is_empty(spec, "selector") {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        spec["ipFamilyPolicy"] = json!(policy);
    }
    if is_empty(spec, "ipFamilies") {
        spec["ipFamilies"] = json!(["IPv4"]);
    }
}

/// Upstream's `patchAllocatedValues`: an update that leaves out allocated values keeps them.
fn patch_allocated_values(new: &mut Value, old: &Value) {
    let (keep_ips, keep_ports) = (
        needs_cluster_ip(old) && needs_cluster_ip(new),
        needs_node_port(old) && needs_node_port(new),
    );
    let keep_hc = needs_health_check(old) && needs_health_check(new);
    let old_spec = at(old, &["spec"]);
    let Some(spec) = child_obj(new, "spec") else {
        return;
    };
    if keep_ips {
        if str_of(spec, "clusterIP").is_empty() && has(old_spec, "clusterIP") {
            spec["clusterIP"] = old_spec["clusterIP"].clone();
        }
        if is_empty(spec, "clusterIPs") && !is_empty(old_spec, "clusterIPs") {
            spec["clusterIPs"] = old_spec["clusterIPs"].clone();
        }
    }
    if keep_ports {
        let node_ports = |s: &Value| -> HashSet<i64> {
            arr_of(s, "ports")
                .iter()
                .filter_map(|p| int_of(p, "nodePort"))
                .filter(|n| *n != 0)
                .collect()
        };
        let used: HashSet<i64> = node_ports(old_spec)
            .intersection(&node_ports(spec))
            .copied()
            .collect();
        let by_name: Vec<(String, i64)> = arr_of(old_spec, "ports")
            .iter()
            .map(|p| {
                (
                    str_of(p, "name").to_string(),
                    int_of(p, "nodePort").unwrap_or(0),
                )
            })
            .collect();
        for port in each_mut(spec, "ports") {
            if int_of(port, "nodePort").unwrap_or(0) == 0 {
                let name = str_of(port, "name");
                if let Some((_, np)) = by_name.iter().rev().find(|(n, _)| n == name)
                    && *np != 0
                    && !used.contains(np)
                {
                    port["nodePort"] = json!(np);
                }
            }
        }
    }
    if keep_hc
        && int_of(spec, "healthCheckNodePort").unwrap_or(0) == 0
        && let Some(hc) = old_spec.get("healthCheckNodePort")
    {
        spec["healthCheckNodePort"] = hc.clone();
    }
}

/// Upstream's `NormalizeClusterIPs` for updates: keep clusterIP and clusterIPs in step for
/// clients that only send one of them.
fn normalize_cluster_ips(new: &mut Value, old: &Value) {
    let old_spec = at(old, &["spec"]);
    let old_ip = str_of(old_spec, "clusterIP").to_string();
    let old_ips = old_spec.get("clusterIPs").cloned().unwrap_or(Value::Null);
    let Some(spec) = child_obj(new, "spec") else {
        return;
    };
    let new_ip = str_of(spec, "clusterIP").to_string();
    if !is_empty(old_spec, "clusterIPs") && is_empty(spec, "clusterIPs") && old_ip == new_ip {
        spec["clusterIPs"] = old_ips.clone();
    }
    if old_ip != new_ip {
        let same_ips = semantic_eq(spec.get("clusterIPs").unwrap_or(&Value::Null), &old_ips);
        if !old_ip.is_empty() && new_ip.is_empty() {
            if same_ips && let Some(m) = spec.as_object_mut() {
                m.remove("clusterIPs");
            }
        } else if same_ips {
            spec["clusterIPs"] = json!([new_ip]);
        }
    }
}

/// Upstream's `dropTypeDependentFields`: when the type changes, values that no longer apply
/// and were not changed by the user are cleared.
fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    let old_spec = at(old, &["spec"]).clone();
    let lost_cluster_ip = needs_cluster_ip(old) && !needs_cluster_ip(new);
    let lost_node_port = needs_node_port(old) && !needs_node_port(new);
    let lost_hc = needs_health_check(old) && !needs_health_check(new);
    let left_lb = svc_type(old) == "LoadBalancer" && svc_type(new) != "LoadBalancer";
    let lost_access = externally_accessible(old) && !externally_accessible(new);
    let is_lb = svc_type(new) == "LoadBalancer";
    if let Some(spec) = child_obj(new, "spec") {
        let same = |spec: &Value, key: &str| {
            semantic_eq(
                spec.get(key).unwrap_or(&Value::Null),
                old_spec.get(key).unwrap_or(&Value::Null),
            )
        };
        let mut remove = Vec::new();
        if lost_cluster_ip {
            if same(spec, "clusterIP") && same(spec, "clusterIPs") {
                remove.extend(["clusterIP", "clusterIPs"]);
            }
            for key in ["ipFamilies", "ipFamilyPolicy"] {
                if same(spec, key) {
                    remove.push(key);
                }
            }
        }
        if lost_hc && same(spec, "healthCheckNodePort") {
            remove.push("healthCheckNodePort");
        }
        if left_lb {
            for key in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
                if same(spec, key) {
                    remove.push(key);
                }
            }
        }
        if lost_access && same(spec, "externalTrafficPolicy") {
            remove.push("externalTrafficPolicy");
        }
        if lost_node_port {
            let same_ports = arr_of(spec, "ports").len() == arr_of(&old_spec, "ports").len()
                && arr_of(spec, "ports")
                    .iter()
                    .zip(arr_of(&old_spec, "ports"))
                    .all(|(a, b)| int_of(a, "nodePort") == int_of(b, "nodePort"));
            if same_ports {
                for port in each_mut(spec, "ports") {
                    if let Some(m) = port.as_object_mut() {
                        m.remove("nodePort");
                    }
                }
            }
        }
        if let Some(m) = spec.as_object_mut() {
            for key in remove {
                m.remove(key);
            }
        }
    }
    if !is_lb && let Some(status) = child_obj(new, "status") {
        status["loadBalancer"] = json!({});
    }
}

/// `core.ServicePort{…}` as Go's `%#v` prints the (protocol, port) key of a duplicate.
fn go_service_port_key(protocol: &str, port: i64) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        v::go_quote(protocol)
    )
}

fn validate_service(svc: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = at(svc, &["spec"]);
    let t = svc_type(svc);
    let headless = is_headless(svc);
    let ports = arr_of(spec, "ports");
    let annotations = at(svc, &["metadata", "annotations"]);
    let hints = annotations
        .get("service.kubernetes.io/topology-aware-hints")
        .and_then(Value::as_str);
    let mode = annotations
        .get("service.kubernetes.io/topology-mode")
        .and_then(Value::as_str);
    if let (Some(h), Some(m)) = (hints, mode)
        && h != m
    {
        errs.push(FieldError::invalid(
            "metadata.annotations[service.kubernetes.io/topology-mode]",
            m,
            "must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified",
        ));
    }
    if ports.is_empty() && !headless && t != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    match t {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            "None",
            format!("may not be set to 'None' for {t} services"),
        )),
        "ExternalName" => {
            for key in ["clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                if !is_empty(spec, key) {
                    errs.push(FieldError::forbidden(
                        format!("spec.{key}"),
                        "may not be set for ExternalName services",
                    ));
                }
            }
            let name = str_of(spec, "externalName");
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                for msg in v::is_dns1123_subdomain(cname) {
                    errs.push(FieldError::invalid("spec.externalName", cname, msg));
                }
            }
        }
        _ => {}
    }
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = format!("spec.ports[{i}]");
        let name = str_of(port, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else if !name.is_empty() {
            for msg in v::is_dns1123_label(name) {
                errs.push(FieldError::invalid(format!("{p}.name"), name, msg));
            }
            if !names.insert(name) {
                errs.push(FieldError::duplicate(format!("{p}.name"), name));
            }
        }
        let num = int_of(port, "port").unwrap_or(0);
        for msg in checks::is_valid_port_num(num) {
            errs.push(FieldError::invalid(format!("{p}.port"), num, msg));
        }
        validate_protocol(
            str_of(port, "protocol"),
            &format!("{p}.protocol"),
            &mut errs,
        );
        validate_port_num_or_name(
            port.get("targetPort"),
            &format!("{p}.targetPort"),
            &mut errs,
        );
        if let Some(app) = port.get("appProtocol").and_then(Value::as_str) {
            for msg in v::is_qualified_name(app) {
                errs.push(FieldError::invalid(format!("{p}.appProtocol"), app, msg));
            }
        }
    }
    if let Some(sel) = spec.get("selector").filter(|s| !s.is_null()) {
        errs.extend(v::validate_labels(sel, "spec.selector"));
    }
    let affinity = str_of(spec, "sessionAffinity");
    if affinity.is_empty() {
        errs.push(FieldError::required("spec.sessionAffinity", ""));
    } else if affinity != "ClientIP" && affinity != "None" {
        errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            affinity,
            &["ClientIP", "None"],
        ));
    }
    let cfg_path = "spec.sessionAffinityConfig";
    if affinity == "ClientIP" {
        let when = "when session affinity type is ClientIP";
        let cfg = spec.get("sessionAffinityConfig").filter(|c| !c.is_null());
        match cfg.and_then(|c| c.get("clientIP")).filter(|c| !c.is_null()) {
            None if cfg.is_none() => errs.push(FieldError::required(cfg_path, when)),
            None => errs.push(FieldError::required(format!("{cfg_path}.clientIP"), when)),
            Some(client) => match int_of(client, "timeoutSeconds") {
                None => errs.push(FieldError::required(
                    format!("{cfg_path}.clientIP.timeoutSeconds"),
                    when,
                )),
                Some(secs) if secs <= 0 || secs > MAX_CLIENT_IP_AFFINITY_SECONDS => {
                    errs.push(FieldError::invalid(
                        format!("{cfg_path}.clientIP.timeoutSeconds"),
                        secs,
                        format!(
                            "must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"
                        ),
                    ))
                }
                Some(_) => {}
            },
        }
    } else if affinity == "None" && has(spec, "sessionAffinityConfig") {
        errs.push(FieldError::forbidden(
            cfg_path,
            "must not be set when session affinity is None",
        ));
    }
    errs.extend(validate_cluster_ips_related(svc));
    for (i, ip) in arr_of(spec, "externalIPs").iter().enumerate() {
        let p = format!("spec.externalIPs[{i}]");
        let ip = ip.as_str().unwrap_or("");
        let ip_errs = checks::valid_ip(&p, ip);
        if ip_errs.is_empty() {
            errs.extend(non_special_ip(ip, &p));
        } else {
            errs.extend(ip_errs);
        }
    }
    const TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if t.is_empty() {
        errs.push(FieldError::required("spec.type", ""));
    } else if !TYPES.contains(&t) {
        errs.push(FieldError::not_supported("spec.type", t, &TYPES));
    }
    if t == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if int_of(port, "nodePort").unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let np = int_of(port, "nodePort").unwrap_or(0);
        if np == 0 {
            continue;
        }
        if !node_ports.insert((str_of(port, "protocol"), np)) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}].nodePort"),
                np,
            ));
        }
        if t != "ClusterIP" && !(NODE_PORT_MIN..=NODE_PORT_MAX).contains(&np) {
            // The allocator's message upstream, where the range is checked.
            errs.push(FieldError::invalid(
                format!("spec.ports[{i}].nodePort"),
                np,
                format!(
                    "provided port is not in the valid range. The range of valid ports is {NODE_PORT_MIN}-{NODE_PORT_MAX}"
                ),
            ));
        }
    }
    let mut keys = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let (protocol, num) = (str_of(port, "protocol"), int_of(port, "port").unwrap_or(0));
        if !keys.insert((protocol, num)) {
            errs.push(raw_error(
                FieldErrorKind::Duplicate,
                format!("spec.ports[{i}]"),
                &go_service_port_key(protocol, num),
                "",
            ));
        }
    }
    let ranges = arr_of(spec, "loadBalancerSourceRanges");
    let lb_only = "may only be used when `type` is 'LoadBalancer'";
    if !ranges.is_empty() {
        // Upstream spells this path with a capital L.
        let p = "spec.LoadBalancerSourceRanges";
        if t != "LoadBalancer" {
            errs.push(FieldError::forbidden(p, lb_only));
        }
        for (i, r) in ranges.iter().enumerate() {
            errs.extend(checks::valid_cidr(
                &format!("{p}[{i}]"),
                r.as_str().unwrap_or("").trim(),
            ));
        }
    } else if let Some(val) = annotations
        .get("service.beta.kubernetes.io/load-balancer-source-ranges")
        .and_then(Value::as_str)
    {
        let p = "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]";
        if t != "LoadBalancer" {
            errs.push(FieldError::forbidden(p, lb_only));
        }
        let val = val.trim();
        if !val.is_empty() {
            for cidr in val.split(',') {
                errs.extend(checks::valid_cidr(p, cidr.trim()));
            }
        }
    }
    if has(spec, "allocateLoadBalancerNodePorts") && t != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            lb_only,
        ));
    }
    if t == "LoadBalancer" && !has(spec, "allocateLoadBalancerNodePorts") {
        errs.push(FieldError::required("allocateLoadBalancerNodePorts", ""));
    }
    if let Some(class) = spec.get("loadBalancerClass").and_then(Value::as_str) {
        if t == "LoadBalancer" {
            for msg in v::is_qualified_name(class) {
                errs.push(FieldError::invalid("spec.loadBalancerClass", class, msg));
            }
        } else {
            errs.push(FieldError::forbidden("spec.loadBalancerClass", lb_only));
        }
    }
    let etp = str_of(spec, "externalTrafficPolicy");
    if !externally_accessible(svc) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
    } else if etp != "Cluster" && etp != "Local" {
        errs.push(FieldError::not_supported(
            "spec.externalTrafficPolicy",
            etp,
            &["Cluster", "Local"],
        ));
    }
    let hc = int_of(spec, "healthCheckNodePort").unwrap_or(0);
    if !needs_health_check(svc) {
        if hc != 0 {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc != 0 {
        // Unset is fine: the allocator fills it upstream before validation.
        for msg in checks::is_valid_port_num(hc) {
            errs.push(FieldError::invalid("spec.healthCheckNodePort", hc, msg));
        }
    }
    match spec.get("internalTrafficPolicy").and_then(Value::as_str) {
        None => {
            if matches!(t, "NodePort" | "LoadBalancer" | "ClusterIP") {
                errs.push(FieldError::required("spec.internalTrafficPolicy", ""));
            }
        }
        Some(p) if p != "Cluster" && p != "Local" => errs.push(FieldError::not_supported(
            "spec.internalTrafficPolicy",
            p,
            &["Cluster", "Local"],
        )),
        Some(_) => {}
    }
    if let Some(td) = spec.get("trafficDistribution").and_then(Value::as_str) {
        const DISTRIBUTIONS: [&str; 3] = ["PreferClose", "PreferSameZone", "PreferSameNode"];
        if !DISTRIBUTIONS.contains(&td) {
            errs.push(FieldError::not_supported(
                "spec.trafficDistribution",
                td,
                &DISTRIBUTIONS,
            ));
        }
    }
    errs
}

/// Upstream's `ValidateNonSpecialIP`.
fn non_special_ip(ip: &str, field: &str) -> Vec<FieldError> {
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        return vec![FieldError::invalid(field, ip, "must be a valid IP address")];
    };
    let mut errs = Vec::new();
    if addr.is_unspecified() {
        errs.push(FieldError::invalid(
            field,
            ip,
            format!("may not be unspecified ({ip})"),
        ));
    }
    if addr.is_loopback() {
        errs.push(FieldError::invalid(
            field,
            ip,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let link_local = match addr {
        std::net::IpAddr::V4(a) => a.is_link_local(),
        std::net::IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        errs.push(FieldError::invalid(
            field,
            ip,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    let link_local_multicast = match addr {
        std::net::IpAddr::V4(a) => a.octets()[..3] == [224, 0, 0],
        std::net::IpAddr::V6(a) => (a.segments()[0] & 0xff0f) == 0xff02,
    };
    if link_local_multicast {
        errs.push(FieldError::invalid(
            field,
            ip,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

/// Upstream's `ValidateServiceClusterIPsRelatedFields`, plus what its IPv4-only allocator
/// rejects about families.
fn validate_cluster_ips_related(svc: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !needs_cluster_ip(svc) {
        return errs;
    }
    let spec = at(svc, &["spec"]);
    let cluster_ip = str_of(spec, "clusterIP");
    let ips_value = spec.get("clusterIPs").unwrap_or(&Value::Null);
    let ips: Vec<&str> = arr_of(spec, "clusterIPs")
        .iter()
        .map(|i| i.as_str().unwrap_or(""))
        .collect();
    let ips_path = "spec.clusterIPs";
    if !cluster_ip.is_empty() {
        if ips.is_empty() {
            errs.push(FieldError::required(ips_path, ""));
        } else if ips[0] != cluster_ip {
            errs.push(invalid_raw(
                ips_path,
                &go_string_slice(ips_value),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(invalid_raw(
            ips_path,
            &go_string_slice(ips_value),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen = HashSet::new();
    for (i, fam) in arr_of(spec, "ipFamilies").iter().enumerate() {
        let fam = fam.as_str().unwrap_or("");
        let p = format!("spec.ipFamilies[{i}]");
        if fam != "IPv4" && fam != "IPv6" {
            errs.push(FieldError::not_supported(&p, fam, &["IPv4", "IPv6"]));
        }
        if !seen.insert(fam) {
            errs.push(FieldError::duplicate(&p, fam));
        }
    }
    if let Some(policy) = spec.get("ipFamilyPolicy").and_then(Value::as_str) {
        const POLICIES: [&str; 3] = ["PreferDualStack", "RequireDualStack", "SingleStack"];
        if !POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(
                "spec.ipFamilyPolicy",
                policy,
                &POLICIES,
            ));
        }
    }
    let mut invalid_ips = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && *ip == "None" {
            if ips.len() > 1 {
                invalid_ips = true;
                errs.push(invalid_raw(
                    ips_path,
                    &go_string_slice(ips_value),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        let ip_errs = checks::valid_ip(&format!("{ips_path}[{i}]"), ip);
        invalid_ips |= !ip_errs.is_empty();
        errs.extend(ip_errs);
    }
    if ips.len() > 2 {
        errs.push(invalid_raw(
            ips_path,
            &go_string_slice(ips_value),
            "may only hold up to 2 values",
        ));
    }
    if invalid_ips {
        return errs;
    }
    if ips.len() > 1 {
        let v6 = ips.iter().filter(|ip| checks::is_ipv6(ip)).count();
        if v6 != 1 {
            errs.push(invalid_raw(
                ips_path,
                &go_string_slice(ips_value),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    let families = arr_of(spec, "ipFamilies");
    if !is_headless(svc) {
        for (i, ip) in ips.iter().enumerate() {
            let Some(fam) = families.get(i).and_then(Value::as_str) else {
                break;
            };
            let v6 = checks::is_ipv6(ip);
            if fam == "IPv4" && v6 {
                errs.push(FieldError::invalid(
                    format!("{ips_path}[{i}]"),
                    *ip,
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if fam == "IPv6" && !v6 {
                errs.push(FieldError::invalid(
                    format!("{ips_path}[{i}]"),
                    *ip,
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    // The service network has one family, IPv4.
    let selectorless_headless = is_headless(svc) && is_empty(spec, "selector");
    if !selectorless_headless {
        if str_of(spec, "ipFamilyPolicy") == "RequireDualStack" {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                "RequireDualStack",
                "this cluster is not configured for dual-stack services",
            ));
        }
        for (i, fam) in families.iter().enumerate() {
            if fam.as_str() == Some("IPv6") {
                errs.push(FieldError::invalid(
                    format!("spec.ipFamilies[{i}]"),
                    "IPv6",
                    "not configured on this cluster",
                ));
            }
        }
    }
    errs
}

/// Upstream's `validateUpgradeDowngradeClusterIPs`: the primary address never changes.
fn validate_cluster_ips_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !needs_cluster_ip(new) || !needs_cluster_ip(old) {
        return errs;
    }
    if is_headless(new) && is_headless(old) {
        return errs;
    }
    let ips = |s: &Value| -> Vec<String> {
        arr_of(at(s, &["spec"]), "clusterIPs")
            .iter()
            .map(|i| i.as_str().unwrap_or("").to_string())
            .collect()
    };
    let (n, o) = (ips(new), ips(old));
    let rendered = go_string_slice(at(new, &["spec", "clusterIPs"]));
    let changed = |errs: &mut Vec<FieldError>, i: usize| {
        errs.push(invalid_raw(
            format!("spec.clusterIPs[{i}]"),
            &rendered,
            "may not change once set",
        ));
    };
    if n.len() == o.len() {
        for (i, ip) in o.iter().enumerate() {
            if *ip != n[i] {
                changed(&mut errs, i);
            }
        }
    } else if o.len() > n.len() {
        if n.is_empty() {
            errs.push(invalid_raw(
                "spec.clusterIPs[0]",
                &rendered,
                "primary clusterIP can not be unset",
            ));
        }
        if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
            changed(&mut errs, 0);
        }
        if n.len() == 1 && str_of(at(new, &["spec"]), "ipFamilyPolicy") != "SingleStack" {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                at(new, &["spec", "ipFamilyPolicy"]).clone(),
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if !o.is_empty() && n[0] != o[0] {
        changed(&mut errs, 0);
    }
    errs
}

/// Upstream's `validateUpgradeDowngradeIPFamilies`: the primary family never changes.
fn validate_ip_families_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !needs_cluster_ip(new) || !needs_cluster_ip(old) {
        return errs;
    }
    if is_headless(new) || is_headless(old) {
        return errs;
    }
    let fams = |s: &Value| -> Vec<String> {
        arr_of(at(s, &["spec"]), "ipFamilies")
            .iter()
            .map(|i| i.as_str().unwrap_or("").to_string())
            .collect()
    };
    let (n, o) = (fams(new), fams(old));
    let rendered = {
        let items: Vec<String> = n.iter().map(|f| v::go_quote(f)).collect();
        if at(new, &["spec", "ipFamilies"]).is_array() {
            format!("[]core.IPFamily{{{}}}", items.join(", "))
        } else {
            "[]core.IPFamily(nil)".to_string()
        }
    };
    let ips_rendered = go_string_slice(at(new, &["spec", "clusterIPs"]));
    if n.len() == o.len() {
        if n != o {
            errs.push(invalid_raw(
                "spec.ipFamilies[0]",
                &rendered,
                "may not change once set",
            ));
        }
    } else if o.len() > n.len() {
        if is_empty(at(new, &["spec"]), "clusterIPs") {
            errs.push(invalid_raw(
                "spec.ipFamilies[0]",
                &rendered,
                "primary ipFamily can not be unset",
            ));
        }
        if !n.is_empty() && n[0] != o[0] {
            errs.push(invalid_raw(
                "spec.ipFamilies[0]",
                &ips_rendered,
                "may not change once set",
            ));
        }
        if n.len() == 1 && str_of(at(new, &["spec"]), "ipFamilyPolicy") != "SingleStack" {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                at(new, &["spec", "ipFamilyPolicy"]).clone(),
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
        errs.push(invalid_raw(
            "spec.ipFamilies[0]",
            &ips_rendered,
            "may not change once set",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": spec,
        })
    }

    fn create(spec: Value) -> Value {
        let mut s = svc(spec);
        ServiceStrategy.default(&mut s);
        ServiceStrategy.prepare_for_create(&mut s);
        s
    }

    /// What the handler's allocator does after validation.
    fn allocate(s: &mut Value, ip: &str) {
        s["spec"]["clusterIP"] = json!(ip);
        s["spec"]["clusterIPs"] = json!([ip]);
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn cluster_ip_defaults() {
        let s = create(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        assert_eq!(
            s["spec"],
            json!({
                "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "sessionAffinity": "None",
                "type": "ClusterIP",
                "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack",
                "ipFamilies": ["IPv4"],
            })
        );
        assert_eq!(s["status"], json!({"loadBalancer": {}}));
        assert!(ServiceStrategy.validate(&s).is_empty());
    }

    #[test]
    fn node_port_and_load_balancer_defaults() {
        let s = create(json!({"type": "NodePort", "ports": [{"port": 80, "targetPort": "http"}]}));
        assert_eq!(s["spec"]["externalTrafficPolicy"], json!("Cluster"));
        assert_eq!(s["spec"]["ports"][0]["targetPort"], json!("http"));
        let s = create(json!({"type": "LoadBalancer", "ports": [{"port": 443}]}));
        assert_eq!(s["spec"]["allocateLoadBalancerNodePorts"], json!(true));
        assert_eq!(s["spec"]["externalTrafficPolicy"], json!("Cluster"));
        assert!(ServiceStrategy.validate(&s).is_empty());
    }

    #[test]
    fn headless_and_external_name() {
        let s = create(json!({"clusterIP": "None", "selector": {"app": "db"}}));
        assert_eq!(s["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(s["spec"]["ipFamilyPolicy"], json!("SingleStack"));
        assert!(
            ServiceStrategy.validate(&s).is_empty(),
            "{:?}",
            ServiceStrategy.validate(&s)
        );
        let s = create(json!({"clusterIP": "None"}));
        assert_eq!(s["spec"]["ipFamilyPolicy"], json!("RequireDualStack"));
        assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
        assert!(ServiceStrategy.validate(&s).is_empty());
        let s = create(json!({"type": "ExternalName", "externalName": "example.com."}));
        assert!(s["spec"].get("ipFamilies").is_none());
        assert!(s["spec"].get("internalTrafficPolicy").is_none());
        assert!(ServiceStrategy.validate(&s).is_empty());
    }

    #[test]
    fn invalid_services() {
        let s = create(json!({
            "type": "Magic",
            "ports": [
                {"port": 0, "protocol": "ICMP"},
                {"name": "b", "port": 80, "nodePort": 80},
            ],
        }));
        assert_eq!(
            messages(&ServiceStrategy.validate(&s)),
            vec![
                "spec.ports[0].name: Required value",
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                "spec.ports[1].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
            ]
        );
        let s = create(json!({"ports": []}));
        assert_eq!(
            messages(&ServiceStrategy.validate(&s)),
            vec!["spec.ports: Required value"]
        );
        let s = create(json!({"clusterIP": "10.0.0.500", "ports": [{"port": 80}, {"port": 80}]}));
        assert_eq!(
            messages(&ServiceStrategy.validate(&s)),
            vec![
                "spec.ports[0].name: Required value",
                "spec.ports[1].name: Required value",
                "spec.clusterIPs[0]: Invalid value: \"10.0.0.500\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
            ]
        );
        let s = create(json!({"ports": [{"port": 80, "nodePort": 30080}]}));
        assert_eq!(
            messages(&ServiceStrategy.validate(&s)),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
    }

    #[test]
    fn cluster_ip_is_immutable() {
        let mut old = create(json!({"ports": [{"port": 80}]}));
        allocate(&mut old, "10.96.0.10");
        let mut new = svc(json!({"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}));
        ServiceStrategy.default(&mut new);
        ServiceStrategy.prepare_for_update(&mut new, &old);
        assert!(ServiceStrategy.validate(&new).is_empty());
        assert_eq!(
            messages(&ServiceStrategy.validate_update(&new, &old)),
            vec![
                "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.20\"}: may not change once set"
            ]
        );
    }

    #[test]
    fn update_without_allocated_values_keeps_them() {
        let mut old = create(json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}]}));
        allocate(&mut old, "10.96.0.10");
        old["spec"]["ports"][0]["nodePort"] = json!(31000);
        let mut new = svc(json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}]}));
        ServiceStrategy.default(&mut new);
        ServiceStrategy.prepare_for_update(&mut new, &old);
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], json!(31000));
        assert!(ServiceStrategy.validate(&new).is_empty());
        assert!(ServiceStrategy.validate_update(&new, &old).is_empty());
    }

    #[test]
    fn switching_to_cluster_ip_drops_node_ports() {
        let mut old = create(json!({"type": "NodePort", "ports": [{"port": 80}]}));
        allocate(&mut old, "10.96.0.10");
        old["spec"]["ports"][0]["nodePort"] = json!(31000);
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        ServiceStrategy.default(&mut new);
        ServiceStrategy.prepare_for_update(&mut new, &old);
        assert!(new["spec"]["ports"][0].get("nodePort").is_none());
        assert!(new["spec"].get("externalTrafficPolicy").is_none());
        assert!(
            ServiceStrategy.validate(&new).is_empty(),
            "{:?}",
            ServiceStrategy.validate(&new)
        );
    }

    #[test]
    fn names_are_dns1035_labels() {
        assert!(ServiceStrategy.validate_name("web").is_empty());
        assert_eq!(
            ServiceStrategy.validate_name("1web"),
            vec!["a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string()]
        );
    }

    #[test]
    fn client_ip_affinity() {
        let s = create(json!({"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}));
        assert_eq!(
            s["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
        assert!(ServiceStrategy.validate(&s).is_empty());
    }

    #[test]
    fn load_balancer_status() {
        let s = create(json!({"ports": [{"port": 80}]}));
        let mut new = s.clone();
        new["status"]["loadBalancer"]["ingress"] = json!([{"ip": "1.2.3.4"}]);
        assert_eq!(
            messages(&ServiceStrategy.validate_status_update(&new, &s)),
            vec![
                "status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"
            ]
        );
    }
}
