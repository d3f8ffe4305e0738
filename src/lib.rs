//! ssobroker: a SAML 2.0 → OpenID Connect broker with just-in-time provisioning.

pub mod admin;
pub mod admin_cli;
pub mod cli;
pub mod client_cli;
pub mod clock;
pub mod config;
pub mod connection_cli;
pub mod console;
pub mod devidp;
pub mod explain;
pub mod flow;
pub mod keys_cli;
pub mod oidc;
pub mod ops;
pub mod provisioning;
pub mod saml;
pub mod store;
pub mod web;
