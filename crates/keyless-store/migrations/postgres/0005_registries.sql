-- Container registries and their content, as in the SQLite store: blob bytes
-- in the blob backend, one file per digest and registry; manifests whole; the
-- admin passwords sealed under the master key.
CREATE TABLE registries (
    name            TEXT COLLATE "C" PRIMARY KEY,
    id              TEXT NOT NULL,
    tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    subscription_id TEXT COLLATE nocase NOT NULL,
    resource_group  TEXT COLLATE nocase NOT NULL,
    location        TEXT NOT NULL,
    body            TEXT NOT NULL,
    password1       BYTEA NOT NULL,
    password2       BYTEA NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE registry_blobs (
    registry   TEXT COLLATE "C" NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
    digest     TEXT COLLATE "C" NOT NULL,
    file_id    TEXT COLLATE "C" NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (registry, digest)
);

CREATE TABLE registry_repository_blobs (
    registry   TEXT COLLATE "C" NOT NULL,
    repository TEXT COLLATE "C" NOT NULL,
    digest     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (registry, repository, digest),
    FOREIGN KEY (registry, digest) REFERENCES registry_blobs(registry, digest) ON DELETE CASCADE
);

CREATE TABLE registry_manifests (
    registry   TEXT COLLATE "C" NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
    repository TEXT COLLATE "C" NOT NULL,
    digest     TEXT COLLATE "C" NOT NULL,
    media_type TEXT NOT NULL,
    body       BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (registry, repository, digest)
);

CREATE TABLE registry_tags (
    registry   TEXT COLLATE "C" NOT NULL,
    repository TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    digest     TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (registry, repository, name),
    FOREIGN KEY (registry, repository, digest)
        REFERENCES registry_manifests(registry, repository, digest) ON DELETE CASCADE
);

CREATE TABLE registry_uploads (
    id         TEXT COLLATE "C" PRIMARY KEY,
    registry   TEXT COLLATE "C" NOT NULL REFERENCES registries(name) ON DELETE CASCADE,
    repository TEXT COLLATE "C" NOT NULL,
    file_id    TEXT COLLATE "C" NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
