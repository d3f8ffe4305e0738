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
    /// Link a new subject to an existing user with the same email (only for emails in
    /// `domains`). Off by default: see the SECURITY note in `decide`.
    pub link_by_email: bool,
    /// Patterns (exact, `prefix*`, `*suffix`) of groups passed through in the `groups` claim;
    /// empty passes all. Role mapping always sees every group.
    pub groups_filter: Vec<String>,
    /// Groups whose IdP cannot list them all (Entra's overage claim) are reported so roles are
    /// not silently dropped.
    pub vendor: Vendor,
    /// The login must prove MFA (AuthnContextClassRef in `mfa_contexts`, or the vendor's MFA
    /// claim).
    pub require_mfa: bool,
    pub mfa_contexts: Vec<String>,
    /// Domains other connections own. A connection without `domains` is not authoritative for
    /// addresses in them: such an email is stored unverified and neither links nor blocks.
    pub foreign_domains: Vec<String>,
}

impl Policy {
    /// The policy for a vendor with defaults; config fills in the rest.
    pub fn for_vendor(vendor: Vendor, overrides: &AttributeOverrides) -> Self {
        Policy {
            names: preset(vendor).with_overrides(overrides),
            domains: Vec::new(),
            default_roles: Vec::new(),
            role_mapping: BTreeMap::new(),
            update_on_login: true,
            mode: ProvisioningMode::Jit,
            link_by_email: false,
            groups_filter: Vec::new(),
            vendor,
            require_mfa: false,
            mfa_contexts: default_mfa_contexts(),
            foreign_domains: Vec::new(),
        }
    }
}

/// AuthnContextClassRef values that prove a second factor: the SAML 2.0 multi-factor classes,
/// the REFEDS MFA profile, and Microsoft's multipleauthn.
pub fn default_mfa_contexts() -> Vec<String> {
    [
        "https://refeds.org/profile/mfa",
        "http://schemas.microsoft.com/claims/multipleauthn",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorUnregistered",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:Smartcard",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:X509",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:MultiFactor",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
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
    /// The NameID as asserted.
    pub subject: String,
    pub name_id_format: Option<String>,
    pub authn_context: Option<String>,
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
    TransientNameId,
    SubjectMissing,
    MfaRequired,
}

impl DenyReason {
    pub const ALL: [DenyReason; 8] = [
        DenyReason::DomainNotAllowed,
        DenyReason::EmailMissing,
        DenyReason::NotProvisioned,
        DenyReason::UserDisabled,
        DenyReason::EmailConflict,
        DenyReason::TransientNameId,
        DenyReason::SubjectMissing,
        DenyReason::MfaRequired,
    ];

    /// Whether an audit reason code is one of these (the account, not the response, was refused).
    pub fn is_code(code: &str) -> bool {
        Self::ALL.iter().any(|r| r.code() == code)
    }

    pub fn code(self) -> &'static str {
        match self {
            DenyReason::DomainNotAllowed => "domain_not_allowed",
            DenyReason::EmailMissing => "email_missing",
            DenyReason::NotProvisioned => "not_provisioned",
            DenyReason::UserDisabled => "user_disabled",
            DenyReason::EmailConflict => "email_conflict",
            DenyReason::TransientNameId => "transient_name_id",
            DenyReason::SubjectMissing => "subject_missing",
            DenyReason::MfaRequired => "mfa_required",
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
    /// First login of this subject, linked to a pre-created (or email-matched) user.
    Link {
        user_id: String,
        profile: Profile,
        idp_roles: Option<Vec<Grant>>,
    },
    Deny(DenyReason),
}

/// Maps asserted attributes to a profile with the connection's attribute names.
pub fn map_profile(names: &AttributeNames, up: &Upstream) -> Profile {
    // An asserted value that is not a plain address is no email at all (so `domains` refuses
    // it), never a string a downstream app might misread.
    let email = first_value(&names.email, up)
        .or_else(|| Some(up.subject.clone()))
        // ASCII only: Unicode case folding maps look-alikes (the Kelvin sign) onto ASCII letters.
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| looks_like_email(e));
    let mut groups: Vec<String> = Vec::new();
    for v in values(&names.groups, up) {
        let parts: Vec<&str> = match &names.group_separator {
            Some(sep) => v.split(sep.as_str()).map(str::trim).collect(),
            None => vec![v],
        };
        for g in parts.into_iter().filter(|g| !g.is_empty()) {
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

pub fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"'))
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

pub fn group_matches(pattern: &str, group: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        group.starts_with(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        group.ends_with(suffix)
    } else {
        pattern == group
    }
}

/// What one login establishes beyond the profile: the anchor, every group (for roles), the
/// claim-visible groups, and how the user authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The immutable key of the federated identity on this connection.
    pub subject: String,
    /// The profile to store and put in tokens (groups filtered by `groups_filter`).
    pub profile: Profile,
    /// Every asserted group: role mapping sees all of them.
    pub all_groups: Vec<String>,
    /// The IdP said it could not list all groups (Entra's groups.link overage claim).
    pub groups_overage: bool,
    pub acr: Option<String>,
    /// RFC 8176 method references derived from the assertion.
    pub amr: Vec<String>,
    /// This connection may vouch for the email (its own domain, or a domain no other connection
    /// owns): only then is the address verified, unique, and a key for linking.
    pub email_authoritative: bool,
}

const MS_GROUPS_LINK: &str = "http://schemas.microsoft.com/claims/groups.link";
const MS_AUTHN_METHODS: &str = "http://schemas.microsoft.com/claims/authnmethodsreferences";
const NAMEID_TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";

/// Reads the anchor, the profile and the authentication facts from an assertion, or refuses.
pub fn assess(policy: &Policy, up: &Upstream) -> Result<Assessment, DenyReason> {
    let subject = match &policy.names.subject {
        // An immutable attribute (Entra's objectidentifier) survives renames and email changes.
        Some(attr) => values(std::slice::from_ref(attr), up)
            .first()
            .map(|v| v.to_string())
            .ok_or(DenyReason::SubjectMissing)?,
        None => {
            // A transient NameID changes every login: keyed on it, every login would be a new user.
            if up.name_id_format.as_deref().map(str::trim) == Some(NAMEID_TRANSIENT) {
                return Err(DenyReason::TransientNameId);
            }
            up.subject.trim().to_string()
        }
    };
    let mut profile = map_profile(&policy.names, up);
    let all_groups = profile.groups.clone();
    if !policy.groups_filter.is_empty() {
        profile.groups.retain(|g| policy.groups_filter.iter().any(|p| group_matches(p, g)));
    }
    let groups_overage = up.attributes.iter().any(|a| a.name == MS_GROUPS_LINK);
    let methods: Vec<&str> = up
        .authn_context
        .iter()
        .map(String::as_str)
        .chain(values(&[MS_AUTHN_METHODS.to_string()], up))
        .collect();
    let mfa = methods.iter().any(|m| policy.mfa_contexts.iter().any(|c| c == m));
    if policy.require_mfa && !mfa {
        return Err(DenyReason::MfaRequired);
    }
    let mut amr = Vec::new();
    if methods.iter().any(|m| m.contains("Password") || m.ends_with("/password")) {
        amr.push("pwd".to_string());
    }
    if mfa {
        amr.push("mfa".to_string());
    }
    let email_authoritative = match &profile.email {
        None => false,
        Some(e) if !policy.domains.is_empty() => email_domain_allowed(e, &policy.domains),
        Some(e) => policy.foreign_domains.is_empty() || !email_domain_allowed(e, &policy.foreign_domains),
    };
    Ok(Assessment {
        subject,
        profile,
        all_groups,
        groups_overage,
        acr: up.authn_context.clone(),
        amr,
        email_authoritative,
    })
}

/// Who already holds the asserted email (looked up for a new subject, or when a known user's
/// email changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailOwner {
    pub user_id: String,
    /// The holder is a pre-created account (no identity yet) rather than a verified one.
    pub pre_created: bool,
    /// The owner already has an identity on this connection (then this is another person, or
    /// a re-keyed account: never link).
    pub linked_here: bool,
}

/// The whole JIT decision.
pub fn decide(
    policy: &Policy,
    a: &Assessment,
    existing: Option<&Existing>,
    email_owner: Option<&EmailOwner>,
) -> Decision {
    let profile = &a.profile;
    if !policy.domains.is_empty() {
        match &profile.email {
            None => return Decision::Deny(DenyReason::EmailMissing),
            Some(e) if !email_domain_allowed(e, &policy.domains) => {
                return Decision::Deny(DenyReason::DomainNotAllowed)
            }
            Some(_) => {}
        }
    }
    let idp_grants = roles_from_groups(&a.all_groups, &policy.role_mapping);
    match existing {
        Some(user) if user.disabled => Decision::Deny(DenyReason::UserDisabled),
        Some(user) => {
            if !policy.update_on_login {
                return Decision::Login { profile: None, idp_roles: None };
            }
            // A changed address that another account holds: taking it over would give this
            // user that account's verified email in every token.
            if email_owner.is_some_and(|o| o.user_id != user.user_id) {
                return Decision::Deny(DenyReason::EmailConflict);
            }
            let changed = (&user.profile != profile).then(|| profile.clone());
            // With an incomplete group list, recomputing would revoke roles the user still has.
            if a.groups_overage {
                return Decision::Login { profile: changed, idp_roles: None };
            }
            let mut current = user.idp_roles.clone();
            current.sort();
            let roles_changed = current != idp_grants;
            Decision::Login { profile: changed, idp_roles: roles_changed.then_some(idp_grants) }
        }
        None => {
            if let Some(owner) = email_owner {
                // SECURITY: linking a new subject to an account by email lets whoever can make
                // this IdP assert that address sign in as the account's owner. It happens only
                // when the admin asked for it (manual mode or link_by_email), only for an email
                // in a domain this connection owns, and never onto an account that already has
                // an identity here.
                let owns_domain = !policy.domains.is_empty()
                    && profile.email.as_deref().is_some_and(|e| email_domain_allowed(e, &policy.domains));
                let may_link = policy.mode == ProvisioningMode::Manual || policy.link_by_email;
                if may_link && owns_domain && !owner.linked_here {
                    return Decision::Link {
                        user_id: owner.user_id.clone(),
                        profile: profile.clone(),
                        idp_roles: if a.groups_overage { None } else { Some(idp_grants) },
                    };
                }
                return Decision::Deny(DenyReason::EmailConflict);
            }
            if policy.mode == ProvisioningMode::Manual {
                return Decision::Deny(DenyReason::NotProvisioned);
            }
            // A role listed twice in `default_roles` is one grant (a second would be a
            // duplicate row, and the login would fail on it).
            let mut grants: Vec<Grant> = Vec::new();
            for r in &policy.default_roles {
                if !grants.iter().any(|g| &g.role == r) {
                    grants.push(Grant { role: r.clone(), source: RoleSource::Default, detail: None });
                }
            }
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
            name_id_format: None,
            authn_context: None,
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
        Policy {
            domains: domains.iter().map(|d| normalize_domain_rule(d).unwrap()).collect(),
            default_roles: vec!["user".into()],
            role_mapping: mapping
                .iter()
                .map(|(g, r)| (g.to_string(), r.iter().map(|x| x.to_string()).collect()))
                .collect(),
            ..Policy::for_vendor(Vendor::Okta, &AttributeOverrides::default())
        }
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
                    ("groups", &["Engineering", "Party Planning, Admins"]),
                ],
            ),
        );
        assert_eq!(prof.email.as_deref(), Some("ada@example.com"));
        assert_eq!(prof.given_name.as_deref(), Some("Ada"));
        assert_eq!(prof.family_name.as_deref(), Some("Lovelace"));
        // A comma inside a group name is part of the name unless the connection says otherwise.
        assert_eq!(prof.groups, vec!["Engineering", "Party Planning, Admins"]);
        let joined = AttributeNames { group_separator: Some(",".into()), ..p.names.clone() };
        let prof = map_profile(&joined, &up("00u1", &[("groups", &["Engineering,Ops"])]));
        assert_eq!(prof.groups, vec!["Engineering", "Ops"]);
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
    fn malformed_emails_are_no_email() {
        for bad in ["x@evil.com@b.example", "a b@x.com", "a@x", "@x.com", "a@.x.com", "a@x.com.", "<a@x.com>"]
        {
            let prof = map_profile(&preset(Vendor::Okta), &up("n", &[("email", &[bad])]));
            assert_eq!(prof.email, None, "{bad}");
        }
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

    /// An assessment as `assess` would make it for this profile.
    fn seen(p: &Profile) -> Assessment {
        Assessment {
            subject: "s1".into(),
            profile: p.clone(),
            all_groups: p.groups.clone(),
            groups_overage: false,
            acr: None,
            amr: vec![],
            email_authoritative: true,
        }
    }

    fn owner(linked_here: bool) -> EmailOwner {
        EmailOwner { user_id: "u1".into(), pre_created: false, linked_here }
    }

    #[test]
    fn first_login_creates_with_default_and_group_roles() {
        let p = policy(&["example.com"], &[("Engineering", &["engineer"])]);
        let prof = Profile {
            email: Some("a@example.com".into()),
            groups: vec!["Engineering".into()],
            ..Default::default()
        };
        match decide(&p, &seen(&prof), None, None) {
            Decision::Create { grants, .. } => {
                let roles: Vec<_> = grants.iter().map(|g| (g.role.as_str(), g.source)).collect();
                assert_eq!(roles, vec![("user", RoleSource::Default), ("engineer", RoleSource::Idp)]);
            }
            d => panic!("{d:?}"),
        }
        // The same role listed twice, or also coming from a group, is granted once per source.
        let p = Policy { default_roles: vec!["user".into(), "engineer".into(), "user".into()], ..p };
        match decide(&p, &seen(&prof), None, None) {
            Decision::Create { grants, .. } => {
                let roles: Vec<_> = grants.iter().map(|g| (g.role.as_str(), g.source)).collect();
                assert_eq!(
                    roles,
                    vec![
                        ("user", RoleSource::Default),
                        ("engineer", RoleSource::Default),
                        ("engineer", RoleSource::Idp)
                    ]
                );
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn refusals() {
        let p = policy(&["example.com"], &[]);
        let evil = Profile { email: Some("a@example.com.evil.org".into()), ..Default::default() };
        assert_eq!(decide(&p, &seen(&evil), None, None), Decision::Deny(DenyReason::DomainNotAllowed));
        assert_eq!(
            decide(&p, &seen(&Profile::default()), None, None),
            Decision::Deny(DenyReason::EmailMissing)
        );
        let ok = Profile { email: Some("a@example.com".into()), ..Default::default() };
        assert_eq!(
            decide(&p, &seen(&ok), None, Some(&owner(false))),
            Decision::Deny(DenyReason::EmailConflict)
        );
        let disabled =
            Existing { user_id: "u1".into(), disabled: true, profile: ok.clone(), idp_roles: vec![] };
        assert_eq!(decide(&p, &seen(&ok), Some(&disabled), None), Decision::Deny(DenyReason::UserDisabled));
        let mut manual = p.clone();
        manual.mode = ProvisioningMode::Manual;
        assert_eq!(decide(&manual, &seen(&ok), None, None), Decision::Deny(DenyReason::NotProvisioned));
    }

    #[test]
    fn linking_by_email_only_when_asked_and_only_for_owned_domains() {
        let ok = Profile { email: Some("a@example.com".into()), ..Default::default() };
        let mut p = policy(&["example.com"], &[]);
        p.link_by_email = true;
        assert!(matches!(decide(&p, &seen(&ok), None, Some(&owner(false))), Decision::Link { .. }));
        // Never onto an account that already has an identity on this connection.
        assert_eq!(
            decide(&p, &seen(&ok), None, Some(&owner(true))),
            Decision::Deny(DenyReason::EmailConflict)
        );
        // Never for a connection that owns no domains.
        let mut open = policy(&[], &[]);
        open.link_by_email = true;
        assert_eq!(
            decide(&open, &seen(&ok), None, Some(&owner(false))),
            Decision::Deny(DenyReason::EmailConflict)
        );
        // Manual mode links pre-created users the same way.
        let mut manual = policy(&["example.com"], &[]);
        manual.mode = ProvisioningMode::Manual;
        assert!(matches!(decide(&manual, &seen(&ok), None, Some(&owner(false))), Decision::Link { .. }));
    }

    #[test]
    fn anchor_transient_and_mfa() {
        let mut p = policy(&[], &[]);
        let mut u = up("n1", &[("oid", &["0000-1111"])]);
        u.name_id_format = Some(NAMEID_TRANSIENT.into());
        assert_eq!(assess(&p, &u), Err(DenyReason::TransientNameId));
        p.names.subject = Some("oid".into());
        assert_eq!(assess(&p, &u).map(|a| a.subject), Ok("0000-1111".to_string()));
        assert_eq!(assess(&p, &up("n1", &[])), Err(DenyReason::SubjectMissing));
        p.names.subject = None;
        p.require_mfa = true;
        let mut pwd = up("n1", &[]);
        pwd.authn_context = Some("urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport".into());
        assert_eq!(assess(&p, &pwd), Err(DenyReason::MfaRequired));
        let entra = up(
            "n1",
            &[(
                MS_AUTHN_METHODS,
                &[
                    "http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password",
                    "http://schemas.microsoft.com/claims/multipleauthn",
                ],
            )],
        );
        let a = assess(&p, &entra).unwrap();
        assert_eq!(a.amr, vec!["pwd", "mfa"]);
    }

    #[test]
    fn groups_filter_and_overage() {
        let mut p = policy(&[], &[("Engineering", &["engineer"])]);
        p.groups_filter = vec!["app-*".into()];
        let a = assess(
            &p,
            &up("n1", &[("groups", &["Engineering", "app-x"]), (MS_GROUPS_LINK, &["https://graph"])]),
        )
        .unwrap();
        assert_eq!(a.profile.groups, vec!["app-x"], "the claim carries only filtered groups");
        assert_eq!(a.all_groups, vec!["Engineering", "app-x"], "roles still see every group");
        assert!(a.groups_overage);
        let existing = Existing {
            user_id: "u1".into(),
            disabled: false,
            profile: a.profile.clone(),
            idp_roles: vec![Grant {
                role: "admin".into(),
                source: RoleSource::Idp,
                detail: Some("IT".into()),
            }],
        };
        // Overage: the IdP-sourced roles are kept, not recomputed from a partial list.
        assert_eq!(decide(&p, &a, Some(&existing), None), Decision::Login { profile: None, idp_roles: None });
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
            decide(&p, &seen(&old), Some(&existing), None),
            Decision::Login { profile: None, idp_roles: None }
        );
        let new = Profile { groups: vec!["Ops".into()], ..old.clone() };
        match decide(&p, &seen(&new), Some(&existing), None) {
            Decision::Login { profile: Some(_), idp_roles: Some(r) } => {
                assert_eq!(r.iter().map(|g| g.role.as_str()).collect::<Vec<_>>(), vec!["ops"]);
            }
            d => panic!("{d:?}"),
        }
    }
}
