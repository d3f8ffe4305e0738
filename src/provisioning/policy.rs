//! The JIT decision: create, update or refuse, and which roles a login grants.

use super::attributes::{preset, AttributeNames, AttributeOverrides, Vendor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvisioningMode {
    #[default]
    Jit,
    Manual,
}

/// One connection's JIT policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub names: AttributeNames,
    /// Normalized rules: `example.com` (exact) or `*.example.com` (subdomains only).
    pub domains: Vec<String>,
    pub default_roles: Vec<String>,
    pub role_mapping: BTreeMap<String, Vec<String>>,
    pub update_on_login: bool,
    pub mode: ProvisioningMode,
}

impl Policy {
    pub fn new(
        vendor: Vendor,
        overrides: &AttributeOverrides,
        domains: Vec<String>,
        default_roles: Vec<String>,
        role_mapping: BTreeMap<String, Vec<String>>,
        update_on_login: bool,
        mode: ProvisioningMode,
    ) -> Self {
        Policy {
            names: preset(vendor).with_overrides(overrides),
            domains,
            default_roles,
            role_mapping,
            update_on_login,
            mode,
        }
    }
}

/// One SAML attribute as the provisioning policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAttribute {
    pub name: String,
    pub friendly_name: Option<String>,
    pub values: Vec<String>,
}

/// What the IdP asserted about the user (already verified by the SAML room).
#[derive(Debug, Clone)]
pub struct Upstream {
    pub subject: String,
    pub attributes: Vec<UpstreamAttribute>,
}

/// The profile the broker stores and puts into tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RoleSource {
    Default,
    Idp,
    Manual,
}

impl RoleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleSource::Default => "default",
            RoleSource::Idp => "idp",
            RoleSource::Manual => "manual",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "default" => Some(RoleSource::Default),
            "idp" => Some(RoleSource::Idp),
            "manual" => Some(RoleSource::Manual),
            _ => None,
        }
    }
}

/// A role grant with its provenance (for `idp`, the group that produced it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub role: String,
    pub source: RoleSource,
    pub detail: Option<String>,
}

/// The state of a known user, as far as the decision needs it.
#[derive(Debug, Clone)]
pub struct Existing {
    pub user_id: String,
    pub disabled: bool,
    pub profile: Profile,
    pub idp_roles: Vec<Grant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    DomainNotAllowed,
    EmailMissing,
    NotProvisioned,
    UserDisabled,
    EmailConflict,
}

impl DenyReason {
    pub fn code(self) -> &'static str {
        match self {
            DenyReason::DomainNotAllowed => "domain_not_allowed",
            DenyReason::EmailMissing => "email_missing",
            DenyReason::NotProvisioned => "not_provisioned",
            DenyReason::UserDisabled => "user_disabled",
            DenyReason::EmailConflict => "email_conflict",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// First login: a new user with this profile and these grants.
    Create {
        profile: Profile,
        grants: Vec<Grant>,
    },
    /// Known identity: `profile` is Some when it changed and the connection re-syncs; `idp_roles`
    /// is the complete new set of IdP-sourced grants when the connection re-syncs.
    Login {
        profile: Option<Profile>,
        idp_roles: Option<Vec<Grant>>,
    },
    Deny(DenyReason),
}

/// Maps asserted attributes to a profile with the connection's attribute names.
pub fn map_profile(names: &AttributeNames, up: &Upstream) -> Profile {
    let email = first_value(&names.email, up)
        .or_else(|| looks_like_email(&up.subject).then(|| up.subject.clone()))
        .map(|e| e.trim().to_lowercase());
    let mut groups: Vec<String> = Vec::new();
    for v in values(&names.groups, up) {
        // Some IdPs join several groups into one comma-separated value.
        for g in v.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            if !groups.iter().any(|x| x == g) {
                groups.push(g.to_string());
            }
        }
    }
    Profile {
        email,
        given_name: first_value(&names.given_name, up),
        family_name: first_value(&names.family_name, up),
        display_name: first_value(&names.display_name, up),
        groups,
    }
}

/// Every value of the first candidate name present. Exact Name/FriendlyName first, then
/// ASCII case-insensitive (IdPs differ on `Name` vs `name`). Values of repeated attributes with
/// the same name are merged (Keycloak sends one `Role` attribute per role).
fn values<'a>(candidates: &[String], up: &'a Upstream) -> Vec<&'a str> {
    let pick = |matches: &dyn Fn(&str) -> bool| -> Vec<&'a str> {
        up.attributes
            .iter()
            .filter(|a| matches(&a.name) || a.friendly_name.as_deref().is_some_and(matches))
            .flat_map(|a| a.values.iter().map(|v| v.trim()))
            .filter(|v| !v.is_empty())
            .collect()
    };
    for c in candidates {
        let exact = pick(&|n: &str| n == c);
        if !exact.is_empty() {
            return exact;
        }
        let folded = pick(&|n: &str| n.eq_ignore_ascii_case(c));
        if !folded.is_empty() {
            return folded;
        }
    }
    Vec::new()
}

fn first_value(candidates: &[String], up: &Upstream) -> Option<String> {
    values(candidates, up).first().map(|v| v.to_string())
}

fn looks_like_email(s: &str) -> bool {
    match s.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// Normalizes a `domains` entry: ASCII only (IDNs in their xn-- form), lowercase, optional
/// leading `*.` meaning "subdomains of".
pub fn normalize_domain_rule(rule: &str) -> Result<String, String> {
    let r = rule.trim().to_ascii_lowercase();
    let host = r.strip_prefix("*.").unwrap_or(&r);
    if host.is_empty() || !host.contains('.') {
        return Err("must be a domain such as example.com or *.example.com".into());
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        || host.starts_with('.')
        || host.ends_with('.')
        || host.contains("..")
    {
        return Err("must be an ASCII domain name (use the xn-- form for IDNs)".into());
    }
    Ok(r)
}

/// Whether the email's domain is allowed: exact (case-insensitive) match, or a true subdomain
/// of a `*.` rule. Non-ASCII domains never match, so look-alike characters cannot pass.
pub fn email_domain_allowed(email: &str, rules: &[String]) -> bool {
    if rules.is_empty() {
        return true;
    }
    let Some((_, domain)) = email.trim().rsplit_once('@') else {
        return false;
    };
    if domain.is_empty() || !domain.is_ascii() {
        return false;
    }
    let domain = domain.to_ascii_lowercase();
    rules.iter().any(|rule| match rule.strip_prefix("*.") {
        Some(parent) => domain.len() > parent.len() + 1 && domain.ends_with(&format!(".{parent}")),
        None => &domain == rule,
    })
}

/// IdP-sourced grants for these groups. A mapping key may end or start with `*`.
pub fn roles_from_groups(groups: &[String], mapping: &BTreeMap<String, Vec<String>>) -> Vec<Grant> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (pattern, roles) in mapping {
        let Some(group) = groups.iter().find(|g| group_matches(pattern, g)) else {
            continue;
        };
        for role in roles {
            out.entry(role.clone()).or_insert_with(|| group.clone());
        }
    }
    out.into_iter()
        .map(|(role, group)| Grant { role, source: RoleSource::Idp, detail: Some(group) })
        .collect()
}

fn group_matches(pattern: &str, group: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        group.starts_with(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        group.ends_with(suffix)
    } else {
        pattern == group
    }
}

/// The whole JIT decision. `email_owner` is the user id that already holds the asserted
/// email, if any (only looked at for a new identity).
pub fn decide(
    policy: &Policy,
    profile: &Profile,
    existing: Option<&Existing>,
    email_owner: Option<&str>,
) -> Decision {
    if !policy.domains.is_empty() {
        match &profile.email {
            None => return Decision::Deny(DenyReason::EmailMissing),
            Some(e) if !email_domain_allowed(e, &policy.domains) => {
                return Decision::Deny(DenyReason::DomainNotAllowed)
            }
            Some(_) => {}
        }
    }
    let idp_grants = roles_from_groups(&profile.groups, &policy.role_mapping);
    match existing {
        Some(user) if user.disabled => Decision::Deny(DenyReason::UserDisabled),
        Some(user) => {
            if !policy.update_on_login {
                return Decision::Login { profile: None, idp_roles: None };
            }
            let changed = (&user.profile != profile).then(|| profile.clone());
            let mut current = user.idp_roles.clone();
            current.sort();
            let roles_changed = current != idp_grants;
            Decision::Login { profile: changed, idp_roles: roles_changed.then_some(idp_grants) }
        }
        None => {
            if policy.mode == ProvisioningMode::Manual {
                return Decision::Deny(DenyReason::NotProvisioned);
            }
            // SECURITY: a new subject never takes over an account by email; linking by email
            // would let any IdP that can assert an address sign in as its owner.
            if email_owner.is_some() {
                return Decision::Deny(DenyReason::EmailConflict);
            }
            let mut grants: Vec<Grant> = policy
                .default_roles
                .iter()
                .map(|r| Grant { role: r.clone(), source: RoleSource::Default, detail: None })
                .collect();
            grants.extend(idp_grants);
            Decision::Create { profile: profile.clone(), grants }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(subject: &str, attrs: &[(&str, &[&str])]) -> Upstream {
        Upstream {
            subject: subject.into(),
            attributes: attrs
                .iter()
                .map(|(n, vs)| UpstreamAttribute {
                    name: n.to_string(),
                    friendly_name: None,
                    values: vs.iter().map(|v| v.to_string()).collect(),
                })
                .collect(),
        }
    }

    fn policy(domains: &[&str], mapping: &[(&str, &[&str])]) -> Policy {
        Policy::new(
            Vendor::Okta,
            &AttributeOverrides::default(),
            domains.iter().map(|d| normalize_domain_rule(d).unwrap()).collect(),
            vec!["user".into()],
            mapping.iter().map(|(g, r)| (g.to_string(), r.iter().map(|x| x.to_string()).collect())).collect(),
            true,
            ProvisioningMode::Jit,
        )
    }

    #[test]
    fn okta_preset_maps_profile() {
        let p = policy(&[], &[]);
        let prof = map_profile(
            &p.names,
            &up(
                "00u1",
                &[
                    ("email", &[" Ada@Example.com "]),
                    ("firstName", &["Ada"]),
                    ("lastName", &["Lovelace"]),
                    ("groups", &["Engineering", "Admins,Ops"]),
                ],
            ),
        );
        assert_eq!(prof.email.as_deref(), Some("ada@example.com"));
        assert_eq!(prof.given_name.as_deref(), Some("Ada"));
        assert_eq!(prof.family_name.as_deref(), Some("Lovelace"));
        assert_eq!(prof.groups, vec!["Engineering", "Admins", "Ops"]);
    }

    #[test]
    fn repeated_attributes_merge_and_names_fold_case() {
        let prof = map_profile(
            &preset(Vendor::Generic),
            &up("u1", &[("Role", &["a"]), ("Role", &["b", " "]), ("EMAIL", &["x@y.org"])]),
        );
        assert_eq!(prof.groups, vec!["a", "b"]);
        assert_eq!(prof.email.as_deref(), Some("x@y.org"));
    }

    #[test]
    fn email_falls_back_to_name_id() {
        let prof = map_profile(&preset(Vendor::Google), &up("bob@example.com", &[]));
        assert_eq!(prof.email.as_deref(), Some("bob@example.com"));
        let prof = map_profile(&preset(Vendor::Google), &up("opaque-id", &[]));
        assert_eq!(prof.email, None);
    }

    #[test]
    fn overrides_replace_preset() {
        let names = preset(Vendor::Okta)
            .with_overrides(&AttributeOverrides { email: Some("mail".into()), ..Default::default() });
        let prof = map_profile(&names, &up("x", &[("email", &["a@x.com"]), ("mail", &["b@x.com"])]));
        assert_eq!(prof.email.as_deref(), Some("b@x.com"));
    }

    #[test]
    fn domain_rules_are_exact() {
        let rules = vec![normalize_domain_rule("Example.com").unwrap()];
        assert!(email_domain_allowed("a@EXAMPLE.com", &rules));
        assert!(!email_domain_allowed("a@example.com.evil.org", &rules));
        assert!(!email_domain_allowed("a@sub.example.com", &rules));
        assert!(!email_domain_allowed("a@evilexample.com", &rules));
        assert!(!email_domain_allowed("a@exаmple.com", &rules)); // Cyrillic а
        assert!(!email_domain_allowed("a@", &rules));
        assert!(!email_domain_allowed("no-at-sign", &rules));
        let sub = vec![normalize_domain_rule("*.example.com").unwrap()];
        assert!(email_domain_allowed("a@eu.example.com", &sub));
        assert!(!email_domain_allowed("a@example.com", &sub));
        assert!(!email_domain_allowed("a@eu.example.com.evil.org", &sub));
        assert!(normalize_domain_rule("exаmple.com").is_err());
        assert!(normalize_domain_rule("com").is_err());
    }

    #[test]
    fn group_mapping_with_wildcards() {
        let mapping: BTreeMap<String, Vec<String>> = [
            ("Engineering".to_string(), vec!["engineer".to_string()]),
            ("app-*".to_string(), vec!["app-user".to_string()]),
            ("*-admins".to_string(), vec!["admin".to_string()]),
        ]
        .into_iter()
        .collect();
        let grants = roles_from_groups(&["app-x".into(), "it-admins".into()], &mapping);
        let roles: Vec<_> = grants.iter().map(|g| g.role.as_str()).collect();
        assert_eq!(roles, vec!["admin", "app-user"]);
        assert_eq!(grants[0].detail.as_deref(), Some("it-admins"));
        assert!(roles_from_groups(&["engineering".into()], &mapping).is_empty());
    }

    #[test]
    fn first_login_creates_with_default_and_group_roles() {
        let p = policy(&["example.com"], &[("Engineering", &["engineer"])]);
        let prof = Profile {
            email: Some("a@example.com".into()),
            groups: vec!["Engineering".into()],
            ..Default::default()
        };
        match decide(&p, &prof, None, None) {
            Decision::Create { grants, .. } => {
                let roles: Vec<_> = grants.iter().map(|g| (g.role.as_str(), g.source)).collect();
                assert_eq!(roles, vec![("user", RoleSource::Default), ("engineer", RoleSource::Idp)]);
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn refusals() {
        let p = policy(&["example.com"], &[]);
        let evil = Profile { email: Some("a@example.com.evil.org".into()), ..Default::default() };
        assert_eq!(decide(&p, &evil, None, None), Decision::Deny(DenyReason::DomainNotAllowed));
        assert_eq!(decide(&p, &Profile::default(), None, None), Decision::Deny(DenyReason::EmailMissing));
        let ok = Profile { email: Some("a@example.com".into()), ..Default::default() };
        assert_eq!(decide(&p, &ok, None, Some("u1")), Decision::Deny(DenyReason::EmailConflict));
        let disabled =
            Existing { user_id: "u1".into(), disabled: true, profile: ok.clone(), idp_roles: vec![] };
        assert_eq!(decide(&p, &ok, Some(&disabled), None), Decision::Deny(DenyReason::UserDisabled));
        let mut manual = p.clone();
        manual.mode = ProvisioningMode::Manual;
        assert_eq!(decide(&manual, &ok, None, None), Decision::Deny(DenyReason::NotProvisioned));
    }

    #[test]
    fn relogin_resyncs_roles_and_profile() {
        let p = policy(&[], &[("Engineering", &["engineer"]), ("Ops", &["ops"])]);
        let old = Profile {
            email: Some("a@x.com".into()),
            groups: vec!["Engineering".into()],
            ..Default::default()
        };
        let existing = Existing {
            user_id: "u1".into(),
            disabled: false,
            profile: old.clone(),
            idp_roles: roles_from_groups(&old.groups, &p.role_mapping),
        };
        assert_eq!(
            decide(&p, &old, Some(&existing), None),
            Decision::Login { profile: None, idp_roles: None }
        );
        let new = Profile { groups: vec!["Ops".into()], ..old.clone() };
        match decide(&p, &new, Some(&existing), None) {
            Decision::Login { profile: Some(_), idp_roles: Some(r) } => {
                assert_eq!(r.iter().map(|g| g.role.as_str()).collect::<Vec<_>>(), vec!["ops"]);
            }
            d => panic!("{d:?}"),
        }
    }
}
