//! Signing keys: generation, the published JWKS, ID tokens (openidconnect) and JWT access tokens
//! (jsonwebtoken, RFC 9068 profile), all RS256 and all with a `kid` header.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AccessToken, AdditionalClaims, Audience, AuthenticationContextClass, AuthenticationMethodReference,
    AuthorizationCode, EndUserEmail, EndUserFamilyName, EndUserGivenName, EndUserName, IdToken,
    IdTokenClaims, IssuerUrl, Nonce, PrivateSigningKey, SigningError, StandardClaims, SubjectIdentifier,
};
use openssl::bn::BigNumRef;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{IdTokenInput, OidcError};

/// The only algorithm the broker signs with; stored per key so a later key type is a new row,
/// never a reinterpretation of an old one.
pub const RS256: &str = "RS256";
const RSA_BITS: u32 = 2048;
/// RFC 9068 §2.1: the `typ` that tells an access token apart from an ID token, so one can never
/// be replayed as the other.
const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// A signing key as the store keeps it.
#[derive(Clone)]
pub struct StoredKey {
    pub kid: String,
    /// Always "RS256" for keys made here; `KeySet::from_stored` refuses anything else.
    pub alg: String,
    /// PKCS#1 PEM ("BEGIN RSA PRIVATE KEY").
    pub private_pem: String,
}

// The private key must never reach a log line through `{:?}`.
impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_pem", &"<redacted>")
            .finish()
    }
}

/// A fresh 2048-bit RSA key; its kid is the RFC 7638 JWK thumbprint, so it is stable,
/// unique per key and carries no information beyond the public key.
pub fn generate_rsa_key() -> Result<StoredKey, OidcError> {
    let rsa = Rsa::generate(RSA_BITS).map_err(key_err)?;
    let kid = jwk_thumbprint(rsa.n(), rsa.e());
    let pem = rsa.private_key_to_pem().map_err(key_err)?;
    let private_pem = String::from_utf8(pem).map_err(|_| OidcError::Key("PEM is not UTF-8".into()))?;
    Ok(StoredKey { kid, alg: RS256.to_owned(), private_pem })
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
fn jwk_thumbprint(n: &BigNumRef, e: &BigNumRef) -> String {
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(e.to_vec()),
        URL_SAFE_NO_PAD.encode(n.to_vec())
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn key_err(e: impl fmt::Display) -> OidcError {
    OidcError::Key(e.to_string())
}

/// Extra ID token claims. Always serialized, empty or not, so apps can rely on the arrays
/// existing; `default` so tokens from before a claim existed still parse.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrokerClaims {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}
impl AdditionalClaims for BrokerClaims {}

/// The broker's ID token type: core types plus `roles` and `groups`.
pub type BrokerIdToken =
    IdToken<BrokerClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;
pub type BrokerIdTokenClaims = IdTokenClaims<BrokerClaims, CoreGenderClaim>;

/// JWT access token claims (RFC 9068 §2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    /// The client the token was issued to.
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    #[serde(with = "chrono::serde::ts_seconds")]
    pub exp: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_seconds")]
    pub iat: DateTime<Utc>,
    pub jti: String,
    /// Id of the authorization grant (code row): revoking the grant revokes every token minted
    /// from it, which is how a replayed code takes back what it issued.
    pub grant_id: String,
}

/// RSA signing through OpenSSL. openidconnect's own RSA key uses the pure-Rust `rsa` crate,
/// which is slower and subject to the Marvin timing advisory; this adapter keeps the
/// openidconnect token model while OpenSSL does the private-key operation.
struct OpensslRsaKey {
    pkey: PKey<Private>,
    /// Built once: openidconnect asks for the verification key several times per token.
    jwk: CoreJsonWebKey,
}

impl PrivateSigningKey for OpensslRsaKey {
    type VerificationKey = CoreJsonWebKey;

    fn sign(&self, signature_alg: &CoreJwsSigningAlgorithm, message: &[u8]) -> Result<Vec<u8>, SigningError> {
        // `alg` is fixed per key: asked for anything but RS256, refuse rather than comply.
        if *signature_alg != CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256 {
            return Err(SigningError::UnsupportedAlg(format!("{signature_alg:?}")));
        }
        // OpenSSL's default RSA padding for a Signer is PKCS#1 v1.5, i.e. RS256.
        let mut signer =
            Signer::new(MessageDigest::sha256(), &self.pkey).map_err(|_| SigningError::CryptoError)?;
        signer.update(message).map_err(|_| SigningError::CryptoError)?;
        signer.sign_to_vec().map_err(|_| SigningError::CryptoError)
    }

    fn as_verification_key(&self) -> CoreJsonWebKey {
        self.jwk.clone()
    }
}

/// One parsed key, ready to sign and verify: PEM parsing happens once, at load.
struct LoadedKey {
    kid: String,
    signer: OpensslRsaKey,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// The broker's keys. The first is the current signing key; the rest are only published in the
/// JWKS (and accepted for access tokens) so tokens signed before a rotation still verify.
pub struct KeySet {
    /// Signs everything new.
    current: LoadedKey,
    /// Published and accepted, never used to sign.
    previous: Vec<LoadedKey>,
    /// Serialized once at load: the document is static until the next rotation.
    jwks_json: String,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.all().map(|k| k.kid.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

impl KeySet {
    pub fn from_stored(stored: Vec<StoredKey>) -> Result<KeySet, OidcError> {
        let mut keys: Vec<LoadedKey> = Vec::with_capacity(stored.len());
        for s in stored {
            if s.alg != RS256 {
                return Err(OidcError::Key(format!("key {}: unsupported alg {}", s.kid, s.alg)));
            }
            if s.kid.is_empty() || keys.iter().any(|k| k.kid == s.kid) {
                return Err(OidcError::Key(format!("key id {:?} empty or duplicated", s.kid)));
            }
            keys.push(load_key(s)?);
        }
        let jwks = CoreJsonWebKeySet::new(keys.iter().map(|k| k.signer.jwk.clone()).collect());
        let jwks_json = serde_json::to_string(&jwks).map_err(key_err)?;
        let mut keys = keys.into_iter();
        let current = keys.next().ok_or_else(|| OidcError::Key("no signing key".into()))?;
        Ok(KeySet { current, previous: keys.collect(), jwks_json })
    }

    fn all(&self) -> impl Iterator<Item = &LoadedKey> {
        std::iter::once(&self.current).chain(self.previous.iter())
    }

    /// The JWKS document served at `/jwks`.
    pub fn jwks_json(&self) -> String {
        self.jwks_json.clone()
    }

    /// The same set as a typed value (for an in-process relying party, e.g. tests).
    pub fn jwks(&self) -> CoreJsonWebKeySet {
        CoreJsonWebKeySet::new(self.all().map(|k| k.signer.jwk.clone()).collect())
    }

    /// Kid of the key new tokens are signed with.
    pub fn current_kid(&self) -> &str {
        self.current().kid.as_str()
    }

    fn current(&self) -> &LoadedKey {
        &self.current
    }

    /// An ID token for `input`, with `at_hash` over `access_token` and `c_hash` over `code` when
    /// the token is returned alongside a code.
    pub fn sign_id_token(
        &self,
        input: &IdTokenInput,
        access_token: &str,
        code: Option<&str>,
    ) -> Result<String, OidcError> {
        let issuer = IssuerUrl::new(input.issuer.to_owned())
            .map_err(|e| OidcError::Internal(format!("issuer is not a URL: {e}")))?;
        let user = input.user;
        let standard = StandardClaims::new(SubjectIdentifier::new(user.sub.clone()))
            .set_email(user.email.clone().map(EndUserEmail::new))
            // Only meaningful next to an address; absent when there is no email claim.
            .set_email_verified(user.email.as_ref().and(user.email_verified))
            .set_name(user.name.clone().map(|v| EndUserName::new(v).into()))
            .set_given_name(user.given_name.clone().map(|v| EndUserGivenName::new(v).into()))
            .set_family_name(user.family_name.clone().map(|v| EndUserFamilyName::new(v).into()));
        let extra = BrokerClaims { roles: user.roles.clone(), groups: user.groups.clone() };
        let claims = BrokerIdTokenClaims::new(
            issuer,
            vec![Audience::new(input.client_id.to_owned())],
            input.expires_at,
            input.issued_at,
            standard,
            extra,
        )
        .set_auth_time(Some(input.auth_time))
        .set_nonce(input.nonce.map(|n| Nonce::new(n.to_owned())))
        .set_auth_context_ref(input.acr.map(|a| AuthenticationContextClass::new(a.to_owned())))
        .set_auth_method_refs(
            (!input.amr.is_empty())
                .then(|| input.amr.iter().map(|m| AuthenticationMethodReference::new(m.clone())).collect()),
        );

        let access_token = AccessToken::new(access_token.to_owned());
        let code = code.map(|c| AuthorizationCode::new(c.to_owned()));
        let token = BrokerIdToken::new(
            claims,
            &self.current().signer,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            Some(&access_token),
            code.as_ref(),
        )
        .map_err(key_err)?;
        // The token serializes as its compact string; going through serde (not Display) keeps
        // the library's internal `expect` out of our request path.
        match serde_json::to_value(&token).map_err(key_err)? {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(OidcError::Internal("ID token did not serialize to a string".into())),
        }
    }

    /// A JWT access token (RFC 9068) signed with the current key.
    pub fn sign_access_token(&self, claims: &AccessTokenClaims) -> Result<String, OidcError> {
        let key = self.current();
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(key_err)
    }

    /// Verifies an access token presented as a bearer token. Every failure is `invalid_token`
    /// (RFC 6750) with a short reason; the reason is for logs, the client learns only the code.
    pub fn verify_access_token(
        &self,
        token: &str,
        issuer: &str,
        now: DateTime<Utc>,
    ) -> Result<AccessTokenClaims, OidcError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid_token("malformed"))?;
        // The header's alg is attacker-chosen: it is compared with our one algorithm, never used
        // to pick one ("none" does not even parse; HS256 with the public key as secret fails here).
        if header.alg != Algorithm::RS256 {
            return Err(invalid_token("unexpected alg"));
        }
        // RFC 9068 §4: "at+jwt" or "application/at+jwt"; media types compare case-insensitively.
        // This is what keeps an ID token (same key, no typ) from being used as an access token.
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(invalid_token("not an access token"));
        }
        let kid = header.kid.ok_or_else(|| invalid_token("no kid"))?;
        let key = self.all().find(|k| k.kid == kid).ok_or_else(|| invalid_token("unknown kid"))?;

        let mut validation = Validation::new(Algorithm::RS256);
        // Time and audience are ours to check: jsonwebtoken would read the system clock, and the
        // audience (a client id) is not known to the resource endpoint.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<AccessTokenClaims>(token, &key.decoding, &validation)
            .map_err(|_| invalid_token("bad signature or claims"))?;
        let claims = data.claims;
        if claims.iss != issuer {
            return Err(invalid_token("wrong issuer"));
        }
        if claims.exp <= now {
            return Err(invalid_token("expired"));
        }
        Ok(claims)
    }
}

fn invalid_token(reason: &str) -> OidcError {
    OidcError::protocol("invalid_token", reason)
}

fn load_key(stored: StoredKey) -> Result<LoadedKey, OidcError> {
    let rsa = Rsa::private_key_from_pem(stored.private_pem.as_bytes()).map_err(key_err)?;
    if rsa.size() * 8 < RSA_BITS {
        return Err(OidcError::Key(format!("key {}: RSA key shorter than {RSA_BITS} bits", stored.kid)));
    }
    if !rsa.check_key().map_err(key_err)? {
        return Err(OidcError::Key(format!("key {}: inconsistent RSA key", stored.kid)));
    }
    let n = rsa.n().to_vec();
    let e = rsa.e().to_vec();
    // jsonwebtoken's RSA signer (ring) wants PKCS#1 DER, which is what the PEM wraps.
    let der = rsa.private_key_to_der().map_err(key_err)?;
    let jwk: CoreJsonWebKey = serde_json::from_value(serde_json::json!({
        "kty": "RSA",
        "use": "sig",
        "alg": RS256,
        "kid": stored.kid,
        "n": URL_SAFE_NO_PAD.encode(&n),
        "e": URL_SAFE_NO_PAD.encode(&e),
    }))
    .map_err(key_err)?;
    let pkey = PKey::from_rsa(rsa).map_err(key_err)?;
    Ok(LoadedKey {
        signer: OpensslRsaKey { pkey, jwk },
        encoding: EncodingKey::from_rsa_der(&der),
        decoding: DecodingKey::from_rsa_raw_components(&n, &e),
        kid: stored.kid,
    })
}

// Tests may panic on a broken fixture; the deny is for production paths.
#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::oidc::UserClaims;
    use chrono::{Duration, TimeZone};
    use openidconnect::core::CoreIdTokenVerifier;
    use openidconnect::{AccessTokenHash, AuthorizationCodeHash, ClientId, TokenResponse as _};
    use std::str::FromStr;
    use std::sync::OnceLock;

    const ISS: &str = "https://sso.example.com";

    // RSA key generation costs tens of milliseconds in debug; share keys across tests.
    fn stored_keys() -> &'static (StoredKey, StoredKey) {
        static KEYS: OnceLock<(StoredKey, StoredKey)> = OnceLock::new();
        KEYS.get_or_init(|| {
            let a = generate_rsa_key().expect("key a");
            let b = generate_rsa_key().expect("key b");
            (a, b)
        })
    }

    fn keyset() -> KeySet {
        let (a, b) = stored_keys();
        KeySet::from_stored(vec![a.clone(), b.clone()]).expect("keyset")
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).single().expect("time")
    }

    fn user() -> UserClaims {
        UserClaims {
            sub: "u-123".into(),
            email: Some("ada@example.com".into()),
            email_verified: Some(true),
            name: Some("Ada Lovelace".into()),
            given_name: Some("Ada".into()),
            family_name: Some("Lovelace".into()),
            roles: vec!["admin".into(), "user".into()],
            groups: vec![],
        }
    }

    fn at_claims(now: DateTime<Utc>) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: ISS.into(),
            sub: "u-123".into(),
            aud: "dashboard".into(),
            client_id: "dashboard".into(),
            scope: "openid email".into(),
            exp: now + Duration::minutes(5),
            iat: now,
            jti: "jti-1".into(),
            grant_id: "grant-1".into(),
        }
    }

    fn b64_json(part: &str) -> serde_json::Value {
        let bytes = URL_SAFE_NO_PAD.decode(part).expect("b64");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn generated_key_is_pkcs1_rs256_with_thumbprint_kid() {
        let (a, b) = stored_keys();
        assert!(a.private_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert_eq!(a.alg, "RS256");
        assert_eq!(a.kid.len(), 43, "base64url SHA-256");
        assert_ne!(a.kid, b.kid);
        // openidconnect's own key type accepts it (PKCS#1 only), as STACK-NOTES warns.
        openidconnect::core::CoreRsaPrivateSigningKey::from_pem(&a.private_pem, None).expect("pkcs1");
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }

    #[test]
    fn from_stored_refuses_bad_sets() {
        let (a, _) = stored_keys();
        assert!(KeySet::from_stored(vec![]).is_err());
        assert!(KeySet::from_stored(vec![a.clone(), a.clone()]).is_err());
        let mut hs = a.clone();
        hs.alg = "HS256".into();
        assert!(KeySet::from_stored(vec![hs]).is_err());
        let mut garbage = a.clone();
        garbage.private_pem = "not a key".into();
        assert!(KeySet::from_stored(vec![garbage]).is_err());
        let small = Rsa::generate(1024).expect("rsa");
        let small = StoredKey {
            kid: "small".into(),
            alg: RS256.into(),
            private_pem: String::from_utf8(small.private_key_to_pem().expect("pem")).expect("utf8"),
        };
        assert!(KeySet::from_stored(vec![small]).is_err());
    }

    #[test]
    fn jwks_publishes_every_key_with_kid_alg_use() {
        let ks = keyset();
        let (a, b) = stored_keys();
        let v: serde_json::Value = serde_json::from_str(&ks.jwks_json()).expect("json");
        let keys = v["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 2);
        for (k, s) in keys.iter().zip([a, b]) {
            assert_eq!(k["kid"], s.kid.as_str());
            assert_eq!(k["alg"], "RS256");
            assert_eq!(k["use"], "sig");
            assert_eq!(k["kty"], "RSA");
            assert!(k.get("d").is_none(), "no private part");
        }
        let parsed: CoreJsonWebKeySet = serde_json::from_str(&ks.jwks_json()).expect("parse");
        assert_eq!(parsed, ks.jwks());
        assert_eq!(ks.current_kid(), a.kid);
    }

    #[test]
    fn id_token_verifies_with_openidconnect_relying_party() {
        let ks = keyset();
        let u = user();
        let now = t0();
        let input = IdTokenInput {
            issuer: ISS,
            client_id: "dashboard",
            user: &u,
            nonce: Some("n-0S6_WzA2Mj"),
            auth_time: now - Duration::minutes(1),
            issued_at: now,
            expires_at: now + Duration::minutes(5),
            acr: None,
            amr: &[],
        };
        let jwt = ks.sign_id_token(&input, "access-token-value", Some("the-code")).expect("sign");

        let header = b64_json(jwt.split('.').next().expect("header"));
        assert_eq!(header["kid"], ks.current_kid());
        assert_eq!(header["alg"], "RS256");

        // Round-trip the JWKS through JSON, as a real RP would fetch it.
        let jwks: CoreJsonWebKeySet = serde_json::from_str(&ks.jwks_json()).expect("jwks");
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new("dashboard".into()),
            IssuerUrl::new(ISS.into()).expect("iss"),
            jwks,
        )
        .set_time_fn(move || now + Duration::seconds(30));
        let token = BrokerIdToken::from_str(&jwt).expect("parse");
        let claims = token.claims(&verifier, &Nonce::new("n-0S6_WzA2Mj".into())).expect("verify");
        assert_eq!(claims.subject().as_str(), "u-123");
        assert_eq!(claims.issuer().as_str(), ISS);
        assert_eq!(claims.audiences(), &[Audience::new("dashboard".into())]);
        assert_eq!(claims.email().map(|e| e.as_str()), Some("ada@example.com"));
        assert_eq!(claims.email_verified(), Some(true));
        assert_eq!(claims.auth_time(), Some(now - Duration::minutes(1)));
        assert_eq!(claims.additional_claims().roles, vec!["admin", "user"]);
        assert!(claims.additional_claims().groups.is_empty());
        let alg = token.signing_alg().expect("alg");
        let key = token.signing_key(&verifier).expect("key");
        let at = AccessTokenHash::from_token(&AccessToken::new("access-token-value".into()), alg, key)
            .expect("at_hash");
        assert_eq!(claims.access_token_hash(), Some(&at));
        let c = AuthorizationCodeHash::from_code(&AuthorizationCode::new("the-code".into()), alg, key)
            .expect("c_hash");
        assert_eq!(claims.code_hash(), Some(&c));

        // Raw payload: empty groups array is present, email_verified next to email.
        let payload = b64_json(jwt.split('.').nth(1).expect("payload"));
        assert_eq!(payload["groups"], serde_json::json!([]));
        assert_eq!(payload["given_name"], "Ada");
        assert_eq!(payload["family_name"], "Lovelace");
        assert_eq!(payload["name"], "Ada Lovelace");
        assert_eq!(payload["iat"], now.timestamp());

        // Wrong nonce and expiry are caught by the RP.
        assert!(token.claims(&verifier, &Nonce::new("other".into())).is_err());
        let late = CoreIdTokenVerifier::new_public_client(
            ClientId::new("dashboard".into()),
            IssuerUrl::new(ISS.into()).expect("iss"),
            ks.jwks(),
        )
        .set_time_fn(move || now + Duration::minutes(6));
        assert!(token.claims(&late, &Nonce::new("n-0S6_WzA2Mj".into())).is_err());
        // Another client cannot accept it.
        let other = CoreIdTokenVerifier::new_public_client(
            ClientId::new("other-app".into()),
            IssuerUrl::new(ISS.into()).expect("iss"),
            ks.jwks(),
        )
        .set_time_fn(move || now);
        assert!(token.claims(&other, &Nonce::new("n-0S6_WzA2Mj".into())).is_err());
    }

    #[test]
    fn id_token_without_code_or_email_omits_them() {
        let ks = keyset();
        let mut u = user();
        u.email = None;
        let now = t0();
        let input = IdTokenInput {
            issuer: ISS,
            client_id: "dashboard",
            user: &u,
            nonce: None,
            auth_time: now,
            issued_at: now,
            expires_at: now + Duration::minutes(5),
            acr: None,
            amr: &[],
        };
        let jwt = ks.sign_id_token(&input, "at", None).expect("sign");
        let payload = b64_json(jwt.split('.').nth(1).expect("payload"));
        assert!(payload.get("c_hash").is_none());
        assert!(payload.get("nonce").is_none());
        assert!(payload.get("email").is_none());
        assert!(payload.get("email_verified").is_none());
        assert!(payload.get("at_hash").is_some());
        assert_eq!(payload["aud"], serde_json::json!(["dashboard"]));
    }

    #[test]
    fn id_token_via_openidconnect_token_response_shape() {
        // The token endpoint returns the ID token inside a standard token response; make sure
        // openidconnect's client type parses our compact string there too.
        let ks = keyset();
        let u = user();
        let now = t0();
        let input = IdTokenInput {
            issuer: ISS,
            client_id: "dashboard",
            user: &u,
            nonce: None,
            auth_time: now,
            issued_at: now,
            expires_at: now + Duration::minutes(5),
            acr: None,
            amr: &[],
        };
        let jwt = ks.sign_id_token(&input, "at", None).expect("sign");
        let body = serde_json::json!({
            "access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": jwt,
        });
        let resp: openidconnect::core::CoreTokenResponse =
            serde_json::from_value(body).expect("token response");
        assert!(resp.id_token().is_some());
    }

    #[test]
    fn access_token_round_trip() {
        let ks = keyset();
        let now = t0();
        let claims = at_claims(now);
        let jwt = ks.sign_access_token(&claims).expect("sign");
        let header = b64_json(jwt.split('.').next().expect("header"));
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], ks.current_kid());
        assert_eq!(header["alg"], "RS256");
        let back = ks.verify_access_token(&jwt, ISS, now + Duration::minutes(1)).expect("verify");
        assert_eq!(back, claims);
    }

    #[test]
    fn access_token_from_previous_key_still_verifies() {
        let (a, b) = stored_keys();
        let old = KeySet::from_stored(vec![b.clone()]).expect("old");
        let jwt = old.sign_access_token(&at_claims(t0())).expect("sign");
        let rotated = KeySet::from_stored(vec![a.clone(), b.clone()]).expect("rotated");
        assert!(rotated.verify_access_token(&jwt, ISS, t0()).is_ok());
        let dropped = KeySet::from_stored(vec![a.clone()]).expect("dropped");
        assert!(dropped.verify_access_token(&jwt, ISS, t0()).is_err());
    }

    #[test]
    fn access_token_expired_or_wrong_issuer_refused() {
        let ks = keyset();
        let now = t0();
        let jwt = ks.sign_access_token(&at_claims(now)).expect("sign");
        let exp = now + Duration::minutes(5);
        let err = ks.verify_access_token(&jwt, ISS, exp).expect_err("at exp");
        assert_eq!(err.code(), "invalid_token");
        assert!(ks.verify_access_token(&jwt, ISS, exp + Duration::seconds(1)).is_err());
        assert!(ks.verify_access_token(&jwt, "https://evil.example.com", now).is_err());
        assert!(ks.verify_access_token(&jwt, "https://sso.example.com/", now).is_err());
    }

    #[test]
    fn tampered_access_token_refused() {
        let ks = keyset();
        let now = t0();
        let jwt = ks.sign_access_token(&at_claims(now)).expect("sign");
        let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        let mut payload = b64_json(&parts[1]);
        payload["sub"] = "someone-else".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).expect("json"));
        let forged = parts.join(".");
        assert!(ks.verify_access_token(&forged, ISS, now).is_err());
        // A flipped signature byte too.
        let mut sig = URL_SAFE_NO_PAD.decode(jwt.split('.').nth(2).expect("sig")).expect("b64");
        sig[0] ^= 1;
        let parts: Vec<&str> = jwt.split('.').collect();
        let bad_sig = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert!(ks.verify_access_token(&bad_sig, ISS, now).is_err());
        assert!(ks.verify_access_token("not.a.jwt", ISS, now).is_err());
        assert!(ks.verify_access_token("", ISS, now).is_err());
    }

    fn forge(header: serde_json::Value, claims: &AccessTokenClaims, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("h")),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("c")),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    #[test]
    fn alg_none_and_hs256_refused() {
        let ks = keyset();
        let now = t0();
        let claims = at_claims(now);
        let kid = ks.current_kid().to_owned();
        let none = forge(serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": kid}), &claims, b"");
        assert!(ks.verify_access_token(&none, ISS, now).is_err());

        // The classic confusion: HMAC keyed with the published public key material.
        let jwk: serde_json::Value = serde_json::from_str(&ks.jwks_json()).expect("jwks");
        let n = jwk["keys"][0]["n"].as_str().expect("n").to_owned();
        let header = serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(kid.clone());
        let hs = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(n.as_bytes())).expect("hs256");
        assert!(ks.verify_access_token(&hs, ISS, now).is_err());
        let hs2 = forge(header, &claims, b"whatever");
        assert!(ks.verify_access_token(&hs2, ISS, now).is_err());
    }

    #[test]
    fn id_token_is_not_an_access_token() {
        let ks = keyset();
        let u = user();
        let now = t0();
        let input = IdTokenInput {
            issuer: ISS,
            client_id: "dashboard",
            user: &u,
            nonce: None,
            auth_time: now,
            issued_at: now,
            expires_at: now + Duration::minutes(5),
            acr: None,
            amr: &[],
        };
        let id = ks.sign_id_token(&input, "at", None).expect("sign");
        assert!(ks.verify_access_token(&id, ISS, now).is_err());
    }

    #[test]
    fn access_token_wrong_or_missing_kid_refused() {
        let ks = keyset();
        let now = t0();
        let claims = at_claims(now);
        let mut h = Header::new(Algorithm::RS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some("nope".into());
        let enc = &ks.current().encoding;
        let unknown = jsonwebtoken::encode(&h, &claims, enc).expect("sign");
        assert!(ks.verify_access_token(&unknown, ISS, now).is_err());
        h.kid = None;
        let missing = jsonwebtoken::encode(&h, &claims, enc).expect("sign");
        assert!(ks.verify_access_token(&missing, ISS, now).is_err());
        // Signed by the current key but labelled with the other key's kid: signature fails.
        h.kid = Some(stored_keys().1.kid.clone());
        let mislabelled = jsonwebtoken::encode(&h, &claims, enc).expect("sign");
        assert!(ks.verify_access_token(&mislabelled, ISS, now).is_err());
    }
}
