-- Custom role definitions; the built-in roles live in code.
CREATE TABLE role_definitions (
    id                TEXT PRIMARY KEY COLLATE NOCASE,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name              TEXT NOT NULL COLLATE NOCASE,
    body              TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);
