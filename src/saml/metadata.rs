//! IdP metadata in (entity ID, SSO endpoint, pinned signing certificates) and SP metadata out.

use base64::Engine;
use roxmltree::Node;

use super::xml::{
    children_named, escape, is, parse_strict, text_content, BINDING_POST, BINDING_REDIRECT, NAMEID_EMAIL,
    NAMEID_PERSISTENT, NAMEID_UNSPECIFIED, NS_DSIG, NS_METADATA, NS_PROTOCOL,
};
use super::{IdpMetadata, SamlError, SloEndpoint, SpSettings, SsoBinding};

fn meta_err(msg: impl Into<String>) -> SamlError {
    SamlError::Metadata(msg.into())
}

/// Reads IdP metadata (EntityDescriptor, or an EntitiesDescriptor holding one IdP).
///
/// Only KeyDescriptors with `use="signing"` or no `use` count as trust anchors, and metadata
/// with none is refused: samael would otherwise skip signature verification (SAML-NOTES L1).
/// The metadata's own signature and `validUntil` are not checked; trust comes from the admin
/// pasting the file.
pub fn parse_idp_metadata(xml: &str) -> Result<IdpMetadata, SamlError> {
    if xml.contains("<!DOCTYPE") {
        return Err(meta_err("DTDs are not allowed in metadata"));
    }
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let doc = parse_strict(xml).map_err(|e| meta_err(format!("not well-formed XML: {e}")))?;
    let root = doc.root_element();
    if !is(root, NS_METADATA, "EntityDescriptor") && !is(root, NS_METADATA, "EntitiesDescriptor") {
        return Err(meta_err("root element is neither md:EntityDescriptor nor md:EntitiesDescriptor"));
    }

    let mut idps = root
        .descendants()
        .filter(|n| is(*n, NS_METADATA, "EntityDescriptor"))
        .filter_map(|entity| saml2_idp_descriptor(entity).map(|idp| (entity, idp)));
    let (entity, idp) = idps.next().ok_or_else(|| meta_err("no entity with a SAML 2.0 IDPSSODescriptor"))?;
    if idps.next().is_some() {
        return Err(meta_err("several entities have an IDPSSODescriptor; paste the metadata of one IdP"));
    }

    let entity_id = entity
        .attribute("entityID")
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| meta_err("EntityDescriptor has no entityID"))?
        .to_string();

    let (sso_url, sso_binding) = sso_endpoint(idp)?;
    let signing_certs = signing_certificates(idp)?;
    if signing_certs.is_empty() {
        return Err(meta_err(format!(
            "IdP {entity_id} has no signing certificate (KeyDescriptor use=\"signing\" or without use)"
        )));
    }

    let want_authn_requests_signed = matches!(idp.attribute("WantAuthnRequestsSigned"), Some("true" | "1"));
    let slo = slo_endpoint(idp)?;
    Ok(IdpMetadata { entity_id, sso_url, sso_binding, signing_certs, want_authn_requests_signed, slo })
}

fn saml2_idp_descriptor<'a, 'i>(entity: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    children_named(entity, NS_METADATA, "IDPSSODescriptor").find(|d| {
        d.attribute("protocolSupportEnumeration")
            .is_some_and(|p| p.split_whitespace().any(|p| p == NS_PROTOCOL))
    })
}

fn sso_endpoint(idp: Node<'_, '_>) -> Result<(String, SsoBinding), SamlError> {
    let (service, binding) = preferred_service(idp, "SingleSignOnService")
        .ok_or_else(|| meta_err("no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding"))?;
    let location = http_location(service, "SingleSignOnService", "Location")?
        .ok_or_else(|| meta_err("SingleSignOnService has no Location"))?;
    Ok((location, binding))
}

/// The IdP's SingleLogoutService, HTTP-Redirect preferred (SOAP and other bindings are back
/// channels the broker does not speak).
fn slo_endpoint(idp: Node<'_, '_>) -> Result<Option<SloEndpoint>, SamlError> {
    let Some((service, binding)) = preferred_service(idp, "SingleLogoutService") else { return Ok(None) };
    let url = http_location(service, "SingleLogoutService", "Location")?
        .ok_or_else(|| meta_err("SingleLogoutService has no Location"))?;
    let response_url =
        http_location(service, "SingleLogoutService", "ResponseLocation")?.unwrap_or_else(|| url.clone());
    Ok(Some(SloEndpoint { binding, url, response_url }))
}

/// The first `element` with a Location and the HTTP-Redirect binding, else the first with
/// HTTP-POST.
fn preferred_service<'a, 'i>(idp: Node<'a, 'i>, element: &'a str) -> Option<(Node<'a, 'i>, SsoBinding)> {
    let with = |binding: &str| {
        children_named(idp, NS_METADATA, element)
            .find(|s| s.attribute("Binding") == Some(binding) && s.attribute("Location").is_some())
    };
    with(BINDING_REDIRECT)
        .map(|s| (s, SsoBinding::Redirect))
        .or_else(|| with(BINDING_POST).map(|s| (s, SsoBinding::Post)))
}

/// The endpoint attribute `attr`, which must be an http(s) URL when present.
fn http_location(service: Node<'_, '_>, element: &str, attr: &str) -> Result<Option<String>, SamlError> {
    let Some(location) = service.attribute(attr).map(str::trim) else { return Ok(None) };
    let url =
        url::Url::parse(location).map_err(|e| meta_err(format!("{element} {attr} {location:?}: {e}")))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(meta_err(format!("{element} {attr} {location:?} is not an http(s) URL")));
    }
    Ok(Some(location.to_string()))
}

fn signing_certificates(idp: Node<'_, '_>) -> Result<Vec<Vec<u8>>, SamlError> {
    let mut certs: Vec<Vec<u8>> = Vec::new();
    let signing_keys = children_named(idp, NS_METADATA, "KeyDescriptor")
        .filter(|k| matches!(k.attribute("use"), None | Some("signing")));
    for key in signing_keys {
        for cert in key.descendants().filter(|n| is(*n, NS_DSIG, "X509Certificate")) {
            let b64: String = text_content(cert).chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| meta_err(format!("signing certificate is not base64: {e}")))?;
            openssl::x509::X509::from_der(&der)
                .map_err(|e| meta_err(format!("signing certificate does not parse: {e}")))?;
            if !certs.contains(&der) {
                certs.push(der);
            }
        }
    }
    Ok(certs)
}

/// SP metadata XML for one connection (entity ID, ACS with HTTP-POST, NameID formats).
pub fn sp_metadata_xml(sp: &SpSettings) -> String {
    // The IdP encrypts to this certificate with one of the listed algorithms (GCM first).
    let encryption = sp.encryption_cert.as_ref().map_or_else(String::new, |der| {
        let methods: String = super::decrypt::DATA_ALGORITHMS
            .iter()
            .chain(super::decrypt::KEY_ALGORITHMS)
            .map(|a| format!("\n      <md:EncryptionMethod Algorithm=\"{a}\"/>"))
            .collect();
        format!(
            concat!(
                "\n    <md:KeyDescriptor use=\"encryption\">",
                "\n      <ds:KeyInfo xmlns:ds=\"{ds}\"><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>",
                "{methods}",
                "\n    </md:KeyDescriptor>"
            ),
            ds = NS_DSIG,
            cert = base64::engine::general_purpose::STANDARD.encode(der),
            methods = methods,
        )
    });
    let signing = sp.signing_key.as_ref().map_or_else(String::new, |key| {
        format!(
            concat!(
                "\n    <md:KeyDescriptor use=\"signing\">",
                "\n      <ds:KeyInfo xmlns:ds=\"{ds}\"><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>",
                "\n    </md:KeyDescriptor>"
            ),
            ds = NS_DSIG,
            cert = base64::engine::general_purpose::STANDARD.encode(key.cert_der()),
        )
    });
    let requests_signed = sp.sign_authn_requests && sp.signing_key.is_some();
    // Our logout messages are always signed, so without a key there is no SingleLogoutService.
    let slo = if !sp.slo_url.is_empty() && sp.signing_key.is_some() {
        [BINDING_REDIRECT, BINDING_POST]
            .iter()
            .map(|b| {
                format!(
                    "\n    <md:SingleLogoutService Binding=\"{b}\" Location=\"{}\"/>",
                    escape(&sp.slo_url)
                )
            })
            .collect()
    } else {
        String::new()
    };
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            "\n",
            r#"<md:EntityDescriptor xmlns:md="{md}" entityID="{entity}">"#,
            "\n  ",
            r#"<md:SPSSODescriptor AuthnRequestsSigned="{requests_signed}" WantAssertionsSigned="true" protocolSupportEnumeration="{proto}">"#,
            "{signing}{encryption}{slo}",
            "\n    <md:NameIDFormat>{email}</md:NameIDFormat>",
            "\n    <md:NameIDFormat>{persistent}</md:NameIDFormat>",
            "\n    <md:NameIDFormat>{unspecified}</md:NameIDFormat>",
            "\n    ",
            r#"<md:AssertionConsumerService Binding="{post}" Location="{acs}" index="0" isDefault="true"/>"#,
            "\n  </md:SPSSODescriptor>\n</md:EntityDescriptor>\n"
        ),
        md = NS_METADATA,
        entity = escape(&sp.entity_id),
        proto = NS_PROTOCOL,
        requests_signed = requests_signed,
        signing = signing,
        encryption = encryption,
        slo = slo,
        email = NAMEID_EMAIL,
        persistent = NAMEID_PERSISTENT,
        unspecified = NAMEID_UNSPECIFIED,
        post = BINDING_POST,
        acs = escape(&sp.acs_url),
    )
}
