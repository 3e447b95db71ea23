//! Storage account network rules (`networkAcls`): which client addresses reach
//! an account's data at all, before any permission is looked at.
//!
//! `defaultAction` Allow or Deny; `ipRules` of addresses and CIDR ranges;
//! `virtualNetworkRules`, which keyless expresses as named address ranges
//! (`{"id": "<name>", "addressPrefix": "10.1.0.0/24"}`); and `bypass`
//! `AzureServices`, which lets keyless's trusted services (requests with a managed
//! identity's token) through. A refusal names the rule, never a permission.

use std::net::IpAddr;

use serde_json::Value;

use keyless_core::Error;

/// An address range: an address and a prefix length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cidr {
    base: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `1.2.3.4`, `1.2.3.0/24`, `::1`, `fd00::/8`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let base: IpAddr = addr.trim().parse().ok()?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Self { base, bits })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.base, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        let (a, b, width) = match (self.base, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                (u128::from(a.to_bits()), u128::from(b.to_bits()), 32)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.bits);
        shift >= width || (a >> shift) == (b >> shift)
    }
}

/// Whether the ARM id `resource` is the instance `rule` names (`*` matches
/// any one segment; case-insensitive, as ARM ids are).
fn resource_matches(rule: &str, resource: &str) -> bool {
    let resource = resource.to_ascii_lowercase();
    let (mut r, mut x) = (rule.split('/'), resource.split('/'));
    loop {
        match (r.next(), x.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == "*" || a == b => {}
            _ => return false,
        }
    }
}

/// The rules of one account, parsed from its `networkAcls`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    deny_by_default: bool,
    bypass_services: bool,
    allowed: Vec<(String, Cidr)>,
    /// `resourceAccessRules`: resource instances (ARM ids, `*` for any segment)
    /// whose managed identities pass whatever their address.
    resources: Vec<String>,
}

/// What a request is, besides its address, for the rules.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Caller<'a> {
    /// keyless's own service acting as a workspace's identity, in process
    /// (preview, code snapshots, datastore secrets): the `AzureServices` bypass.
    pub(crate) trusted_service: bool,
    /// The managed identity's resource (`xms_mirid`), for `resourceAccessRules`.
    pub(crate) managed_resource: Option<&'a str>,
}

impl Rules {
    /// Reads `networkAcls`; absent means allow everyone.
    ///
    /// # Errors
    /// A malformed rule, named (so a management update can refuse it).
    pub(crate) fn from_acls(acls: Option<&Value>) -> Result<Self, Error> {
        let Some(acls) = acls else {
            return Ok(Self::default());
        };
        let deny_by_default = match acls.get("defaultAction").and_then(Value::as_str) {
            None | Some("Allow") => false,
            Some("Deny") => true,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "networkAcls.defaultAction must be Allow or Deny, not `{other}`"
                )));
            }
        };
        let bypass_services = acls
            .get("bypass")
            .and_then(Value::as_str)
            .unwrap_or("AzureServices")
            .split(',')
            .any(|b| b.trim() == "AzureServices");
        let mut allowed = Vec::new();
        let list = |key: &str| {
            acls.get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        for rule in list("ipRules") {
            let value = rule
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let cidr = Cidr::parse(value).ok_or_else(|| {
                Error::invalid(format!(
                    "networkAcls.ipRules: `{value}` is not an address or CIDR range"
                ))
            })?;
            allowed.push((format!("ip rule {value}"), cidr));
        }
        for rule in list("virtualNetworkRules") {
            let id = rule.get("id").and_then(Value::as_str).unwrap_or_default();
            let prefix = rule
                .get("addressPrefix")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let cidr = Cidr::parse(prefix).ok_or_else(|| {
                Error::invalid(format!(
                    "networkAcls.virtualNetworkRules: `{id}` needs an addressPrefix such as 10.1.0.0/24 (keyless's virtual networks are named address ranges)"
                ))
            })?;
            allowed.push((format!("virtual network {id}"), cidr));
        }
        let mut resources = Vec::new();
        for rule in list("resourceAccessRules") {
            let id = rule
                .get("resourceId")
                .and_then(Value::as_str)
                .filter(|id| id.starts_with("/subscriptions/"))
                .ok_or_else(|| {
                    Error::invalid(
                        "networkAcls.resourceAccessRules: each rule needs a resourceId, an ARM id such as /subscriptions/…/providers/Microsoft.MachineLearningServices/workspaces/ws",
                    )
                })?;
            resources.push(id.to_ascii_lowercase());
        }
        Ok(Self {
            deny_by_default,
            bypass_services,
            allowed,
            resources,
        })
    }

    /// Whether `acls` can refuse anyone at all: only with `defaultAction: Deny`.
    /// Lets a request skip parsing the rules of an open account.
    pub(crate) fn may_refuse(acls: Option<&Value>) -> bool {
        acls.and_then(|a| a.get("defaultAction"))
            .and_then(Value::as_str)
            .is_some_and(|d| d != "Allow")
    }

    /// Whether a request from `client` passes; `trusted_service` when it carries
    /// a managed identity's token. `Err` says why not.
    pub(crate) fn admit(&self, client: Option<IpAddr>, caller: Caller<'_>) -> Result<(), String> {
        if !self.deny_by_default {
            return Ok(());
        }
        if caller.trusted_service && self.bypass_services {
            return Ok(());
        }
        if let Some(resource) = caller.managed_resource
            && self.resources.iter().any(|r| resource_matches(r, resource))
        {
            return Ok(());
        }
        if let Some(ip) = client
            && self.allowed.iter().any(|(_, c)| c.contains(ip))
        {
            return Ok(());
        }
        let names: Vec<&str> = self.allowed.iter().map(|(n, _)| n.as_str()).collect();
        Err(format!(
            "the account's network rules refuse client address {} (default action Deny; allowed: {}{})",
            client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
            if names.is_empty() {
                "no address".to_owned()
            } else {
                names.join(", ")
            },
            if self.bypass_services {
                "; trusted services bypass"
            } else {
                ""
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let c = Cidr::parse("127.0.0.0/30").unwrap();
        assert!(c.contains("127.0.0.3".parse().unwrap()));
        assert!(!c.contains("127.0.0.4".parse().unwrap()));
        assert!(c.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(
            !Cidr::parse("fd00::/8")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert_eq!(Cidr::parse("1.2.3.4/33"), None);
        assert_eq!(Cidr::parse("1.2.3"), None);
    }

    #[test]
    fn deny_by_default_admits_listed_ranges_and_trusted_services() {
        let rules = Rules::from_acls(Some(&json!({
            "defaultAction": "Deny",
            "bypass": "AzureServices",
            "ipRules": [{ "value": "127.0.0.1", "action": "Allow" }],
            "virtualNetworkRules": [{ "id": "training", "addressPrefix": "127.0.1.0/24" }],
        })))
        .unwrap();
        let anyone = Caller::default();
        let service = Caller {
            trusted_service: true,
            managed_resource: None,
        };
        assert!(rules.admit(ip("127.0.0.1"), anyone).is_ok());
        assert!(rules.admit(ip("127.0.1.9"), anyone).is_ok());
        let refused = rules.admit(ip("127.0.0.2"), anyone).unwrap_err();
        assert!(refused.contains("127.0.0.2") && refused.contains("virtual network training"));
        assert!(rules.admit(ip("127.0.0.2"), service).is_ok());
        // A managed identity is not a trusted service by itself.
        let compute = Caller {
            trusted_service: false,
            managed_resource: Some(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/ws/computes/c",
            ),
        };
        assert!(rules.admit(ip("127.0.0.2"), compute).is_err());
        let strict =
            Rules::from_acls(Some(&json!({ "defaultAction": "Deny", "bypass": "None" }))).unwrap();
        assert!(strict.admit(ip("127.0.0.1"), service).is_err());
        assert!(Rules::from_acls(None).unwrap().admit(None, anyone).is_ok());
        assert!(Rules::from_acls(Some(&json!({ "defaultAction": "Maybe" }))).is_err());
        assert!(Rules::from_acls(Some(&json!({ "ipRules": [{ "value": "nope" }] }))).is_err());
    }

    #[test]
    fn resource_access_rules_admit_the_identities_of_the_named_instances_only() {
        let rules = Rules::from_acls(Some(&json!({
            "defaultAction": "Deny",
            "bypass": "None",
            "resourceAccessRules": [
                { "tenantId": "t", "resourceId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/ws" },
                { "tenantId": "t", "resourceId": "/subscriptions/s/resourceGroups/*/providers/Microsoft.MachineLearningServices/workspaces/*/computes/gpu" },
            ],
        })))
        .unwrap();
        let mi = |id: &'static str| Caller {
            trusted_service: false,
            managed_resource: Some(id),
        };
        assert!(rules.admit(ip("10.0.0.1"), mi("/subscriptions/S/resourceGroups/G/providers/Microsoft.MachineLearningServices/workspaces/WS")).is_ok());
        assert!(rules.admit(ip("10.0.0.1"), mi("/subscriptions/s/resourceGroups/other/providers/Microsoft.MachineLearningServices/workspaces/w2/computes/gpu")).is_ok());
        assert!(rules.admit(ip("10.0.0.1"), mi("/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/ws2")).is_err());
        assert!(rules.admit(ip("10.0.0.1"), mi("/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/ws/computes/cpu")).is_err());
        assert!(
            Rules::from_acls(Some(
                &json!({ "resourceAccessRules": [{ "resourceId": "ws" }] })
            ))
            .is_err()
        );
    }
}
