//! The one integration test binary: real HTTP on 127.0.0.1:0, real databases, real signatures.

mod support;

mod acs_refusals;
mod admin_cli;
mod admin_ui;
mod architecture;
mod browser;
mod clients_cli;
mod config_cli;
mod demo;
mod e2e;
mod housekeeping;
mod idp_initiated;
mod interop;
mod interop_authlib;
mod interop_pysaml2;
mod interop_pysaml2_slo;
mod jit;
mod keys;
mod migrations;
mod multi_instance;
mod oidc_lifecycle;
mod oidc_refusals;
mod ops;
mod saml_attacks;
mod saml_encryption;
mod saml_requests;
mod saml_vendors;
mod slo;
mod slo_attacks;
mod trust;
