// Submits the SAML POST-binding form at once; the button stays for browsers without scripts.
document.getElementById("autopost").submit();
