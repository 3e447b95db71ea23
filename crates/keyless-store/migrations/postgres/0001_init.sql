-- The whole schema of the PostgreSQL metadata store: the same tables and columns
-- as the SQLite store's migrations leave, in PostgreSQL's types, and `seq` where
-- the SQLite store orders by insertion (its rowid). Names that Azure
-- compares without regard to case use the `nocase` collation (ICU, case-blind,
-- accent-aware), as SQLite's COLLATE NOCASE; every other text is compared and
-- ordered byte by byte (`"C"`), as SQLite's BINARY, whatever the database's locale.
CREATE COLLATION IF NOT EXISTS nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);

CREATE TABLE settings (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE tenants (
    id           TEXT COLLATE "C" PRIMARY KEY,
    domain       TEXT COLLATE nocase NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE principals (
    object_id     TEXT COLLATE "C" PRIMARY KEY,
    tenant_id     TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind          TEXT COLLATE "C" NOT NULL,
    display_name  TEXT COLLATE "C" NOT NULL,
    upn           TEXT COLLATE nocase UNIQUE,
    app_id        TEXT COLLATE nocase UNIQUE,
    resource_id   TEXT COLLATE nocase UNIQUE,
    password_hash TEXT,
    enabled       BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    BIGINT NOT NULL
);
CREATE INDEX principals_tenant ON principals(tenant_id, kind);

CREATE TABLE group_members (
    group_id  TEXT COLLATE "C" NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
    member_id TEXT COLLATE "C" NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_member ON group_members(member_id);

CREATE TABLE credentials (
    id            TEXT COLLATE "C" PRIMARY KEY,
    principal_id  TEXT COLLATE "C" NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
    kind          TEXT COLLATE "C" NOT NULL,
    display_name  TEXT NOT NULL,
    hint          TEXT,
    secret_digest TEXT COLLATE "C",
    thumbprint    TEXT COLLATE nocase,
    public_key    BYTEA,
    issuer        TEXT COLLATE "C",
    subject       TEXT COLLATE "C",
    audiences     TEXT,
    starts_at     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX credentials_principal ON credentials(principal_id);

CREATE TABLE directory_roles (
    principal_id TEXT COLLATE "C" NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
    role         TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (principal_id, role)
);

CREATE TABLE signing_keys (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    kid        TEXT COLLATE "C" PRIMARY KEY,
    sealed     BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    digest       TEXT COLLATE "C" PRIMARY KEY,
    principal_id TEXT COLLATE "C" NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
    tenant_id    TEXT COLLATE "C" NOT NULL,
    client_id    TEXT COLLATE "C" NOT NULL,
    expires_at   BIGINT NOT NULL
);

CREATE TABLE device_codes (
    digest       TEXT COLLATE "C" PRIMARY KEY,
    user_code    TEXT COLLATE "C" NOT NULL UNIQUE,
    tenant_id    TEXT COLLATE "C" NOT NULL,
    client_id    TEXT COLLATE "C" NOT NULL,
    scope        TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    approved_by  TEXT COLLATE "C" REFERENCES principals(object_id) ON DELETE CASCADE
);

CREATE TABLE authorization_codes (
    digest         TEXT COLLATE "C" PRIMARY KEY,
    tenant_id      TEXT COLLATE "C" NOT NULL,
    principal_id   TEXT COLLATE "C" NOT NULL,
    client_id      TEXT COLLATE "C" NOT NULL,
    scope          TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce          TEXT,
    expires_at     BIGINT NOT NULL
);

CREATE TABLE subscriptions (
    id           TEXT COLLATE nocase PRIMARY KEY,
    tenant_id    TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    display_name TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE resource_groups (
    subscription_id TEXT COLLATE nocase NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    name            TEXT COLLATE nocase NOT NULL,
    location        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, name)
);

CREATE TABLE resources (
    id_key          TEXT COLLATE "C" PRIMARY KEY,
    id              TEXT NOT NULL,
    subscription_id TEXT COLLATE nocase NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    resource_group  TEXT COLLATE nocase NOT NULL,
    type            TEXT COLLATE nocase NOT NULL,
    name            TEXT COLLATE "C" NOT NULL,
    location        TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX resources_group ON resources(subscription_id, resource_group, type);

CREATE TABLE role_assignments (
    name               TEXT COLLATE nocase PRIMARY KEY,
    tenant_id          TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    scope              TEXT NOT NULL,
    scope_key          TEXT COLLATE "C" NOT NULL,
    role_definition_id TEXT COLLATE nocase NOT NULL,
    principal_id       TEXT COLLATE "C" NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
    created_at         BIGINT NOT NULL
);
CREATE INDEX role_assignments_principal ON role_assignments(principal_id);
CREATE INDEX role_assignments_scope ON role_assignments(scope_key);

CREATE TABLE role_definitions (
    id         TEXT COLLATE nocase PRIMARY KEY,
    tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name       TEXT COLLATE nocase NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE activity_log (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY,
    id              TEXT COLLATE "C" PRIMARY KEY,
    time            BIGINT NOT NULL,
    tenant_id       TEXT COLLATE "C",
    subscription_id TEXT COLLATE nocase,
    body            TEXT NOT NULL
);
CREATE INDEX activity_log_by_subscription ON activity_log (subscription_id, time);
CREATE INDEX activity_log_by_tenant ON activity_log (tenant_id, time);

-- Storage: bytes live in the blob backend under `file_id`, or inline in `content`.
CREATE TABLE storage_accounts (
    name             TEXT COLLATE "C" PRIMARY KEY,
    id               TEXT NOT NULL,
    id_key           TEXT COLLATE "C" NOT NULL UNIQUE,
    tenant_id        TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    subscription_id  TEXT COLLATE nocase NOT NULL,
    resource_group   TEXT COLLATE nocase NOT NULL,
    location         TEXT NOT NULL,
    hns              BOOLEAN NOT NULL,
    allow_shared_key BOOLEAN NOT NULL,
    body             TEXT NOT NULL,
    key1             BYTEA NOT NULL,
    key2             BYTEA NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX storage_accounts_group ON storage_accounts(subscription_id, resource_group);

CREATE TABLE containers (
    account       TEXT COLLATE "C" NOT NULL REFERENCES storage_accounts(name) ON DELETE CASCADE,
    name          TEXT COLLATE "C" NOT NULL,
    etag          TEXT NOT NULL,
    last_modified BIGINT NOT NULL,
    metadata      TEXT NOT NULL,
    acl           TEXT,
    state         TEXT,
    deleted_at    BIGINT,
    expires_at    BIGINT,
    PRIMARY KEY (account, name)
);
CREATE INDEX containers_expiry ON containers (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE blobs (
    account             TEXT COLLATE "C" NOT NULL,
    container           TEXT COLLATE "C" NOT NULL,
    name                TEXT COLLATE "C" NOT NULL,
    etag                TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    last_modified       BIGINT NOT NULL,
    size                BIGINT NOT NULL,
    file_id             TEXT COLLATE "C" NOT NULL,
    content_type        TEXT,
    content_encoding    TEXT,
    content_language    TEXT,
    content_disposition TEXT,
    cache_control       TEXT,
    content_md5         BYTEA,
    metadata            TEXT NOT NULL,
    committed_blocks    TEXT NOT NULL,
    content             BYTEA,
    is_dir              BOOLEAN NOT NULL DEFAULT FALSE,
    acl                 TEXT,
    state               TEXT,
    PRIMARY KEY (account, container, name),
    FOREIGN KEY (account, container) REFERENCES containers(account, name) ON DELETE CASCADE
);

CREATE TABLE blocks (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    account    TEXT COLLATE "C" NOT NULL,
    container  TEXT COLLATE "C" NOT NULL,
    blob       TEXT COLLATE "C" NOT NULL,
    block_id   TEXT COLLATE "C" NOT NULL,
    size       BIGINT NOT NULL,
    file_id    TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account, container, blob, block_id),
    FOREIGN KEY (account, container) REFERENCES containers(account, name) ON DELETE CASCADE
);
CREATE INDEX blocks_age ON blocks(created_at);

-- A blob's kept states: snapshots, previous versions and deleted blobs (`kind`).
CREATE TABLE blob_snapshots (
    account             TEXT COLLATE "C" NOT NULL,
    container           TEXT COLLATE "C" NOT NULL,
    name                TEXT COLLATE "C" NOT NULL,
    kind                TEXT COLLATE "C" NOT NULL DEFAULT 'snapshot',
    snapshot            TEXT COLLATE "C" NOT NULL,
    etag                TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    last_modified       BIGINT NOT NULL,
    size                BIGINT NOT NULL,
    file_id             TEXT COLLATE "C" NOT NULL,
    content_type        TEXT,
    content_encoding    TEXT,
    content_language    TEXT,
    content_disposition TEXT,
    cache_control       TEXT,
    content_md5         BYTEA,
    metadata            TEXT NOT NULL,
    committed_blocks    TEXT NOT NULL,
    content             BYTEA,
    is_dir              BOOLEAN NOT NULL DEFAULT FALSE,
    acl                 TEXT,
    state               TEXT,
    deleted_at          BIGINT,
    expires_at          BIGINT,
    PRIMARY KEY (account, container, name, kind, snapshot),
    FOREIGN KEY (account, container) REFERENCES containers(account, name) ON DELETE CASCADE
);
CREATE INDEX blob_snapshots_expiry ON blob_snapshots (expires_at) WHERE expires_at IS NOT NULL;

-- Key vaults and their secrets, sealed as in the SQLite store.
CREATE TABLE vaults (
    name            TEXT COLLATE "C" PRIMARY KEY,
    id              TEXT NOT NULL,
    tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    subscription_id TEXT COLLATE nocase NOT NULL,
    resource_group  TEXT COLLATE nocase NOT NULL,
    location        TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    deleted_at      BIGINT
);

CREATE TABLE secrets (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,
    vault        TEXT COLLATE "C" NOT NULL REFERENCES vaults(name) ON DELETE CASCADE,
    name         TEXT COLLATE nocase NOT NULL,
    version      TEXT COLLATE "C" NOT NULL,
    created      BIGINT NOT NULL,
    updated      BIGINT NOT NULL,
    enabled      BOOLEAN NOT NULL,
    not_before   BIGINT,
    expires      BIGINT,
    content_type TEXT,
    tags         TEXT NOT NULL,
    wrapped_key  BYTEA NOT NULL,
    sealed_value BYTEA NOT NULL,
    PRIMARY KEY (vault, name, version)
);
CREATE INDEX secrets_by_time ON secrets(vault, name, created);

CREATE TABLE deleted_secrets (
    vault           TEXT COLLATE "C" NOT NULL REFERENCES vaults(name) ON DELETE CASCADE,
    name            TEXT COLLATE nocase NOT NULL,
    deleted_at      BIGINT NOT NULL,
    scheduled_purge BIGINT NOT NULL,
    PRIMARY KEY (vault, name)
);
