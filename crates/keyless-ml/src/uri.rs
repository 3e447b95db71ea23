//! Data URIs: the `azureml://` forms and the storage URLs a job or data asset may
//! name, resolved to (account, container, path).

use keyless_core::Error;

use crate::datastore::Datastore;

/// A parsed data URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataUri {
    /// `azureml://datastores/<d>/paths/<p>`, or the long form naming the workspace.
    Datastore {
        /// The workspace the long form names: (subscription, resource group, workspace).
        workspace: Option<(String, String, String)>,
        /// The datastore.
        datastore: String,
        /// The path inside it.
        path: String,
    },
    /// A storage URL: `https://<a>.blob|dfs.<suffix>/<c>/<p>`, `wasbs://`, `abfss://`,
    /// or keyless's path-style `https://<host>/<a>/<c>/<p>`.
    Storage(Location),
    /// `azureml:<name>:<version>` or `azureml:<name>@latest`: a data asset.
    Asset {
        /// The asset's name.
        name: String,
        /// Its version; `None` for `@latest`.
        version: Option<String>,
    },
}

/// Where data lies on the storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The storage account.
    pub account: String,
    /// The container (or ADLS filesystem).
    pub container: String,
    /// The path inside it, without a leading `/`.
    pub path: String,
}

impl DataUri {
    /// Parses a URI. `path_style_hosts` are the `host[:port]` values of keyless's own
    /// storage endpoints, whose URLs put the account in the first path segment.
    ///
    /// # Errors
    /// [`Error`] saying which forms are understood.
    pub fn parse(uri: &str, path_style_hosts: &[&str]) -> Result<Self, Error> {
        if let Some(rest) = uri.strip_prefix("azureml://") {
            return azureml(uri, rest);
        }
        if let Some(rest) = uri.strip_prefix("azureml:") {
            let (name, version) = match rest.split_once('@') {
                Some((name, "latest")) => (name, None),
                Some(_) => {
                    return Err(Error::invalid(format!(
                        "`{uri}`: the only label keyless knows is @latest"
                    )));
                }
                None => match rest.split_once(':') {
                    Some((name, version)) => (name, Some(version.to_owned())),
                    None => (rest, None),
                },
            };
            crate::names::asset(name, "data asset name")?;
            return Ok(Self::Asset {
                name: name.to_owned(),
                version,
            });
        }
        if let Some((scheme, rest)) = uri.split_once("://") {
            return storage(uri, scheme, rest, path_style_hosts).map(Self::Storage);
        }
        Err(Error::invalid(format!(
            "`{uri}` is not a data URI keyless understands: use azureml://datastores/<d>/paths/<p>, azureml:<asset>:<version>, https://<account>.blob.<suffix>/<container>/<path>, wasbs://, abfss:// or a keyless storage URL"
        )))
    }
}

fn azureml(uri: &str, rest: &str) -> Result<DataUri, Error> {
    let segments: Vec<&str> = rest.split('/').collect();
    let (workspace, tail) = match segments.as_slice() {
        [
            "subscriptions",
            sub,
            rg_key,
            rg,
            "workspaces",
            ws,
            tail @ ..,
        ] if rg_key.eq_ignore_ascii_case("resourcegroups") => {
            let names = ((*sub).to_owned(), (*rg).to_owned(), (*ws).to_owned());
            (Some(names), tail)
        }
        ["jobs", ..] => {
            return Err(Error::invalid(format!(
                "`{uri}`: job output URIs are resolved by the jobs that produce them"
            )));
        }
        all => (None, all),
    };
    match tail {
        ["datastores", datastore, "paths", path @ ..] if !datastore.is_empty() => {
            Ok(DataUri::Datastore {
                workspace,
                datastore: (*datastore).to_owned(),
                path: path.join("/"),
            })
        }
        _ => Err(Error::invalid(format!(
            "`{uri}` is malformed: use azureml://datastores/<datastore>/paths/<path> or azureml://subscriptions/<s>/resourcegroups/<rg>/workspaces/<w>/datastores/<d>/paths/<p>"
        ))),
    }
}

fn storage(
    uri: &str,
    scheme: &str,
    rest: &str,
    path_style_hosts: &[&str],
) -> Result<Location, Error> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.split(['?', '#']).next().unwrap_or_default();
    match scheme {
        "wasbs" | "wasb" | "abfss" | "abfs" => {
            let (container, host) = authority.split_once('@').ok_or_else(|| {
                Error::invalid(format!(
                    "`{uri}` must read {scheme}://<container>@<account>.<service>.<suffix>/<path>"
                ))
            })?;
            let account = host.split('.').next().unwrap_or_default();
            location(uri, account, container, path)
        }
        "https" | "http" => {
            if path_style_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(authority))
            {
                let mut parts = path.splitn(3, '/');
                let account = parts.next().unwrap_or_default();
                let container = parts.next().unwrap_or_default();
                return location(uri, account, container, parts.next().unwrap_or_default());
            }
            let mut labels = authority.split('.');
            let account = labels.next().unwrap_or_default();
            match labels.next() {
                Some("blob" | "dfs") => {
                    let (container, path) = path.split_once('/').unwrap_or((path, ""));
                    location(uri, account, container, path)
                }
                _ => Err(Error::invalid(format!(
                    "`{uri}` is not a storage URL keyless serves: use https://<account>.blob.<suffix>/<container>/<path> or the keyless storage endpoint"
                ))),
            }
        }
        "adl" => Err(Error::invalid(format!(
            "`{uri}`: Azure Data Lake Storage Gen1 was retired on 29 February 2024"
        ))),
        other => Err(Error::invalid(format!(
            "`{uri}`: scheme `{other}` is not served by keyless"
        ))),
    }
}

fn location(uri: &str, account: &str, container: &str, path: &str) -> Result<Location, Error> {
    if account.is_empty() || container.is_empty() {
        return Err(Error::invalid(format!(
            "`{uri}` must name an account and a container"
        )));
    }
    Ok(Location {
        account: account.to_owned(),
        container: container.to_owned(),
        path: decode(path),
    })
}

fn decode(path: &str) -> String {
    // `%2F`, spaces and unicode come percent-encoded in URLs.
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Datastore {
    /// Where `path` inside this datastore lies.
    pub fn locate(&self, path: &str) -> Location {
        Location {
            account: self.account.clone(),
            container: self.container.clone(),
            path: path.trim_start_matches('/').to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uri: &str) -> Result<DataUri, Error> {
        DataUri::parse(uri, &["127.0.0.1:10000", "localhost:10000"])
    }

    fn loc(a: &str, c: &str, p: &str) -> DataUri {
        DataUri::Storage(Location {
            account: a.into(),
            container: c.into(),
            path: p.into(),
        })
    }

    #[test]
    fn every_documented_form_resolves() -> Result<(), Error> {
        assert_eq!(
            parse("azureml://datastores/mydata/paths/census.csv")?,
            DataUri::Datastore {
                workspace: None,
                datastore: "mydata".into(),
                path: "census.csv".into()
            }
        );
        for rg in ["resourcegroups", "resourceGroups"] {
            assert_eq!(
                parse(&format!(
                    "azureml://subscriptions/s1/{rg}/rg1/workspaces/ws1/datastores/d/paths/a/b.csv"
                ))?,
                DataUri::Datastore {
                    workspace: Some(("s1".into(), "rg1".into(), "ws1".into())),
                    datastore: "d".into(),
                    path: "a/b.csv".into()
                }
            );
        }
        assert_eq!(
            parse("https://acct.blob.core.windows.net/data/x/y.csv")?,
            loc("acct", "data", "x/y.csv")
        );
        assert_eq!(
            parse("https://acct.dfs.core.localhost:10000/fs/x")?,
            loc("acct", "fs", "x")
        );
        assert_eq!(
            parse("wasbs://data@acct.blob.core.windows.net/x/y.csv")?,
            loc("acct", "data", "x/y.csv")
        );
        assert_eq!(
            parse("abfss://raw@lake.dfs.core.windows.net/a%20b/%C3%A9.csv")?,
            loc("lake", "raw", "a b/é.csv")
        );
        assert_eq!(
            parse("https://127.0.0.1:10000/acct/data/census.csv?sv=1")?,
            loc("acct", "data", "census.csv")
        );
        assert_eq!(
            parse("azureml:census:3")?,
            DataUri::Asset {
                name: "census".into(),
                version: Some("3".into())
            }
        );
        assert_eq!(
            parse("azureml:census@latest")?,
            DataUri::Asset {
                name: "census".into(),
                version: None
            }
        );
        Ok(())
    }

    #[test]
    fn other_forms_are_refused_with_a_reason() {
        for (uri, words) in [
            (
                "adl://store.azuredatalakestore.net/x",
                "retired on 29 February 2024",
            ),
            ("s3://bucket/x", "scheme `s3`"),
            ("azureml://datastores/d/files/x", "malformed"),
            ("azureml://jobs/j/outputs/o/paths/x", "job output"),
            ("https://example.com/x", "not a storage URL"),
            ("wasbs://acct.blob.core.windows.net/x", "<container>@"),
            ("./local.csv", "not a data URI"),
        ] {
            let err = parse(uri)
                .err()
                .map(|e| e.message().to_owned())
                .unwrap_or_default();
            assert!(err.contains(words), "{uri}: {err}");
        }
    }
}
