//! Vendor presets: which SAML attribute names carry email, names and groups for each IdP.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Okta,
    Azure,
    Google,
    Onelogin,
    #[default]
    Generic,
}

/// Per-field overrides of the preset (`[connections.attributes]`): one attribute name each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeOverrides {
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub groups: Option<String>,
    /// An immutable attribute to key identities on instead of the NameID.
    pub subject: Option<String>,
    /// Split group values on this separator, for IdPs that send several groups joined in one
    /// value. Off by default: a group may legitimately contain a comma (and LDAP DNs do).
    pub group_separator: Option<String>,
}

/// Candidate attribute names per profile field, tried in order; matched against an
/// attribute's Name or FriendlyName.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeNames {
    pub email: Vec<String>,
    pub given_name: Vec<String>,
    pub family_name: Vec<String>,
    pub display_name: Vec<String>,
    pub groups: Vec<String>,
    /// The anchor attribute, when the vendor has a better one than the NameID.
    pub subject: Option<String>,
    pub group_separator: Option<String>,
}

const MS: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/";
const MS_GROUPS: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups";
const MS_DISPLAY: &str = "http://schemas.microsoft.com/identity/claims/displayname";
const MS_OBJECT_ID: &str = "http://schemas.microsoft.com/identity/claims/objectidentifier";

fn v(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

pub fn preset(vendor: Vendor) -> AttributeNames {
    match vendor {
        Vendor::Okta => AttributeNames {
            email: v(&["email", "Email", "user.email"]),
            given_name: v(&["firstName", "givenName", "FirstName"]),
            family_name: v(&["lastName", "surname", "LastName"]),
            display_name: v(&["displayName", "name"]),
            groups: v(&["groups", "Groups"]),
            subject: None,
            group_separator: None,
        },
        Vendor::Azure => AttributeNames {
            email: vec![format!("{MS}emailaddress"), format!("{MS}name")],
            given_name: vec![format!("{MS}givenname")],
            family_name: vec![format!("{MS}surname")],
            display_name: vec![MS_DISPLAY.to_string(), format!("{MS}name")],
            groups: vec![MS_GROUPS.to_string()],
            // The object ID never changes; UPNs and emails do.
            subject: Some(MS_OBJECT_ID.to_string()),
            group_separator: None,
        },
        // Google sends the email as NameID; names and groups only when the admin maps them.
        Vendor::Google => AttributeNames {
            email: v(&["email"]),
            given_name: v(&["firstName", "first_name", "givenName"]),
            family_name: v(&["lastName", "last_name", "familyName"]),
            display_name: v(&["displayName", "name"]),
            groups: v(&["groups"]),
            subject: None,
            group_separator: None,
        },
        Vendor::Onelogin => AttributeNames {
            email: v(&["User.email", "email"]),
            given_name: v(&["User.FirstName", "firstName"]),
            family_name: v(&["User.LastName", "lastName"]),
            display_name: v(&["User.DisplayName", "displayName"]),
            groups: v(&["memberOf", "groups"]),
            subject: None,
            group_separator: None,
        },
        Vendor::Generic => AttributeNames {
            email: vec![
                "email".into(),
                "mail".into(),
                "Email".into(),
                "emailAddress".into(),
                "urn:oid:0.9.2342.19200300.100.1.3".into(),
                format!("{MS}emailaddress"),
            ],
            given_name: vec![
                "givenName".into(),
                "firstName".into(),
                "given_name".into(),
                "urn:oid:2.5.4.42".into(),
                format!("{MS}givenname"),
            ],
            family_name: vec![
                "sn".into(),
                "surname".into(),
                "lastName".into(),
                "family_name".into(),
                "urn:oid:2.5.4.4".into(),
                format!("{MS}surname"),
            ],
            // The WS-Fed `name` claim comes last: ADFS and Entra put the UPN there.
            display_name: vec![
                "displayName".into(),
                "name".into(),
                "cn".into(),
                "urn:oid:2.16.840.1.113730.3.1.241".into(),
                "urn:oid:2.5.4.3".into(),
                MS_DISPLAY.into(),
                format!("{MS}name"),
            ],
            // Keycloak's default mapper sends realm roles as repeated `Role` attributes.
            groups: vec![
                "groups".into(),
                "memberOf".into(),
                "isMemberOf".into(),
                "urn:oid:1.3.6.1.4.1.5923.1.5.1.1".into(),
                MS_GROUPS.into(),
                "Role".into(),
                "roles".into(),
            ],
            subject: None,
            group_separator: None,
        },
    }
}

impl AttributeNames {
    /// The preset with the connection's overrides applied (an override replaces the list).
    pub fn with_overrides(mut self, o: &AttributeOverrides) -> Self {
        let set = |field: &mut Vec<String>, value: &Option<String>| {
            if let Some(name) = value {
                *field = vec![name.clone()];
            }
        };
        set(&mut self.email, &o.email);
        set(&mut self.given_name, &o.given_name);
        set(&mut self.family_name, &o.family_name);
        set(&mut self.display_name, &o.display_name);
        set(&mut self.groups, &o.groups);
        if o.subject.is_some() {
            self.subject = o.subject.clone();
        }
        self.group_separator = o.group_separator.clone().filter(|s| !s.is_empty());
        self
    }
}
