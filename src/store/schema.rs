//! Diesel table definitions, written by hand to match both migration trees.

diesel::table! {
    users (id) {
        id -> Text,
        email -> Nullable<Text>,
        email_verified -> Bool,
        given_name -> Nullable<Text>,
        family_name -> Nullable<Text>,
        display_name -> Nullable<Text>,
        groups_json -> Text,
        disabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        last_login_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    federated_identities (connection_id, subject) {
        connection_id -> Text,
        subject -> Text,
        user_id -> Text,
        created_at -> BigInt,
        last_login_at -> BigInt,
    }
}

diesel::table! {
    user_roles (user_id, role, source) {
        user_id -> Text,
        role -> Text,
        source -> Text,
        source_detail -> Nullable<Text>,
        granted_at -> BigInt,
    }
}

diesel::table! {
    login_transactions (id) {
        id -> Text,
        request_id -> Text,
        connection_id -> Text,
        client_id -> Text,
        redirect_uri -> Text,
        scope -> Text,
        state -> Nullable<Text>,
        nonce -> Nullable<Text>,
        code_challenge -> Nullable<Text>,
        browser_binding -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    saml_replay (connection_id, assertion_id) {
        connection_id -> Text,
        assertion_id -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        connection_id -> Text,
        auth_time -> BigInt,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked -> Bool,
        acr -> Nullable<Text>,
        amr -> Text,
        last_seen_at -> BigInt,
        saml_name_id -> Nullable<Text>,
        saml_name_id_format -> Nullable<Text>,
        saml_session_index -> Nullable<Text>,
        saml_name_qualifier -> Nullable<Text>,
        saml_sp_name_qualifier -> Nullable<Text>,
    }
}

diesel::table! {
    saml_logouts (request_id) {
        request_id -> Text,
        connection_id -> Text,
        user_id -> Text,
        redirect_to -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    auth_grants (id) {
        id -> Text,
        code_hash -> Text,
        client_id -> Text,
        user_id -> Text,
        session_id -> Nullable<Text>,
        redirect_uri -> Text,
        scope -> Text,
        nonce -> Nullable<Text>,
        code_challenge -> Nullable<Text>,
        auth_time -> BigInt,
        created_at -> BigInt,
        code_expires_at -> BigInt,
        code_used -> Bool,
        revoked -> Bool,
        acr -> Nullable<Text>,
        amr -> Text,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        private_pem -> Text,
        created_at -> BigInt,
        active -> Bool,
        rotated_at -> Nullable<BigInt>,
        retired_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        family_id -> Text,
        grant_id -> Text,
        client_id -> Text,
        user_id -> Text,
        session_id -> Nullable<Text>,
        scope -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used -> Bool,
        revoked -> Bool,
    }
}

diesel::table! {
    clients (client_id) {
        client_id -> Text,
        secret_hash -> Nullable<Text>,
        redirect_uris -> Text,
        post_logout_redirect_uris -> Text,
        allowed_roles -> Text,
        issue_refresh_token -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        launch_url -> Nullable<Text>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        at -> BigInt,
        kind -> Text,
        user_id -> Nullable<Text>,
        connection_id -> Nullable<Text>,
        client_id -> Nullable<Text>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        reason -> Nullable<Text>,
        detail -> Text,
        actor -> Nullable<Text>,
    }
}

diesel::table! {
    admin_accounts (name) {
        name -> Text,
        password_hash -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        last_login_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    admin_sessions (id) {
        id -> Text,
        actor -> Text,
        user_id -> Nullable<Text>,
        csrf_token -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        last_seen_at -> BigInt,
        revoked -> Bool,
        broker_session_id -> Nullable<Text>,
    }
}

diesel::joinable!(federated_identities -> users (user_id));
diesel::joinable!(user_roles -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(auth_grants -> users (user_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(admin_sessions -> users (user_id));

diesel::table! {
    idp_metadata (connection_id) {
        connection_id -> Text,
        source_url -> Text,
        xml -> Text,
        fetched_at -> BigInt,
    }
}

diesel::table! {
    sp_signing_keys (connection_id) {
        connection_id -> Text,
        key_pem -> Text,
        cert_pem -> Text,
        created_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    users,
    federated_identities,
    user_roles,
    login_transactions,
    saml_replay,
    saml_logouts,
    sessions,
    auth_grants,
    signing_keys,
    refresh_tokens,
    clients,
    audit_events,
    admin_accounts,
    admin_sessions,
);
