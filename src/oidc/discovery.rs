//! OpenID Provider discovery document (`/.well-known/openid-configuration`).

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthUrl, IssuerUrl, JsonWebKeySetUrl, ProviderMetadata, ResponseTypes, Scope,
    TokenUrl, UserInfoUrl,
};
use serde::{Deserialize, Serialize};

use super::{OidcError, SUPPORTED_SCOPES};

/// Claims that can appear in an ID token or the userinfo response.
pub const CLAIMS_SUPPORTED: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "c_hash",
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
    "roles",
    "groups",
    "acr",
    "amr",
    "sid",
];

/// Metadata openidconnect's `ProviderMetadata` has no field for; serde-flattened into it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct BrokerProviderMetadata {
    /// RFC 8414: S256 only.
    pub code_challenge_methods_supported: Vec<String>,
    /// RFC 9207: every authorization response carries `iss`, which lets a client that talks to
    /// several providers detect a mix-up attack.
    pub authorization_response_iss_parameter_supported: bool,
    /// RP-initiated logout 1.0.
    pub end_session_endpoint: String,
    /// RFC 7009 / RFC 8414.
    pub revocation_endpoint: String,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// RFC 7662 / RFC 8414 (confidential clients only).
    pub introspection_endpoint: String,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
}
impl AdditionalProviderMetadata for BrokerProviderMetadata {}

pub type BrokerProviderMetadataDocument = ProviderMetadata<
    BrokerProviderMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The discovery document for `issuer`. The `issuer` member is exactly the string given (an RP
/// compares it byte for byte with the `iss` of every token); endpoint URLs are built on it
/// without doubling a trailing slash. Fails only when `issuer` is not an absolute URL, which
/// config validation already refuses at start-up.
pub fn discovery_json(issuer: &str) -> Result<String, OidcError> {
    let base = issuer.trim_end_matches('/');
    let bad = |e: url::ParseError| OidcError::Internal(format!("issuer is not a URL: {e}"));
    // IssuerUrl keeps the original string for serialization (no normalization), unlike `Url`.
    let issuer_url = IssuerUrl::new(issuer.to_owned()).map_err(bad)?;
    let metadata = BrokerProviderMetadataDocument::new(
        issuer_url,
        AuthUrl::new(format!("{base}/authorize")).map_err(bad)?,
        JsonWebKeySetUrl::new(format!("{base}/jwks")).map_err(bad)?,
        vec![ResponseTypes::new(vec![CoreResponseType::Code])],
        vec![CoreSubjectIdentifierType::Public],
        vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
        BrokerProviderMetadata {
            code_challenge_methods_supported: vec!["S256".to_owned()],
            authorization_response_iss_parameter_supported: true,
            end_session_endpoint: format!("{base}/logout"),
            revocation_endpoint: format!("{base}/revoke"),
            revocation_endpoint_auth_methods_supported: vec![
                "client_secret_basic".to_owned(),
                "client_secret_post".to_owned(),
                "none".to_owned(),
            ],
            introspection_endpoint: format!("{base}/introspect"),
            introspection_endpoint_auth_methods_supported: vec![
                "client_secret_basic".to_owned(),
                "client_secret_post".to_owned(),
            ],
        },
    )
    .set_token_endpoint(Some(TokenUrl::new(format!("{base}/token")).map_err(bad)?))
    .set_userinfo_endpoint(Some(UserInfoUrl::new(format!("{base}/userinfo")).map_err(bad)?))
    .set_scopes_supported(Some(SUPPORTED_SCOPES.iter().map(|s| Scope::new((*s).to_owned())).collect()))
    .set_claims_supported(Some(
        CLAIMS_SUPPORTED.iter().map(|c| CoreClaimName::new((*c).to_owned())).collect(),
    ))
    .set_grant_types_supported(Some(vec![CoreGrantType::AuthorizationCode, CoreGrantType::RefreshToken]))
    .set_token_endpoint_auth_methods_supported(Some(vec![
        CoreClientAuthMethod::ClientSecretBasic,
        CoreClientAuthMethod::ClientSecretPost,
        CoreClientAuthMethod::None,
    ]))
    .set_response_modes_supported(Some(vec![CoreResponseMode::Query]))
    // Request objects are not implemented. `request_uri_parameter_supported` defaults to *true*
    // in OIDC Discovery §3, so it must be said explicitly.
    .set_request_parameter_supported(Some(false))
    .set_request_uri_parameter_supported(Some(false))
    .set_claims_parameter_supported(Some(false));
    serde_json::to_string(&metadata).map_err(|e| OidcError::Internal(format!("discovery: {e}")))
}

// Tests may panic on a broken fixture; the deny is for production paths.
#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn doc(issuer: &str) -> Value {
        serde_json::from_str(&discovery_json(issuer).expect("discovery")).expect("json")
    }

    #[test]
    fn document_fields() {
        let d = doc("https://sso.example.com");
        assert_eq!(d["issuer"], "https://sso.example.com");
        assert_eq!(d["authorization_endpoint"], "https://sso.example.com/authorize");
        assert_eq!(d["token_endpoint"], "https://sso.example.com/token");
        assert_eq!(d["userinfo_endpoint"], "https://sso.example.com/userinfo");
        assert_eq!(d["jwks_uri"], "https://sso.example.com/jwks");
        assert_eq!(d["response_types_supported"], json!(["code"]));
        assert_eq!(d["subject_types_supported"], json!(["public"]));
        assert_eq!(d["id_token_signing_alg_values_supported"], json!(["RS256"]));
        assert_eq!(
            d["scopes_supported"],
            json!(["openid", "email", "profile", "offline_access", "roles", "groups"])
        );
        assert_eq!(d["grant_types_supported"], json!(["authorization_code", "refresh_token"]));
        assert_eq!(d["end_session_endpoint"], "https://sso.example.com/logout");
        assert_eq!(d["revocation_endpoint"], "https://sso.example.com/revoke");
        assert_eq!(d["introspection_endpoint"], "https://sso.example.com/introspect");
        assert_eq!(
            d["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post", "none"])
        );
        assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(d["response_modes_supported"], json!(["query"]));
        assert_eq!(d["authorization_response_iss_parameter_supported"], json!(true));
        assert_eq!(d["request_uri_parameter_supported"], json!(false));
        let claims = d["claims_supported"].as_array().expect("claims");
        for c in ["sub", "email", "roles", "groups", "at_hash", "c_hash", "nonce", "acr", "amr", "sid"] {
            assert!(claims.contains(&json!(c)), "{c}");
        }
        // No private or empty JWKS inlined.
        assert!(d.get("jwks").is_none());
    }

    #[test]
    fn issuer_kept_exactly() {
        let d = doc("http://127.0.0.1:8080");
        assert_eq!(d["issuer"], "http://127.0.0.1:8080", "no trailing slash added");
        assert_eq!(d["token_endpoint"], "http://127.0.0.1:8080/token");
        let d = doc("https://sso.example.com/tenant/");
        assert_eq!(d["issuer"], "https://sso.example.com/tenant/");
        assert_eq!(d["authorization_endpoint"], "https://sso.example.com/tenant/authorize");
    }

    #[test]
    fn invalid_issuer_is_an_error() {
        assert!(discovery_json("not a url").is_err());
    }

    #[test]
    fn openidconnect_rp_parses_it() {
        let json = discovery_json("https://sso.example.com").expect("discovery");
        let core: openidconnect::core::CoreProviderMetadata =
            serde_json::from_str(&json).expect("core metadata");
        assert_eq!(core.issuer().as_str(), "https://sso.example.com");
        let ours: BrokerProviderMetadataDocument = serde_json::from_str(&json).expect("ours");
        assert_eq!(ours.additional_metadata().code_challenge_methods_supported, vec!["S256"]);
    }
}
