-- Container registries and their content. A blob's bytes are a file of the
-- blob backend, one per digest and registry; `registry_repository_blobs` says
-- which repositories see it. Manifests are kept whole. The admin passwords are
-- sealed under the master key.
CREATE TABLE registries (
    name            TEXT PRIMARY KEY,
    id              TEXT NOT NULL,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    subscription_id TEXT NOT NULL,
    resource_group  TEXT NOT NULL COLLATE NOCASE,
    location        TEXT NOT NULL,
    body            TEXT NOT NULL,
    password1       BLOB NOT NULL,
    password2       BLOB NOT NULL,
    created_at      INTEGER NOT NULL
);

CREATE TABLE registry_blobs (
    registry   TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
    digest     TEXT NOT NULL,
    file_id    TEXT NOT NULL,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (registry, digest)
);

CREATE TABLE registry_repository_blobs (
    registry   TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest     TEXT NOT NULL,
    PRIMARY KEY (registry, repository, digest),
    FOREIGN KEY (registry, digest) REFERENCES registry_blobs(registry, digest) ON DELETE CASCADE
);

CREATE TABLE registry_manifests (
    registry   TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
    repository TEXT NOT NULL,
    digest     TEXT NOT NULL,
    media_type TEXT NOT NULL,
    body       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (registry, repository, digest)
);

CREATE TABLE registry_tags (
    registry   TEXT NOT NULL,
    repository TEXT NOT NULL,
    name       TEXT NOT NULL,
    digest     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (registry, repository, name),
    FOREIGN KEY (registry, repository, digest)
        REFERENCES registry_manifests(registry, repository, digest) ON DELETE CASCADE
);

CREATE TABLE registry_uploads (
    id         TEXT PRIMARY KEY,
    registry   TEXT NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
    repository TEXT NOT NULL,
    file_id    TEXT NOT NULL,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
