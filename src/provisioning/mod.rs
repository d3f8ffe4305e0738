//! Just-in-time provisioning policy: an upstream identity plus a connection's policy becomes an
//! account decision. Pure: no HTTP, no SQL; the login flow applies the decision in one transaction.

mod attributes;
mod policy;

pub use attributes::{preset, AttributeNames, AttributeOverrides, Vendor};
pub use policy::{
    decide, email_domain_allowed, map_profile, normalize_domain_rule, roles_from_groups, Decision,
    DenyReason, Existing, Grant, Policy, Profile, ProvisioningMode, RoleSource, Upstream, UpstreamAttribute,
};
