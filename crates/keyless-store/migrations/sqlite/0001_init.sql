-- The directory, tokens and the resource hierarchy.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE tenants (
    id           TEXT PRIMARY KEY,
    domain       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE principals (
    object_id     TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    upn           TEXT UNIQUE COLLATE NOCASE,
    app_id        TEXT UNIQUE COLLATE NOCASE,
    resource_id   TEXT UNIQUE COLLATE NOCASE,
    password_hash TEXT,
    enabled       INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL
);
CREATE INDEX principals_tenant ON principals(tenant_id, kind);

CREATE TABLE group_members (
    group_id  TEXT NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
    member_id TEXT NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_member ON group_members(member_id);

CREATE TABLE credentials (
    id            TEXT PRIMARY KEY,
    principal_id  TEXT NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    hint          TEXT,
    secret_digest TEXT,
    thumbprint    TEXT COLLATE NOCASE,
    public_key    BLOB,
    issuer        TEXT,
    subject       TEXT,
    audiences     TEXT,
    starts_at     INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX credentials_principal ON credentials(principal_id);

CREATE TABLE directory_roles (
    principal_id TEXT NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
    role         TEXT NOT NULL,
    PRIMARY KEY (principal_id, role)
);

CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE refresh_tokens (
    digest       TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
    tenant_id    TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    expires_at   INTEGER NOT NULL
);

CREATE TABLE device_codes (
    digest       TEXT PRIMARY KEY,
    user_code    TEXT NOT NULL UNIQUE,
    tenant_id    TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    scope        TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    approved_by  TEXT REFERENCES principals(object_id) ON DELETE CASCADE
);

CREATE TABLE subscriptions (
    id           TEXT PRIMARY KEY COLLATE NOCASE,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    display_name TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE resource_groups (
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    name            TEXT NOT NULL COLLATE NOCASE,
    location        TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, name)
);

-- ARM resources below resource groups (user-assigned identities now; more later).
CREATE TABLE resources (
    id_key          TEXT PRIMARY KEY,
    id              TEXT NOT NULL,
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    resource_group  TEXT NOT NULL COLLATE NOCASE,
    type            TEXT NOT NULL COLLATE NOCASE,
    name            TEXT NOT NULL,
    location        TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX resources_group ON resources(subscription_id, resource_group, type);

CREATE TABLE role_assignments (
    name               TEXT PRIMARY KEY COLLATE NOCASE,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    scope              TEXT NOT NULL,
    scope_key          TEXT NOT NULL,
    role_definition_id TEXT NOT NULL COLLATE NOCASE,
    principal_id       TEXT NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
    created_at         INTEGER NOT NULL
);
CREATE INDEX role_assignments_principal ON role_assignments(principal_id);
CREATE INDEX role_assignments_scope ON role_assignments(scope_key);
