//! Just-in-time provisioning policy: an upstream identity plus a connection's policy becomes an
//! account decision. Pure: no HTTP, no SQL; the login flow applies the decision in one transaction.

mod attributes;
mod policy;

pub use attributes::{preset, AttributeNames, AttributeOverrides, Vendor};
pub use policy::{
    assess, decide, default_mfa_contexts, email_domain_allowed, group_matches, looks_like_email, map_profile,
    normalize_domain_rule, roles_from_groups, Assessment, Decision, DenyReason, EmailOwner, Existing, Grant,
    Policy, Profile, ProvisioningMode, RoleSource, Upstream, UpstreamAttribute,
};
