//! OpenID Connect provider logic: signing keys and JWKS, discovery, authorize decisions, token
//! minting and verification, PKCE, client authentication. No HTTP, no SQL.

pub mod authorize;
pub mod discovery;
pub mod keys;
pub mod logout;
pub mod pkce;
pub mod secrets;
pub mod token;

pub use authorize::{
    authorize_error_redirect, code_redirect, validate_authorize, AuthorizeError, AuthorizeParams,
    ValidAuthorize,
};
pub use discovery::discovery_json;
pub use keys::{generate_rsa_key, AccessTokenClaims, BrokerClaims, KeySet, StoredKey};
pub use pkce::{valid_challenge, verify_s256};
pub use secrets::{
    generate_client_secret, hash_client_secret, is_token, random_token, secret_check_is_slow, token_hash,
    valid_secret_hash, verify_client_secret, Secret,
};
pub use token::{
    authenticate_client, check_code_grant, code_from_params, decode_basic_auth, presented_client_id,
    StoredGrant, TokenParams,
};

use chrono::{DateTime, Utc};

/// Scopes the broker understands; anything else in a request is dropped from the grant
/// (RFC 6749 §3.3 lets the server grant less than asked). Also published in discovery.
pub const SUPPORTED_SCOPES: &[&str] = &["openid", "email", "profile", "offline_access", "roles", "groups"];

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// A protocol error with its RFC 6749 / OIDC code, safe to show to the client.
    #[error("{code}: {description}")]
    Protocol { code: &'static str, description: String },
    #[error("key error: {0}")]
    Key(String),
    /// Something that cannot happen with valid configuration (a serializer failing, an issuer
    /// that is not a URL). Internal: becomes a 500 with a reference id, never shown as is.
    #[error("internal error: {0}")]
    Internal(String),
}

impl OidcError {
    pub(crate) fn protocol(code: &'static str, description: impl Into<String>) -> Self {
        OidcError::Protocol { code, description: description.into() }
    }

    /// The RFC 6749 / RFC 6750 error code to send; `server_error` for internal failures.
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::Protocol { code, .. } => code,
            OidcError::Key(_) | OidcError::Internal(_) => "server_error",
        }
    }
}

/// A registered client as the provider sees it.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    /// argon2 PHC string of the secret; None for a public client (PKCE S256 required).
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub allowed_roles: Vec<String>,
    /// Issue refresh tokens even without the `offline_access` scope.
    pub issue_refresh_token: bool,
    /// Where the user portal opens the app (absolute http(s) URL); None: not in the portal.
    pub launch_url: Option<String>,
}

impl Client {
    /// Client access by role: with `allowed_roles`, only users holding one of them get tokens.
    pub fn admits(&self, roles: &[String]) -> bool {
        self.allowed_roles.is_empty() || self.allowed_roles.iter().any(|r| roles.contains(r))
    }

    /// A public client has no secret: it proves possession of the code with PKCE only.
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }
}

/// Claims the broker puts in ID tokens and returns from /userinfo. Absent values are left out
/// rather than sent as null.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct UserClaims {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Present exactly when `email` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
}

impl UserClaims {
    /// Only what the granted scopes cover (OIDC Core §5.4): `email` → email and
    /// email_verified, `profile` → names. `sub`, roles and groups are always there: they are
    /// what every downstream app of the broker authorizes on.
    pub fn scoped(mut self, scope: &str) -> Self {
        let has = |s: &str| scope.split(' ').any(|x| x == s);
        if !has("email") {
            self.email = None;
            self.email_verified = None;
        }
        if !has("profile") {
            self.name = None;
            self.given_name = None;
            self.family_name = None;
        }
        self
    }
}

/// Input for one ID token.
#[derive(Debug, Clone)]
pub struct IdTokenInput<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub user: &'a UserClaims,
    pub nonce: Option<&'a str>,
    pub auth_time: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The IdP's AuthnContextClassRef, so apps can demand step-up.
    pub acr: Option<&'a str>,
    /// RFC 8176 method references (`pwd`, `mfa`).
    pub amr: &'a [String],
    /// The broker session the token belongs to (see `BrokerClaims::sid`).
    pub sid: Option<&'a str>,
}
