//! The `/etc/hosts` and `/etc/resolv.conf` the kubelet writes for a pod and bind-mounts into its
//! containers, with upstream kubelet's content and rules (`managedHostsFileContent`,
//! `GetPodDNS`; the runtime's rendering of the resulting DNS config).

use std::fmt::Write;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::PodDNSConfig;

/// At most this many nameservers reach a pod (glibc's MAXNS).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains, of at most [`MAX_SEARCH_CHARS`] characters in all.
pub const MAX_SEARCHES: usize = 32;
pub const MAX_SEARCH_CHARS: usize = 2048;

/// Which DNS settings a pod gets, upstream's `dnsPolicy` after hostNetwork is taken into account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsPolicy {
    /// The cluster DNS servers, the cluster search domains and `ndots:5`.
    ClusterFirst,
    /// The node's resolv.conf.
    Default,
    /// Nothing but the pod's `dnsConfig`.
    None,
}

impl DnsPolicy {
    /// The policy a pod's `spec.dnsPolicy` (defaulted to `ClusterFirst`) and `spec.hostNetwork`
    /// give: `ClusterFirst` on the host network means `Default`; `ClusterFirstWithHostNet`
    /// means `ClusterFirst` everywhere. An unknown value is treated as the default.
    pub fn for_pod(dns_policy: Option<&str>, host_network: bool) -> DnsPolicy {
        match dns_policy {
            Some("None") => DnsPolicy::None,
            Some("Default") => DnsPolicy::Default,
            Some("ClusterFirstWithHostNet") => DnsPolicy::ClusterFirst,
            _ if host_network => DnsPolicy::Default,
            _ => DnsPolicy::ClusterFirst,
        }
    }
}

/// The pod's domain when it has `spec.subdomain`: `<subdomain>.<namespace>.svc.<cluster domain>`
/// (its FQDN is `<hostname>.<that>`).
pub fn pod_host_domain(subdomain: &str, namespace: &str, cluster_domain: &str) -> Option<String> {
    if subdomain.is_empty() {
        return None;
    }
    Some(format!(
        "{subdomain}.{namespace}.svc.{}",
        cluster_domain.trim_end_matches('.')
    ))
}

/// The kubelet-managed `/etc/hosts`: localhost and IPv6 boilerplate, the pod's own name (and
/// FQDN when `host_domain` is given, see [`pod_host_domain`]), then the pod's `hostAliases`
/// as `(ip, hostnames)`, one line per alias.
pub fn pod_hosts_file(
    pod_ip: IpAddr,
    hostname: &str,
    host_domain: Option<&str>,
    host_aliases: &[(String, Vec<String>)],
) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    match host_domain.filter(|d| !d.is_empty()) {
        Some(domain) => {
            let _ = writeln!(out, "{pod_ip}\t{hostname}.{domain}\t{hostname}");
        }
        None => {
            let _ = writeln!(out, "{pod_ip}\t{hostname}");
        }
    }
    if !host_aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for (ip, hostnames) in host_aliases {
            let _ = writeln!(out, "{ip}\t{}", hostnames.join("\t"));
        }
    }
    out
}

/// A resolver configuration: what the runtime renders as resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ResolverConfig {
    nameservers: Vec<String>,
    searches: Vec<String>,
    options: Vec<String>,
}

/// The pod's `/etc/resolv.conf`.
///
/// - `host_resolv_conf`: the content of the node's resolv.conf (kubelet's `--resolv-conf`).
/// - `cluster_dns`, `cluster_domain`: kubelet's `clusterDNS` and `clusterDomain`.
/// - `ClusterFirst` without any cluster DNS server falls back to `Default` (with a warning, as
///   kubelet records a `MissingClusterDNS` event).
/// - `dns_config` (the pod's `spec.dnsConfig`) is merged last: nameservers and searches
///   appended without duplicates, options replaced by name.
///
/// At most [`MAX_NAMESERVERS`] nameservers and [`MAX_SEARCHES`]/[`MAX_SEARCH_CHARS`] of search
/// domains are kept, as kubelet trims them.
pub fn pod_resolv_conf(
    host_resolv_conf: &str,
    cluster_dns: &[IpAddr],
    cluster_domain: &str,
    namespace: &str,
    policy: DnsPolicy,
    dns_config: Option<&PodDNSConfig>,
) -> String {
    let host = parse_resolv_conf(host_resolv_conf);
    let policy = if policy == DnsPolicy::ClusterFirst && cluster_dns.is_empty() {
        // Once per agent: every sync of every pod computes the file.
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                namespace,
                "no cluster DNS server is configured: a ClusterFirst pod gets the node's resolv.conf (policy Default)"
            );
        }
        DnsPolicy::Default
    } else {
        policy
    };
    let mut config = match policy {
        DnsPolicy::None => ResolverConfig::default(),
        DnsPolicy::Default => host,
        DnsPolicy::ClusterFirst => {
            let domain = cluster_domain.trim_end_matches('.');
            let mut searches = Vec::new();
            if !domain.is_empty() {
                searches.push(format!("{namespace}.svc.{domain}"));
                searches.push(format!("svc.{domain}"));
                searches.push(domain.to_string());
            }
            searches.extend(host.searches);
            ResolverConfig {
                nameservers: cluster_dns.iter().map(IpAddr::to_string).collect(),
                searches: without_duplicates(searches),
                options: vec!["ndots:5".to_string()],
            }
        }
    };
    if let Some(pod) = dns_config {
        config
            .nameservers
            .extend(pod.nameservers.iter().flatten().cloned());
        config.nameservers = without_duplicates(std::mem::take(&mut config.nameservers));
        config
            .searches
            .extend(pod.searches.iter().flatten().cloned());
        config.searches = without_duplicates(std::mem::take(&mut config.searches));
        for option in pod.options.iter().flatten() {
            let Some(name) = option.name.as_deref() else {
                continue;
            };
            let rendered = match option.value.as_deref() {
                Some(value) if !value.is_empty() => format!("{name}:{value}"),
                _ => name.to_string(),
            };
            set_option(&mut config.options, rendered);
        }
    }
    fit_limits(&mut config);
    render(&config)
}

/// Nameservers, search domains (the last `search` line wins; trailing dots dropped, "." alone
/// ignored) and options (by name, the later wins) of a resolv.conf, as kubelet reads it.
fn parse_resolv_conf(text: &str) -> ResolverConfig {
    let mut config = ResolverConfig::default();
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => {
                if let Some(server) = fields.next() {
                    config.nameservers.push(server.to_string());
                }
            }
            Some("search") => {
                config.searches = fields
                    .filter(|domain| *domain != ".")
                    .map(|domain| domain.trim_end_matches('.').to_string())
                    .collect();
            }
            Some("options") => {
                for option in fields {
                    set_option(&mut config.options, option.to_string());
                }
            }
            _ => {}
        }
    }
    config
}

/// Sets `option` (`name` or `name:value`), replacing one of the same name in place.
fn set_option(options: &mut Vec<String>, option: String) {
    let name = |o: &str| o.split(':').next().unwrap_or_default().to_string();
    let wanted = name(&option);
    match options.iter_mut().find(|o| name(o) == wanted) {
        Some(existing) => *existing = option,
        None => options.push(option),
    }
}

fn without_duplicates(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect()
}

fn fit_limits(config: &mut ResolverConfig) {
    if config.nameservers.len() > MAX_NAMESERVERS {
        tracing::warn!(dropped = ?&config.nameservers[MAX_NAMESERVERS..], "too many nameservers for a pod; keeping the first {MAX_NAMESERVERS}");
        config.nameservers.truncate(MAX_NAMESERVERS);
    }
    if config.searches.len() > MAX_SEARCHES {
        tracing::warn!("too many search domains for a pod; keeping the first {MAX_SEARCHES}");
        config.searches.truncate(MAX_SEARCHES);
    }
    // The limit counts the domains joined by single spaces.
    let mut length = 0;
    let mut keep = 0;
    for domain in &config.searches {
        let added = domain.len() + usize::from(keep > 0);
        if length + added > MAX_SEARCH_CHARS {
            break;
        }
        length += added;
        keep += 1;
    }
    if keep < config.searches.len() {
        tracing::warn!(
            "the search domains of a pod exceed {MAX_SEARCH_CHARS} characters; trimming them"
        );
        config.searches.truncate(keep);
    }
}

fn render(config: &ResolverConfig) -> String {
    let mut out = String::new();
    if !config.searches.is_empty() {
        let _ = writeln!(out, "search {}", config.searches.join(" "));
    }
    for server in &config.nameservers {
        let _ = writeln!(out, "nameserver {server}");
    }
    if !config.options.is_empty() {
        let _ = writeln!(out, "options {}", config.options.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodDNSConfigOption;

    const HOST: &str = "# generated by dhcp\n\
        domain corp.example\n\
        search corp.example. lab.example .\n\
        nameserver 192.168.1.53\n\
        ; old one\n\
        nameserver 192.168.1.54\n\
        options timeout:2 attempts:3\n\
        options timeout:1\n";

    fn dns(ip: &str) -> IpAddr {
        ip.parse().unwrap()
    }

    #[test]
    fn hosts_file_matches_kubelet() {
        let plain = pod_hosts_file(dns("10.244.1.7"), "web-0", None, &[]);
        assert_eq!(
            plain,
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             10.244.1.7\tweb-0\n"
        );
        let domain = pod_host_domain("web", "shop", "cluster.local.").unwrap();
        assert_eq!(domain, "web.shop.svc.cluster.local");
        assert_eq!(pod_host_domain("", "shop", "cluster.local"), None);
        let aliased = pod_hosts_file(
            dns("10.244.1.7"),
            "web-0",
            Some(&domain),
            &[
                (
                    "127.0.0.1".into(),
                    vec!["foo.local".into(), "bar.local".into()],
                ),
                ("10.1.2.3".into(), vec!["foo.remote".into()]),
            ],
        );
        assert!(
            aliased.ends_with(
                "fe00::2\tip6-allrouters\n\
             10.244.1.7\tweb-0.web.shop.svc.cluster.local\tweb-0\n\
             \n# Entries added by HostAliases.\n\
             127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"
            ),
            "{aliased}"
        );
    }

    #[test]
    fn cluster_first_uses_the_cluster_dns_and_search_path() {
        let conf = pod_resolv_conf(
            HOST,
            &[dns("10.96.0.10")],
            "cluster.local",
            "shop",
            DnsPolicy::ClusterFirst,
            None,
        );
        assert_eq!(
            conf,
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\n\
             nameserver 10.96.0.10\n\
             options ndots:5\n"
        );
    }

    #[test]
    fn default_copies_the_node_and_cluster_first_falls_back_to_it() {
        let expected = "search corp.example lab.example\n\
                        nameserver 192.168.1.53\nnameserver 192.168.1.54\n\
                        options timeout:1 attempts:3\n";
        let default = pod_resolv_conf(
            HOST,
            &[dns("10.96.0.10")],
            "cluster.local",
            "shop",
            DnsPolicy::Default,
            None,
        );
        assert_eq!(default, expected);
        let fallback = pod_resolv_conf(
            HOST,
            &[],
            "cluster.local",
            "shop",
            DnsPolicy::ClusterFirst,
            None,
        );
        assert_eq!(fallback, expected);
    }

    #[test]
    fn dns_config_is_merged_and_limits_apply() {
        let overrides = PodDNSConfig {
            nameservers: Some(vec![
                "10.96.0.10".into(),
                "1.1.1.1".into(),
                "8.8.8.8".into(),
                "9.9.9.9".into(),
            ]),
            searches: Some(vec!["svc.cluster.local".into(), "extra.example".into()]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ]),
        };
        let conf = pod_resolv_conf(
            HOST,
            &[dns("10.96.0.10")],
            "cluster.local",
            "shop",
            DnsPolicy::ClusterFirst,
            Some(&overrides),
        );
        assert_eq!(
            conf,
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example extra.example\n\
             nameserver 10.96.0.10\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n\
             options ndots:2 edns0\n"
        );
        let none = pod_resolv_conf(
            HOST,
            &[dns("10.96.0.10")],
            "cluster.local",
            "shop",
            DnsPolicy::None,
            Some(&overrides),
        );
        assert_eq!(
            none,
            "search svc.cluster.local extra.example\n\
             nameserver 10.96.0.10\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n\
             options ndots:2 edns0\n"
        );
        let long: Vec<String> = (0..40).map(|i| format!("{i:0>60}.example")).collect();
        let many = PodDNSConfig {
            searches: Some(long),
            ..Default::default()
        };
        let conf = pod_resolv_conf("", &[], "", "shop", DnsPolicy::None, Some(&many));
        let search = conf.lines().next().unwrap();
        assert!(
            search.len() - "search ".len() <= MAX_SEARCH_CHARS,
            "{}",
            search.len()
        );
        assert_eq!(search.split(' ').count() - 1, 2048 / 69);
    }

    #[test]
    fn policies_follow_host_network() {
        assert_eq!(DnsPolicy::for_pod(None, false), DnsPolicy::ClusterFirst);
        assert_eq!(
            DnsPolicy::for_pod(Some("ClusterFirst"), true),
            DnsPolicy::Default
        );
        assert_eq!(
            DnsPolicy::for_pod(Some("ClusterFirstWithHostNet"), true),
            DnsPolicy::ClusterFirst
        );
        assert_eq!(
            DnsPolicy::for_pod(Some("Default"), false),
            DnsPolicy::Default
        );
        assert_eq!(DnsPolicy::for_pod(Some("None"), true), DnsPolicy::None);
    }
}
