//! The connections pages: each IdP connection's health (last success and failure from the audit
//! log, signing certificate expiry) and the exact steps and values to set it up at its vendor.

use super::ConsoleError;
use crate::config::{Config, Connection};
use crate::provisioning::Vendor;
use crate::store::admin as q;
use crate::store::DbConnection;
use chrono::{DateTime, Utc};

/// Certificates expiring within this many days are flagged.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

#[derive(Debug, Clone)]
pub struct CertInfo {
    pub subject: String,
    pub not_after: DateTime<Utc>,
}

impl CertInfo {
    pub fn days_left(&self, now: DateTime<Utc>) -> i64 {
        (self.not_after - now).num_days()
    }
}

/// Subject and expiry of a DER certificate (None if it does not parse; config loading already
/// accepted it, so that does not happen in practice).
pub fn cert_info(der: &[u8]) -> Option<CertInfo> {
    let cert = openssl::x509::X509::from_der(der).ok()?;
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(cert.not_after()).ok()?;
    let secs = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    let subject = cert
        .subject_name()
        .entries()
        .filter_map(|e| {
            e.data()
                .to_string()
                .ok()
                .map(|s| format!("{}={}", e.object().nid().short_name().unwrap_or("?"), s))
        })
        .collect::<Vec<_>>()
        .join(", ");
    Some(CertInfo { subject, not_after: DateTime::from_timestamp(secs, 0)? })
}

pub fn certs(c: &Connection) -> Vec<CertInfo> {
    c.sp.idp.signing_certs.iter().filter_map(|d| cert_info(d)).collect()
}

#[derive(Debug)]
pub struct ConnectionStatus {
    pub connection: Connection,
    pub certs: Vec<CertInfo>,
    pub last_success: Option<i64>,
    /// Time and reason.
    pub last_failure: Option<(i64, String)>,
}

impl ConnectionStatus {
    /// One word for the list: how the connection is doing.
    pub fn health(&self, now: DateTime<Utc>) -> &'static str {
        if self.certs.iter().all(|c| c.not_after <= now) {
            return "certificate expired";
        }
        match (self.last_success, &self.last_failure) {
            (None, None) => "no logins yet",
            (Some(ok), Some((bad, _))) if *bad > ok => "failing",
            (None, Some(_)) => "failing",
            _ => "working",
        }
    }
}

pub fn status(conn: &mut DbConnection, c: &Connection) -> Result<ConnectionStatus, ConsoleError> {
    let last_success = q::last_on_connection(conn, "login.succeeded", &c.id)?.map(|e| e.at);
    let last_failure =
        q::last_on_connection(conn, "login.failed", &c.id)?.map(|e| (e.at, e.reason.unwrap_or_default()));
    Ok(ConnectionStatus { connection: c.clone(), certs: certs(c), last_success, last_failure })
}

pub fn all(conn: &mut DbConnection, cfg: &Config) -> Result<Vec<ConnectionStatus>, ConsoleError> {
    cfg.connections.iter().map(|c| status(conn, c)).collect()
}

/// One setup step: a sentence, and the values to paste.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub text: String,
    pub values: Vec<Paste>,
}

/// A field at the vendor and the exact value to paste into it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Paste {
    pub label: String,
    pub value: String,
}

fn step(text: &str, values: &[(&str, &str)]) -> Step {
    let values = values.iter().map(|(k, v)| Paste { label: k.to_string(), value: v.to_string() }).collect();
    Step { text: text.into(), values }
}

pub fn vendor_name(v: Vendor) -> &'static str {
    match v {
        Vendor::Okta => "Okta",
        Vendor::Azure => "Microsoft Entra ID",
        Vendor::Google => "Google Workspace",
        Vendor::Onelogin => "OneLogin",
        Vendor::Generic => "SAML 2.0 identity provider",
    }
}

/// What to do at the vendor's admin console, with this connection's own values filled in.
pub fn setup_steps(c: &Connection, issuer: &str) -> Vec<Step> {
    let mut steps = vendor_steps(c, issuer);
    steps.extend(slo_step(c));
    steps
}

fn vendor_steps(c: &Connection, issuer: &str) -> Vec<Step> {
    let acs = c.sp.acs_url.as_str();
    let entity = c.sp.entity_id.as_str();
    let metadata = format!("{issuer}/saml/{}/metadata", c.id);
    let regex = format!("^{}$", regex_escape(acs));
    match c.policy.vendor {
        Vendor::Okta => vec![
            step("Okta Admin Console → Applications → Create App Integration → SAML 2.0.", &[]),
            step(
                "General settings: tick \"Use this for Recipient URL and Destination URL\"; Name ID format EmailAddress; Application username Email.",
                &[("Single sign-on URL", acs), ("Audience URI (SP Entity ID)", entity)],
            ),
            step(
                "Attribute Statements (and a Group Attribute Statement named groups, filter \"Matches regex\" .*).",
                &[("email", "user.email"), ("firstName", "user.firstName"), ("lastName", "user.lastName")],
            ),
            step("Finish. On the Sign On tab download the IdP metadata and point this connection's metadata_file at it. Assign people or groups to the app.", &[]),
        ],
        Vendor::Azure => vec![
            step("Entra admin center → Enterprise applications → New application → Create your own application (non-gallery) → Single sign-on → SAML.", &[]),
            step("Basic SAML Configuration:", &[("Identifier (Entity ID)", entity), ("Reply URL (Assertion Consumer Service URL)", acs)]),
            step("Attributes & Claims: keep the defaults (emailaddress, givenname, surname, name). Add a group claim (e.g. groups assigned to the application); map the group object IDs in role_mapping.", &[]),
            step("SAML Certificates: download Federation Metadata XML for metadata_file. Keep \"Sign SAML assertion\" with SHA-256. Assign users and groups.", &[]),
        ],
        Vendor::Google => vec![
            step("Admin console → Apps → Web and mobile apps → Add app → Add custom SAML app.", &[]),
            step("Google Identity Provider details: Download metadata (for metadata_file).", &[]),
            step(
                "Service provider details: Name ID format EMAIL, Name ID Basic Information › Primary email.",
                &[("ACS URL", acs), ("Entity ID", entity)],
            ),
            step("Attribute mapping: First name → firstName, Last name → lastName; under Group membership pick the groups to send as groups.", &[("App attribute for groups", "groups")]),
            step("Turn the app ON for the users.", &[]),
        ],
        Vendor::Onelogin => vec![
            step("Applications → Add App → SAML Custom Connector (Advanced).", &[]),
            step(
                "Configuration tab; SAML signature element: Assertion.",
                &[
                    ("Audience (EntityID)", entity),
                    ("Recipient", acs),
                    ("ACS (Consumer) URL", acs),
                    ("ACS (Consumer) URL Validator", &regex),
                ],
            ),
            step("SSO tab: SAML Signature Algorithm SHA-256 (the broker refuses SHA-1 unless allow_sha1 is set).", &[]),
            step("Parameters: User.email (Email), User.FirstName (First Name), User.LastName (Last Name), memberOf (groups, Include in SAML assertion, multi-value).", &[]),
            step("More Actions → SAML Metadata: save it for metadata_file.", &[]),
        ],
        Vendor::Generic => vec![
            step("Create a SAML 2.0 application (service provider) at your IdP, or import the SP metadata from its URL.", &[("SP metadata URL", &metadata)]),
            step("Otherwise enter the values by hand:", &[("ACS URL (HTTP-POST)", acs), ("SP entity ID / Audience", entity)]),
            step("Send an email NameID (or an email attribute) and sign the assertion or the response with RSA-SHA256. Save the IdP's metadata XML for metadata_file.", &[]),
        ],
    }
}

/// Single logout as the console shows it: off, waiting for the IdP's endpoint, or on (and where).
pub fn single_logout_summary(c: &Connection) -> String {
    if !c.slo_service_on() {
        return "off".into();
    }
    match (&c.sp.idp.slo, c.slo_to_idp()) {
        (_, Some(idp)) => format!("on: the IdP's endpoint {} · ours {}", idp.url, c.sp.slo_url),
        (Some(_), None) => format!(
            "the IdP publishes an endpoint but there is no SP signing key yet (restart the broker) · ours {}",
            c.sp.slo_url
        ),
        (None, None) => format!(
            "waiting: the IdP metadata has no SingleLogoutService yet; IdP sign-outs are taken at {}",
            c.sp.slo_url
        ),
    }
}

/// The setup step for single logout at the vendor, when it is on and the vendor has one.
fn slo_step(c: &Connection) -> Option<Step> {
    if !c.slo_service_on() {
        return None;
    }
    let slo = c.sp.slo_url.as_str();
    let entity = c.sp.entity_id.as_str();
    Some(match c.policy.vendor {
        Vendor::Okta => step(
            "Single logout: General → SAML Settings → Show Advanced Settings → Enable Single Logout, and upload the SP signing certificate (KeyDescriptor use=\"signing\" in the SP metadata). Then download the IdP metadata again: it now lists Okta's logout endpoint.",
            &[("Single Logout URL", slo), ("SP Issuer", entity)],
        ),
        Vendor::Azure => step("Single logout: Basic SAML Configuration → Logout URL.", &[("Logout Url", slo)]),
        Vendor::Onelogin => step("Single logout: Configuration tab → Single Logout URL.", &[("Single Logout URL", slo)]),
        Vendor::Google => return None,
        Vendor::Generic => step(
            "Single logout: the SP's SingleLogoutService (HTTP-Redirect or HTTP-POST; messages signed with the SP signing certificate from the SP metadata).",
            &[("Single logout URL", slo)],
        ),
    })
}

/// A URL as a regular expression matching only itself (OneLogin's ACS validator).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        if "\\.+*?()|[]{}^$".contains(ch) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn regex_escape() {
        assert_eq!(
            super::regex_escape("https://sso.example.com/saml/x/acs"),
            "https://sso\\.example\\.com/saml/x/acs"
        );
    }
}
