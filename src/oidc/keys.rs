//! Signing keys: generation, the published JWKS, ID tokens (openidconnect) and JWT access tokens
//! (jsonwebtoken, RFC 9068 profile). RS256, ES256 or EdDSA (Ed25519), chosen per key; every
//! private-key operation is OpenSSL's and every token carries a `kid`. Also the key life cycle as
//! plain decisions (which stored key is current, which are still published, when a rotated key
//! retires); loading and storing are the callers' business.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
#[cfg(test)]
use jsonwebtoken::EncodingKey;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use openidconnect::core::{
    CoreGenderClaim, CoreIdTokenVerifier, CoreJsonWebKey, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AccessToken, AdditionalClaims, Audience, AuthenticationContextClass, AuthenticationMethodReference,
    AuthorizationCode, ClientId, EndUserEmail, EndUserFamilyName, EndUserGivenName, EndUserName, IdToken,
    IdTokenClaims, IssuerUrl, Nonce, PrivateSigningKey, SigningError, StandardClaims, SubjectIdentifier,
};
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{IdTokenInput, OidcError};

/// The name of the default algorithm, as stored in `signing_keys.alg`.
pub const RS256: &str = "RS256";
const RSA_BITS: u32 = 2048;
/// P-256 coordinates and ES256 signature halves are 32 bytes each (RFC 7518 §3.4, §6.2.1).
const P256_BYTES: i32 = 32;
/// RFC 9068 §2.1: the `typ` that tells an access token apart from an ID token, so one can never
/// be replayed as the other.
const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// How often a running broker re-reads the keys from the database, so a rotation made by
/// `ssobroker keys rotate` reaches every instance without a restart. A rotated key may still sign
/// for this long on an instance that has not looked yet, so retirement waits for it too.
pub const KEY_REFRESH_SECONDS: i64 = 60;

/// A JWS algorithm the broker signs with. Fixed per key: a stored key is only ever used with the
/// algorithm stored next to it, and a token's header never chooses one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys: what every RP supports.
    Rs256,
    /// ECDSA on P-256 with SHA-256: small keys and signatures.
    Es256,
    /// EdDSA on Ed25519 (RFC 8037).
    EdDsa,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa];

    /// The JOSE name (`alg` header, JWKS, discovery, the config and the database).
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => RS256,
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
        }
    }

    pub fn jws(self) -> CoreJwsSigningAlgorithm {
        match self {
            SigningAlg::Rs256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            SigningAlg::Es256 => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            SigningAlg::EdDsa => CoreJwsSigningAlgorithm::EdDsa,
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            SigningAlg::Rs256 => Algorithm::RS256,
            SigningAlg::Es256 => Algorithm::ES256,
            SigningAlg::EdDsa => Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlg {
    type Err = String;

    /// JOSE names are case-sensitive, so is this.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SigningAlg::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown signing algorithm {s:?} (expected RS256, ES256 or EdDSA)"))
    }
}

/// A signing key as the store keeps it.
#[derive(Clone)]
pub struct StoredKey {
    pub kid: String,
    /// "RS256", "ES256" or "EdDSA"; `KeySet::from_stored` refuses anything else.
    pub alg: String,
    /// RS256: PKCS#1 PEM ("BEGIN RSA PRIVATE KEY"); ES256 and EdDSA: PKCS#8 PEM ("BEGIN PRIVATE
    /// KEY"). Keys made elsewhere may use PKCS#8 for RSA too.
    pub private_pem: String,
    /// Set once the key is rotated out: from then on it neither appears in the JWKS nor verifies
    /// anything. `None` for the current key.
    pub retired_at: Option<DateTime<Utc>>,
}

// The private key must never reach a log line through `{:?}`.
impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_pem", &"<redacted>")
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// A fresh key for `alg`: 2048-bit RSA, P-256 or Ed25519. Its kid is the RFC 7638 JWK
/// thumbprint, so it is stable, unique per key and carries nothing beyond the public key.
pub fn generate_key(alg: SigningAlg) -> Result<StoredKey, OidcError> {
    let (pkey, pem) = match alg {
        SigningAlg::Rs256 => {
            let rsa = Rsa::generate(RSA_BITS).map_err(key_err)?;
            // PKCS#1, which openidconnect's own RSA key type also reads.
            let pem = rsa.private_key_to_pem().map_err(key_err)?;
            (PKey::from_rsa(rsa).map_err(key_err)?, pem)
        }
        SigningAlg::Es256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(key_err)?;
            let pkey = PKey::from_ec_key(EcKey::generate(&group).map_err(key_err)?).map_err(key_err)?;
            let pem = pkey.private_key_to_pem_pkcs8().map_err(key_err)?;
            (pkey, pem)
        }
        SigningAlg::EdDsa => {
            let pkey = PKey::generate_ed25519().map_err(key_err)?;
            let pem = pkey.private_key_to_pem_pkcs8().map_err(key_err)?;
            (pkey, pem)
        }
    };
    let kid = PublicKey::of(alg, &pkey)?.thumbprint()?;
    let private_pem = String::from_utf8(pem).map_err(|_| OidcError::Key("PEM is not UTF-8".into()))?;
    Ok(StoredKey { kid, alg: alg.as_str().to_owned(), private_pem, retired_at: None })
}

/// A fresh RS256 key (kept for callers from before ES256 and EdDSA).
pub fn generate_rsa_key() -> Result<StoredKey, OidcError> {
    generate_key(SigningAlg::Rs256)
}

fn key_err(e: impl fmt::Display) -> OidcError {
    OidcError::Key(e.to_string())
}

/// The public half of a key, as the JWKS publishes it.
enum PublicKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256 { x: Vec<u8>, y: Vec<u8> },
    Ed25519 { x: Vec<u8> },
}

impl PublicKey {
    /// The public key of `pkey`, after checking that it is a sound key of the kind `alg` needs
    /// (a stored "ES256" row holding an RSA key is refused, not reinterpreted).
    fn of(alg: SigningAlg, pkey: &PKey<Private>) -> Result<PublicKey, OidcError> {
        let wrong = |what: &str| OidcError::Key(format!("{alg} needs {what}"));
        match alg {
            SigningAlg::Rs256 => {
                if pkey.id() != Id::RSA {
                    return Err(wrong("an RSA key"));
                }
                let rsa = pkey.rsa().map_err(key_err)?;
                if rsa.size() * 8 < RSA_BITS {
                    return Err(OidcError::Key(format!("RSA key shorter than {RSA_BITS} bits")));
                }
                if !rsa.check_key().map_err(key_err)? {
                    return Err(OidcError::Key("inconsistent RSA key".into()));
                }
                Ok(PublicKey::Rsa { n: rsa.n().to_vec(), e: rsa.e().to_vec() })
            }
            SigningAlg::Es256 => {
                if pkey.id() != Id::EC {
                    return Err(wrong("a P-256 key"));
                }
                let ec = pkey.ec_key().map_err(key_err)?;
                if ec.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
                    return Err(wrong("a P-256 key"));
                }
                ec.check_key().map_err(key_err)?;
                let (mut x, mut y) = (BigNum::new().map_err(key_err)?, BigNum::new().map_err(key_err)?);
                let mut ctx = BigNumContext::new().map_err(key_err)?;
                ec.public_key().affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx).map_err(key_err)?;
                Ok(PublicKey::P256 {
                    x: x.to_vec_padded(P256_BYTES).map_err(key_err)?,
                    y: y.to_vec_padded(P256_BYTES).map_err(key_err)?,
                })
            }
            SigningAlg::EdDsa => {
                if pkey.id() != Id::ED25519 {
                    return Err(wrong("an Ed25519 key"));
                }
                Ok(PublicKey::Ed25519 { x: pkey.raw_public_key().map_err(key_err)? })
            }
        }
    }

    /// RFC 7638 §3.2: the required members only, in lexicographic order (inserted in that order,
    /// so the result is the same whether or not serde_json preserves insertion order).
    fn required_members(&self) -> serde_json::Map<String, serde_json::Value> {
        let b64 = |v: &[u8]| serde_json::Value::String(URL_SAFE_NO_PAD.encode(v));
        let mut m = serde_json::Map::new();
        match self {
            PublicKey::Rsa { n, e } => {
                m.insert("e".into(), b64(e));
                m.insert("kty".into(), "RSA".into());
                m.insert("n".into(), b64(n));
            }
            PublicKey::P256 { x, y } => {
                m.insert("crv".into(), "P-256".into());
                m.insert("kty".into(), "EC".into());
                m.insert("x".into(), b64(x));
                m.insert("y".into(), b64(y));
            }
            PublicKey::Ed25519 { x } => {
                m.insert("crv".into(), "Ed25519".into());
                m.insert("kty".into(), "OKP".into());
                m.insert("x".into(), b64(x));
            }
        }
        m
    }

    /// RFC 7638: SHA-256 over the required members, no whitespace, base64url.
    fn thumbprint(&self) -> Result<String, OidcError> {
        let canonical = serde_json::to_string(&self.required_members()).map_err(key_err)?;
        Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
    }

    /// The published JWK: the required members plus `use`, `alg` and `kid`.
    fn jwk(&self, alg: SigningAlg, kid: &str) -> Result<CoreJsonWebKey, OidcError> {
        let mut m = self.required_members();
        m.insert("use".into(), "sig".into());
        m.insert("alg".into(), alg.as_str().into());
        m.insert("kid".into(), kid.into());
        serde_json::from_value(serde_json::Value::Object(m)).map_err(key_err)
    }

    fn decoding_key(&self) -> Result<DecodingKey, OidcError> {
        let b64 = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        match self {
            PublicKey::Rsa { n, e } => Ok(DecodingKey::from_rsa_raw_components(n, e)),
            PublicKey::P256 { x, y } => DecodingKey::from_ec_components(&b64(x), &b64(y)).map_err(key_err),
            PublicKey::Ed25519 { x } => DecodingKey::from_ed_components(&b64(x)).map_err(key_err),
        }
    }
}

/// Extra ID token claims. Always serialized, empty or not, so apps can rely on the arrays
/// existing; `default` so tokens from before a claim existed still parse.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrokerClaims {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The broker session (OIDC Front-Channel Logout `sid`): a hash of the session key, so a
    /// logout hint can be matched to the browser's session without revealing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
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

/// Signing through OpenSSL for all three algorithms. openidconnect's RSA key uses the pure-Rust
/// `rsa` crate (slower, and subject to the Marvin timing advisory) and it has no ES256 key at
/// all; this adapter keeps openidconnect's token model while OpenSSL does the private-key work.
struct OpensslKey {
    alg: SigningAlg,
    pkey: PKey<Private>,
    /// Built once: openidconnect asks for the verification key several times per token.
    jwk: CoreJsonWebKey,
}

impl OpensslKey {
    fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, ErrorStack> {
        match self.alg {
            SigningAlg::Rs256 => {
                // OpenSSL's default RSA padding for a Signer is PKCS#1 v1.5, i.e. RS256.
                let mut signer = Signer::new(MessageDigest::sha256(), &self.pkey)?;
                signer.update(message)?;
                signer.sign_to_vec()
            }
            SigningAlg::Es256 => {
                let mut signer = Signer::new(MessageDigest::sha256(), &self.pkey)?;
                signer.update(message)?;
                // OpenSSL gives an ASN.1 DER sequence; JWS wants r ‖ s, each left-padded to 32
                // bytes (RFC 7518 §3.4), since either half may be shorter than 32 bytes.
                let sig = EcdsaSig::from_der(&signer.sign_to_vec()?)?;
                let mut raw = sig.r().to_vec_padded(P256_BYTES)?;
                raw.extend(sig.s().to_vec_padded(P256_BYTES)?);
                Ok(raw)
            }
            // Ed25519 hashes internally: no digest, one shot.
            SigningAlg::EdDsa => Signer::new_without_digest(&self.pkey)?.sign_oneshot_to_vec(message),
        }
    }
}

impl PrivateSigningKey for OpensslKey {
    type VerificationKey = CoreJsonWebKey;

    fn sign(&self, signature_alg: &CoreJwsSigningAlgorithm, message: &[u8]) -> Result<Vec<u8>, SigningError> {
        // `alg` is fixed per key: asked for any other algorithm, refuse rather than comply.
        if *signature_alg != self.alg.jws() {
            return Err(SigningError::UnsupportedAlg(format!("{signature_alg:?}")));
        }
        self.sign_message(message).map_err(|_| SigningError::CryptoError)
    }

    fn as_verification_key(&self) -> CoreJsonWebKey {
        self.jwk.clone()
    }
}

/// One parsed key, ready to sign and verify: PEM parsing happens once, at load.
struct LoadedKey {
    kid: String,
    alg: SigningAlg,
    signer: OpensslKey,
    decoding: DecodingKey,
    retired_at: Option<DateTime<Utc>>,
}

impl LoadedKey {
    /// The same key for jsonwebtoken, for tests that forge tokens with it.
    #[cfg(test)]
    fn encoding(&self) -> EncodingKey {
        let der = |r: Result<Vec<u8>, ErrorStack>| r.expect("key DER");
        match self.alg {
            SigningAlg::Rs256 => {
                EncodingKey::from_rsa_der(&der(self.signer.pkey.rsa().and_then(|r| r.private_key_to_der())))
            }
            SigningAlg::Es256 => EncodingKey::from_ec_der(&der(self.signer.pkey.private_key_to_pkcs8())),
            SigningAlg::EdDsa => EncodingKey::from_ed_der(&der(self.signer.pkey.private_key_to_pkcs8())),
        }
    }

    fn retired(&self, now: DateTime<Utc>) -> bool {
        self.retired_at.is_some_and(|t| t <= now)
    }
}

/// The broker's keys. The first is the current signing key; the rest are only published in the
/// JWKS (and accepted for access tokens) so tokens signed before a rotation still verify. A
/// `KeySet` never changes: a rotation builds a new one.
pub struct KeySet {
    /// Signs everything new.
    current: LoadedKey,
    /// Published and accepted until their `retired_at`, never used to sign.
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
    /// The current key first, then the keys still published.
    pub fn from_stored(stored: Vec<StoredKey>) -> Result<KeySet, OidcError> {
        let mut keys: Vec<LoadedKey> = Vec::with_capacity(stored.len());
        for s in stored {
            if s.kid.is_empty() || keys.iter().any(|k| k.kid == s.kid) {
                return Err(OidcError::Key(format!("key id {:?} empty or duplicated", s.kid)));
            }
            let kid = s.kid.clone();
            keys.push(load_key(s).map_err(|e| OidcError::Key(format!("key {kid}: {e}")))?);
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

    /// Algorithm of the key new tokens are signed with.
    pub fn current_alg(&self) -> SigningAlg {
        self.current().alg
    }

    /// Every published kid, the current one first.
    pub fn kids(&self) -> Vec<&str> {
        self.all().map(|k| k.kid.as_str()).collect()
    }

    /// The algorithms of the published keys, the current one first, each once: what discovery's
    /// `id_token_signing_alg_values_supported` announces.
    pub fn signing_algs(&self) -> Vec<SigningAlg> {
        let mut algs: Vec<SigningAlg> = Vec::new();
        for k in self.all() {
            if !algs.contains(&k.alg) {
                algs.push(k.alg);
            }
        }
        algs
    }

    /// Whether this set is exactly `stored` (same kids, algorithms, retirement times and order),
    /// so a periodic reload can skip re-parsing keys when nothing changed.
    pub fn is_same_as(&self, stored: &[StoredKey]) -> bool {
        self.all().count() == stored.len()
            && self
                .all()
                .zip(stored)
                .all(|(k, s)| k.kid == s.kid && k.alg.as_str() == s.alg && k.retired_at == s.retired_at)
    }

    fn current(&self) -> &LoadedKey {
        &self.current
    }

    /// A verifier for ID tokens issued with this set, accepting exactly the algorithms of the
    /// published keys (openidconnect's default accepts RS256 only). For `id_token_hint` checks
    /// and in-process relying parties; adjust time and audience checks on the result.
    pub fn id_token_verifier(&self, client_id: ClientId, issuer: IssuerUrl) -> CoreIdTokenVerifier<'static> {
        CoreIdTokenVerifier::new_public_client(client_id, issuer, self.jwks())
            .set_allowed_algs(self.signing_algs().into_iter().map(SigningAlg::jws))
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
        let extra = BrokerClaims {
            roles: user.roles.clone(),
            groups: user.groups.clone(),
            sid: input.sid.map(str::to_owned),
        };
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
        let key = self.current();
        // at_hash and c_hash follow the algorithm: SHA-256 for RS256 and ES256, SHA-512 for
        // Ed25519 (OIDC Core §3.1.3.6 via the JWK's hash); openidconnect picks it from the key.
        let token =
            BrokerIdToken::new(claims, &key.signer, key.alg.jws(), Some(&access_token), code.as_ref())
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
        let mut header = Header::new(key.alg.jwt());
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(key.kid.clone());
        // The JWS compact framing by hand, so the private-key work goes through the same OpenSSL
        // signer as the ID token: jsonwebtoken signs with ring, whose RSA-2048 signature cost
        // more CPU than OpenSSL's here (it was the largest single item of a login's profile).
        // Verification stays with jsonwebtoken (`verify_access_token`).
        let mut jws = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(key_err)?);
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(key_err)?));
        let signature = key.signer.sign_message(jws.as_bytes()).map_err(key_err)?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jws)
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
        // A retired key verifies nothing, even before the next reload drops it from the set.
        if key.retired(now) {
            return Err(invalid_token("retired key"));
        }
        // The header's alg is attacker-chosen: it must equal the key's own algorithm and is never
        // used to pick one ("none" does not even parse; HS256 keyed with the public key, or
        // RS256 presented with an EC kid, stops here).
        if header.alg != key.alg.jwt() {
            return Err(invalid_token("unexpected alg"));
        }

        let mut validation = Validation::new(key.alg.jwt());
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
    let alg: SigningAlg = stored.alg.parse().map_err(OidcError::Key)?;
    let pkey = PKey::private_key_from_pem(stored.private_pem.as_bytes()).map_err(key_err)?;
    let public = PublicKey::of(alg, &pkey)?;
    let jwk = public.jwk(alg, &stored.kid)?;
    Ok(LoadedKey {
        alg,
        signer: OpensslKey { alg, pkey, jwk },
        decoding: public.decoding_key()?,
        kid: stored.kid,
        retired_at: stored.retired_at,
    })
}

/// Where a stored key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Signs every new token.
    Current,
    /// In the JWKS and accepted for verification, signs nothing. `until` is `None` only for a key
    /// that was never rotated yet lost the race to be current (two first starts at once); the
    /// next rotation gives it a date.
    Published { until: Option<DateTime<Utc>> },
    /// Past its retirement (or deactivated): neither published nor accepted.
    Retired,
}

/// The life-cycle columns of a stored key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLife {
    pub active: bool,
    pub rotated_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
}

/// The state of each key at `now`; `lives` come oldest first. The current key is the oldest
/// active key never rotated: a rotation rotates every such key and adds one, so normally there is
/// exactly one, and when two instances create a first key at once both settle on the same one.
pub fn key_states(lives: &[KeyLife], now: DateTime<Utc>) -> Vec<KeyState> {
    let mut have_current = false;
    lives
        .iter()
        .map(|l| {
            if !l.active || l.retired_at.is_some_and(|t| t <= now) {
                KeyState::Retired
            } else if l.rotated_at.is_none() && !have_current {
                have_current = true;
                KeyState::Current
            } else {
                KeyState::Published { until: l.retired_at }
            }
        })
        .collect()
}

/// When a key rotated out at `rotated_at` may leave the JWKS: once every token it can have signed
/// has expired. That is the longest token lifetime, plus the time an instance may keep signing
/// with it before its next reload, plus `clock_skew` for relying parties whose clocks run behind.
pub fn retirement_time(
    rotated_at: DateTime<Utc>,
    id_token_ttl: Duration,
    access_token_ttl: Duration,
    clock_skew: Duration,
) -> DateTime<Utc> {
    rotated_at + id_token_ttl.max(access_token_ttl) + Duration::seconds(KEY_REFRESH_SECONDS) + clock_skew
}

/// `discovery` with `id_token_signing_alg_values_supported` set to `algs`. The discovery document
/// itself is static; which algorithms are live is the key set's to say, so it is patched in here
/// whenever the published keys change.
pub fn with_signing_algs(discovery: &str, algs: &[SigningAlg]) -> Result<String, OidcError> {
    let mut doc: serde_json::Value =
        serde_json::from_str(discovery).map_err(|e| OidcError::Internal(format!("discovery: {e}")))?;
    let obj =
        doc.as_object_mut().ok_or_else(|| OidcError::Internal("discovery is not a JSON object".into()))?;
    obj.insert(
        "id_token_signing_alg_values_supported".into(),
        algs.iter().map(|a| serde_json::Value::from(a.as_str())).collect(),
    );
    serde_json::to_string(&doc).map_err(|e| OidcError::Internal(format!("discovery: {e}")))
}

// Tests may panic on a broken fixture; the deny is for production paths.
#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::oidc::UserClaims;
    use chrono::{Duration, TimeZone};
    use openidconnect::{AccessTokenHash, AuthorizationCodeHash, TokenResponse as _};
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
            retired_at: None,
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
            sid: None,
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
            sid: None,
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
            sid: None,
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
            sid: None,
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
        let enc = &ks.current().encoding();
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

    // ---- ES256 and EdDSA, rotation, life cycle ----

    const EC_AND_ED: [SigningAlg; 2] = [SigningAlg::Es256, SigningAlg::EdDsa];

    fn single(alg: SigningAlg) -> (StoredKey, KeySet) {
        let k = generate_key(alg).expect("key");
        let ks = KeySet::from_stored(vec![k.clone()]).expect("keyset");
        (k, ks)
    }

    fn id_input(u: &UserClaims, now: DateTime<Utc>) -> IdTokenInput<'_> {
        IdTokenInput {
            issuer: ISS,
            client_id: "dashboard",
            user: u,
            nonce: Some("n-1"),
            auth_time: now - Duration::minutes(1),
            issued_at: now,
            expires_at: now + Duration::minutes(5),
            acr: None,
            amr: &[],
            sid: None,
        }
    }

    /// A relying party that accepts `algs`, reading the JWKS as JSON like a real one, at a fixed
    /// time.
    fn rp(jwks_json: &str, algs: &[SigningAlg], at: DateTime<Utc>) -> CoreIdTokenVerifier<'static> {
        let jwks: CoreJsonWebKeySet = serde_json::from_str(jwks_json).expect("jwks");
        CoreIdTokenVerifier::new_public_client(
            ClientId::new("dashboard".into()),
            IssuerUrl::new(ISS.into()).expect("iss"),
            jwks,
        )
        .set_allowed_algs(algs.iter().map(|a| a.jws()))
        .set_time_fn(move || at)
    }

    #[test]
    fn signing_alg_names_round_trip() {
        for alg in SigningAlg::ALL {
            assert_eq!(alg.as_str().parse::<SigningAlg>(), Ok(alg));
            assert_eq!(alg.to_string(), alg.as_str());
        }
        assert!("es256".parse::<SigningAlg>().is_err(), "JOSE names are case-sensitive");
        assert!("HS256".parse::<SigningAlg>().is_err());
        assert!("none".parse::<SigningAlg>().is_err());
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let key = PublicKey::Rsa { n: URL_SAFE_NO_PAD.decode(n).expect("n"), e: vec![1, 0, 1] };
        assert_eq!(key.thumbprint().expect("thumbprint"), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn generated_ec_and_ed_keys_are_pkcs8_with_thumbprint_kids() {
        let es = generate_key(SigningAlg::Es256).expect("es");
        let ed = generate_key(SigningAlg::EdDsa).expect("ed");
        for (k, alg) in [(&es, "ES256"), (&ed, "EdDSA")] {
            assert!(k.private_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
            assert_eq!(k.alg, alg);
            assert_eq!(k.kid.len(), 43, "base64url SHA-256");
            assert!(!format!("{k:?}").contains("PRIVATE"));
        }
        // Other tools read them: jsonwebtoken's PEM parsers and openidconnect's own Ed25519 key.
        EncodingKey::from_ec_pem(es.private_pem.as_bytes()).expect("jsonwebtoken reads the EC PEM");
        EncodingKey::from_ed_pem(ed.private_pem.as_bytes()).expect("jsonwebtoken reads the Ed PEM");
        let theirs = openidconnect::core::CoreEdDsaPrivateSigningKey::from_ed25519_pem(&ed.private_pem, None)
            .expect("openidconnect reads the Ed25519 PKCS#8 PEM");
        let ours = KeySet::from_stored(vec![ed.clone()]).expect("keyset").jwks();
        let x = |k: &CoreJsonWebKey| serde_json::to_value(k).expect("jwk")["x"].clone();
        assert_eq!(x(&theirs.as_verification_key()), x(&ours.keys()[0]));
        // The kid is the thumbprint of what the JWKS publishes.
        for k in [&es, &ed] {
            let jwks: serde_json::Value =
                serde_json::from_str(&KeySet::from_stored(vec![k.clone()]).expect("ks").jwks_json())
                    .expect("json");
            let jwk = &jwks["keys"][0];
            let canonical = match jwk["kty"].as_str() {
                Some("EC") => format!(r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#, jwk["x"], jwk["y"]),
                _ => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":{}}}"#, jwk["x"]),
            };
            assert_eq!(k.kid, URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())));
        }
    }

    #[test]
    fn stored_alg_must_match_the_key_material() {
        let (rs, _) = stored_keys();
        let es = generate_key(SigningAlg::Es256).expect("es");
        let ed = generate_key(SigningAlg::EdDsa).expect("ed");
        let relabel = |k: &StoredKey, alg: &str| StoredKey { alg: alg.into(), ..k.clone() };
        for bad in [
            relabel(rs, "ES256"),
            relabel(rs, "EdDSA"),
            relabel(&es, "RS256"),
            relabel(&es, "EdDSA"),
            relabel(&ed, "ES256"),
            relabel(&ed, "RS256"),
        ] {
            assert!(KeySet::from_stored(vec![bad.clone()]).is_err(), "{bad:?}");
        }
        // ES256 means P-256: a P-384 key is refused.
        let group = EcGroup::from_curve_name(Nid::SECP384R1).expect("group");
        let p384 = PKey::from_ec_key(EcKey::generate(&group).expect("ec")).expect("pkey");
        let p384 = StoredKey {
            kid: "p384".into(),
            alg: "ES256".into(),
            private_pem: String::from_utf8(p384.private_key_to_pem_pkcs8().expect("pem")).expect("utf8"),
            retired_at: None,
        };
        assert!(KeySet::from_stored(vec![p384]).is_err());
    }

    #[test]
    fn jwks_publishes_each_key_with_its_own_alg() {
        let (rs, _) = stored_keys();
        let es = generate_key(SigningAlg::Es256).expect("es");
        let ed = generate_key(SigningAlg::EdDsa).expect("ed");
        let ks = KeySet::from_stored(vec![es.clone(), ed.clone(), rs.clone()]).expect("keyset");
        let v: serde_json::Value = serde_json::from_str(&ks.jwks_json()).expect("json");
        let keys = v["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 3);
        let len = |k: &serde_json::Value, m: &str| {
            URL_SAFE_NO_PAD.decode(k[m].as_str().expect(m)).expect("b64").len()
        };
        let (ec, okp, rsa) = (&keys[0], &keys[1], &keys[2]);
        assert_eq!(
            (ec["kty"].as_str(), ec["crv"].as_str(), ec["alg"].as_str()),
            (Some("EC"), Some("P-256"), Some("ES256"))
        );
        assert_eq!((len(ec, "x"), len(ec, "y")), (32, 32));
        assert_eq!(
            (okp["kty"].as_str(), okp["crv"].as_str(), okp["alg"].as_str()),
            (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
        );
        assert_eq!(len(okp, "x"), 32);
        assert!(okp.get("y").is_none());
        assert_eq!(rsa["alg"], "RS256");
        for (k, s) in keys.iter().zip([&es, &ed, rs]) {
            assert_eq!(k["kid"], s.kid.as_str());
            assert_eq!(k["use"], "sig");
            assert!(k.get("d").is_none(), "no private part");
        }
        assert_eq!(ks.signing_algs(), vec![SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256]);
        assert_eq!(ks.current_alg(), SigningAlg::Es256);
        assert_eq!(ks.kids(), vec![es.kid.as_str(), ed.kid.as_str(), rs.kid.as_str()]);
    }

    #[test]
    fn es256_and_eddsa_id_tokens_verify_with_openidconnect_relying_party() {
        let u = user();
        let now = t0();
        for alg in EC_AND_ED {
            let (_, ks) = single(alg);
            let jwt =
                ks.sign_id_token(&id_input(&u, now), "access-token-value", Some("the-code")).expect("sign");
            let header = b64_json(jwt.split('.').next().expect("header"));
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["kid"], ks.current_kid());
            // JWS signatures are raw: r ‖ s for ES256 (not DER), the 64-byte Ed25519 signature.
            let sig = URL_SAFE_NO_PAD.decode(jwt.split('.').nth(2).expect("sig")).expect("b64");
            assert_eq!(sig.len(), 64, "{alg}");

            let verifier = rp(&ks.jwks_json(), &[alg], now + Duration::seconds(30));
            let token = BrokerIdToken::from_str(&jwt).expect("parse");
            let claims = token.claims(&verifier, &Nonce::new("n-1".into())).expect("verify");
            assert_eq!(claims.subject().as_str(), "u-123");
            assert_eq!(claims.audiences(), &[Audience::new("dashboard".into())]);
            assert_eq!(claims.additional_claims().roles, vec!["admin", "user"]);
            // at_hash / c_hash with the algorithm's hash (SHA-512 halves for Ed25519).
            let signing_alg = token.signing_alg().expect("alg");
            assert_eq!(signing_alg, &alg.jws());
            let key = token.signing_key(&verifier).expect("key");
            let at =
                AccessTokenHash::from_token(&AccessToken::new("access-token-value".into()), signing_alg, key)
                    .expect("at_hash");
            assert_eq!(claims.access_token_hash(), Some(&at));
            let c = AuthorizationCodeHash::from_code(
                &AuthorizationCode::new("the-code".into()),
                signing_alg,
                key,
            )
            .expect("c_hash");
            assert_eq!(claims.code_hash(), Some(&c));

            // An RP left at openidconnect's default (RS256 only) refuses it; so does one past exp.
            let default_rp = CoreIdTokenVerifier::new_public_client(
                ClientId::new("dashboard".into()),
                IssuerUrl::new(ISS.into()).expect("iss"),
                ks.jwks(),
            )
            .set_time_fn(move || now);
            assert!(token.claims(&default_rp, &Nonce::new("n-1".into())).is_err());
            let late = rp(&ks.jwks_json(), &[alg], now + Duration::minutes(6));
            assert!(token.claims(&late, &Nonce::new("n-1".into())).is_err());
            // Another key of the same algorithm does not verify it.
            let (_, other) = single(alg);
            let mut jwks: serde_json::Value = serde_json::from_str(&other.jwks_json()).expect("json");
            jwks["keys"][0]["kid"] = ks.current_kid().into();
            let impostor = rp(&jwks.to_string(), &[alg], now);
            assert!(token.claims(&impostor, &Nonce::new("n-1".into())).is_err());
        }
    }

    #[test]
    fn es256_and_eddsa_access_tokens_round_trip() {
        let now = t0();
        for alg in EC_AND_ED {
            let (_, ks) = single(alg);
            // Several signatures: an ES256 r or s with a leading zero byte must still be padded.
            for i in 0..32 {
                let mut claims = at_claims(now);
                claims.jti = format!("jti-{i}");
                let jwt = ks.sign_access_token(&claims).expect("sign");
                let header = b64_json(jwt.split('.').next().expect("header"));
                assert_eq!(header["alg"], alg.as_str());
                assert_eq!(header["typ"], "at+jwt");
                assert_eq!(header["kid"], ks.current_kid());
                let back = ks.verify_access_token(&jwt, ISS, now + Duration::minutes(1)).expect("verify");
                assert_eq!(back, claims);
            }
            let jwt = ks.sign_access_token(&at_claims(now)).expect("sign");
            assert!(ks.verify_access_token(&jwt, ISS, now + Duration::minutes(5)).is_err(), "expired");
            // An ID token of the same key is not an access token.
            let u = user();
            let id = ks.sign_id_token(&id_input(&u, now), "at", None).expect("id");
            assert!(ks.verify_access_token(&id, ISS, now).is_err());
        }
    }

    #[test]
    fn header_alg_must_be_the_keys_own() {
        let (rs, _) = stored_keys();
        let es = generate_key(SigningAlg::Es256).expect("es");
        let ed = generate_key(SigningAlg::EdDsa).expect("ed");
        let ks = KeySet::from_stored(vec![es.clone(), ed.clone(), rs.clone()]).expect("keyset");
        let now = t0();
        let claims = at_claims(now);
        let sign_as = |signer: &StoredKey, alg: Algorithm, kid: &str| {
            let only = KeySet::from_stored(vec![signer.clone()]).expect("ks");
            let mut h = Header::new(alg);
            h.typ = Some("at+jwt".into());
            h.kid = Some(kid.into());
            jsonwebtoken::encode(&h, &claims, &only.current().encoding()).expect("sign")
        };
        // Genuine signatures, presented under another key's kid: refused for the algorithm, before
        // any signature check.
        for (signer, alg, kid) in [
            (rs, Algorithm::RS256, &es.kid),
            (&ed, Algorithm::EdDSA, &es.kid),
            (&es, Algorithm::ES256, &ed.kid),
            (&es, Algorithm::ES256, &rs.kid),
        ] {
            let err = ks.verify_access_token(&sign_as(signer, alg, kid), ISS, now).expect_err("refused");
            assert_eq!(err.to_string(), "invalid_token: unexpected alg");
        }
        // The same tokens under their own kid verify.
        for (signer, alg) in [(rs, Algorithm::RS256), (&ed, Algorithm::EdDSA), (&es, Algorithm::ES256)] {
            assert!(ks.verify_access_token(&sign_as(signer, alg, &signer.kid), ISS, now).is_ok());
        }
    }

    #[test]
    fn tokens_of_a_rotated_key_verify_until_it_retires() {
        let (rs, _) = stored_keys();
        let now = t0();
        let old = KeySet::from_stored(vec![rs.clone()]).expect("old");
        let mut long = at_claims(now);
        long.exp = now + Duration::hours(2);
        let at = old.sign_access_token(&long).expect("at");
        let u = user();
        let id = old.sign_id_token(&id_input(&u, now), "at", None).expect("id");

        // Rotated to ES256; the RSA key stays published for ten minutes.
        let retire = now + Duration::minutes(10);
        let es = generate_key(SigningAlg::Es256).expect("es");
        let rotated =
            KeySet::from_stored(vec![es.clone(), StoredKey { retired_at: Some(retire), ..rs.clone() }])
                .expect("rotated");
        assert_eq!(rotated.current_kid(), es.kid);
        assert_eq!(rotated.signing_algs(), vec![SigningAlg::Es256, SigningAlg::Rs256]);
        let new_at = rotated.sign_access_token(&at_claims(now)).expect("new");
        assert_eq!(b64_json(new_at.split('.').next().expect("h"))["kid"], es.kid.as_str());

        assert!(rotated.verify_access_token(&at, ISS, now + Duration::minutes(1)).is_ok());
        let both =
            rp(&rotated.jwks_json(), &[SigningAlg::Es256, SigningAlg::Rs256], now + Duration::minutes(1));
        assert!(BrokerIdToken::from_str(&id)
            .expect("parse")
            .claims(&both, &Nonce::new("n-1".into()))
            .is_ok());
        // The set's own verifier accepts both algorithms.
        let own = rotated
            .id_token_verifier(ClientId::new("dashboard".into()), IssuerUrl::new(ISS.into()).expect("iss"))
            .set_time_fn(move || now + Duration::minutes(1));
        assert!(BrokerIdToken::from_str(&id).expect("parse").claims(&own, &Nonce::new("n-1".into())).is_ok());
        let es_id = rotated.sign_id_token(&id_input(&u, now), "at", None).expect("es id");
        assert!(BrokerIdToken::from_str(&es_id)
            .expect("parse")
            .claims(&own, &Nonce::new("n-1".into()))
            .is_ok());

        // At retirement the key verifies nothing, even though this set still holds it.
        let err = rotated.verify_access_token(&at, ISS, retire).expect_err("retired");
        assert_eq!(err.to_string(), "invalid_token: retired key");
        // Reloaded without it: unknown.
        let later = KeySet::from_stored(vec![es.clone()]).expect("later");
        assert!(later.verify_access_token(&at, ISS, now + Duration::minutes(1)).is_err());
        assert!(!later.jwks_json().contains(&rs.kid));
    }

    #[test]
    fn is_same_as_compares_kids_algs_and_retirement() {
        let (a, b) = stored_keys();
        let ks = KeySet::from_stored(vec![a.clone(), b.clone()]).expect("ks");
        assert!(ks.is_same_as(&[a.clone(), b.clone()]));
        assert!(!ks.is_same_as(&[b.clone(), a.clone()]), "another current key");
        assert!(!ks.is_same_as(std::slice::from_ref(a)));
        let retiring = StoredKey { retired_at: Some(t0()), ..b.clone() };
        assert!(!ks.is_same_as(&[a.clone(), retiring]));
    }

    #[test]
    fn key_states_one_current_and_retirement_on_time() {
        let now = t0();
        let life = |rotated: Option<i64>, retired: Option<i64>, active: bool| KeyLife {
            active,
            rotated_at: rotated.map(|m| now + Duration::minutes(m)),
            retired_at: retired.map(|m| now + Duration::minutes(m)),
        };
        let lives = [
            life(Some(-90), Some(-30), true), // retired half an hour ago
            life(Some(-20), Some(0), true),   // retires exactly now
            life(Some(-10), Some(50), true),  // rotated out, still published
            life(None, None, false),          // deactivated by hand
            life(None, None, true),           // the current key
            life(None, None, true),           // lost a first-start race
        ];
        assert_eq!(
            key_states(&lives, now),
            vec![
                KeyState::Retired,
                KeyState::Retired,
                KeyState::Published { until: Some(now + Duration::minutes(50)) },
                KeyState::Retired,
                KeyState::Current,
                KeyState::Published { until: None },
            ]
        );
        assert_eq!(
            key_states(&lives, now - Duration::minutes(1))[1],
            KeyState::Published { until: Some(now) }
        );
        assert!(key_states(&[], now).is_empty());
    }

    #[test]
    fn retirement_waits_for_the_longest_token_the_reload_and_the_skew() {
        let t = retirement_time(t0(), Duration::minutes(5), Duration::hours(1), Duration::minutes(2));
        assert_eq!(
            t,
            t0() + Duration::hours(1) + Duration::seconds(KEY_REFRESH_SECONDS) + Duration::minutes(2)
        );
        let t = retirement_time(t0(), Duration::hours(2), Duration::hours(1), Duration::zero());
        assert_eq!(t, t0() + Duration::hours(2) + Duration::seconds(KEY_REFRESH_SECONDS));
    }

    #[test]
    fn discovery_announces_the_published_algorithms() {
        let base = crate::oidc::discovery_json(ISS).expect("discovery");
        let patched = with_signing_algs(&base, &[SigningAlg::Es256, SigningAlg::Rs256]).expect("patch");
        let mut before: serde_json::Value = serde_json::from_str(&base).expect("json");
        let after: serde_json::Value = serde_json::from_str(&patched).expect("json");
        assert_eq!(after["id_token_signing_alg_values_supported"], serde_json::json!(["ES256", "RS256"]));
        before["id_token_signing_alg_values_supported"] = serde_json::json!(["ES256", "RS256"]);
        assert_eq!(before, after, "nothing else changes");
        let core: openidconnect::core::CoreProviderMetadata =
            serde_json::from_str(&patched).expect("RP parses it");
        assert_eq!(
            core.id_token_signing_alg_values_supported(),
            &vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256, CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
        );
        let ed = with_signing_algs(&base, &[SigningAlg::EdDsa]).expect("patch");
        let ed: serde_json::Value = serde_json::from_str(&ed).expect("json");
        assert_eq!(ed["id_token_signing_alg_values_supported"], serde_json::json!(["EdDSA"]));
        assert!(with_signing_algs("[]", &[SigningAlg::Rs256]).is_err());
    }
}
