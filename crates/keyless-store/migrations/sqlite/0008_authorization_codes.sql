-- Authorization codes of the browser sign-in (authorization code grant with
-- PKCE): single use, minutes long, kept by the digest of the code only.
CREATE TABLE authorization_codes (
    digest         TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    principal_id   TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    scope          TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce          TEXT,
    expires_at     INTEGER NOT NULL
);
