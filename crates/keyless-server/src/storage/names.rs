//! Names of the headers every request looks up or answers with, made once: a
//! name given as a string is parsed and checked again at each use.

use axum::http::HeaderName;

macro_rules! names {
    ($($name:ident = $text:literal;)*) => {
        $(pub(crate) const $name: HeaderName = HeaderName::from_static($text);)*
    };
}

names! {
    X_MS_VERSION = "x-ms-version";
    X_MS_CLIENT_REQUEST_ID = "x-ms-client-request-id";
    X_MS_ERROR_CODE = "x-ms-error-code";
    X_KEYLESS_EXPLANATION = "x-keyless-explanation";
    X_MS_COPY_SOURCE = "x-ms-copy-source";
    X_MS_RENAME_SOURCE = "x-ms-rename-source";
    X_MS_TAGS = "x-ms-tags";
    X_MS_ENCRYPTION_KEY = "x-ms-encryption-key";
    X_MS_ENCRYPTION_KEY_SHA256 = "x-ms-encryption-key-sha256";
    X_MS_ENCRYPTION_ALGORITHM = "x-ms-encryption-algorithm";
    X_MS_ENCRYPTION_SCOPE = "x-ms-encryption-scope";
    X_MS_IF_TAGS = "x-ms-if-tags";
    X_MS_LEASE_ID = "x-ms-lease-id";
    X_MS_RANGE = "x-ms-range";
    X_MS_LEASE_STATUS = "x-ms-lease-status";
    X_MS_LEASE_STATE = "x-ms-lease-state";
    X_MS_LEASE_DURATION = "x-ms-lease-duration";
    X_MS_ACCESS_TIER = "x-ms-access-tier";
    X_MS_ACCESS_TIER_INFERRED = "x-ms-access-tier-inferred";
    X_MS_CREATION_TIME = "x-ms-creation-time";
    X_MS_BLOB_TYPE = "x-ms-blob-type";
    X_MS_SERVER_ENCRYPTED = "x-ms-server-encrypted";
    X_MS_BLOB_CONTENT_MD5 = "x-ms-blob-content-md5";
    X_MS_VERSION_ID = "x-ms-version-id";
    X_MS_IS_CURRENT_VERSION = "x-ms-is-current-version";
    CONTENT_MD5 = "content-md5";
    X_MS_BLOB_CONTENT_TYPE = "x-ms-blob-content-type";
    X_MS_BLOB_CONTENT_ENCODING = "x-ms-blob-content-encoding";
    X_MS_BLOB_CONTENT_LANGUAGE = "x-ms-blob-content-language";
    X_MS_BLOB_CONTENT_DISPOSITION = "x-ms-blob-content-disposition";
    X_MS_BLOB_CACHE_CONTROL = "x-ms-blob-cache-control";
    X_MS_CONTENT_CRC64 = "x-ms-content-crc64";
    X_MS_STRUCTURED_BODY = "x-ms-structured-body";
    X_MS_STRUCTURED_CONTENT_LENGTH = "x-ms-structured-content-length";
    X_MS_REQUEST_SERVER_ENCRYPTED = "x-ms-request-server-encrypted";
}
