//! Helpers for the tests on real servers started by `scripts/servers.sh`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use outlast_provider::ProviderSpec;

use crate::common::*;

pub fn providers_file() -> PathBuf {
    PathBuf::from(std::env::var("OUTLAST_TEST_PROVIDERS").expect("run through scripts/test.sh (OUTLAST_TEST_PROVIDERS)"))
}

pub fn servers(args: &[&str]) {
    let script = std::env::var("OUTLAST_SERVERS_SCRIPT").expect("OUTLAST_SERVERS_SCRIPT");
    let st = Command::new("bash").arg(script).args(args).status().unwrap();
    assert!(st.success(), "servers.sh {args:?} failed");
}

/// Stops a server kind; starts it again when dropped, even if the test fails.
pub struct Stopped(&'static str);

impl Stopped {
    pub fn new(kind: &'static str) -> Self {
        servers(&["stop", kind]);
        Stopped(kind)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        servers(&["start", self.0]);
    }
}

/// A fresh store over the five servers, under a unique root on each so runs do not mix.
pub fn store(dir: &Path) -> Vec<ProviderSpec> {
    #[derive(serde::Deserialize)]
    struct List {
        providers: Vec<ProviderSpec>,
    }
    let list: List = toml::from_str(&std::fs::read_to_string(providers_file()).unwrap()).unwrap();
    let run = dir.file_name().unwrap().to_string_lossy().replace(['.', '-'], "");
    let mut specs = list.providers;
    for s in &mut specs {
        let root = s.options.get("root").cloned().unwrap_or_else(|| "/".into());
        s.options.insert("root".into(), format!("{}/{run}", root.trim_end_matches('/')));
    }
    run_ok(dir, &["init", "--local", "unused", "--providers", "5", "--k", "3"]);
    let cfg = std::fs::read_to_string(dir.join("outlast.toml")).unwrap();
    let head = &cfg[..cfg.find("[[providers]]").unwrap()];
    #[derive(serde::Serialize)]
    struct Out<'a> {
        providers: &'a [ProviderSpec],
    }
    let body = toml::to_string(&Out { providers: &specs }).unwrap();
    std::fs::write(dir.join("outlast.toml"), format!("{head}{body}")).unwrap();
    // Each location is set up as that provider, as `init` does for local folders: the root
    // created where missing, the identity marker written.
    for s in &specs {
        run_ok(dir, &["provider", "reset", &s.name]);
    }
    specs
}

pub fn put_file(dir: &Path, name: &str, body: &[u8]) {
    let src = dir.join("src.bin");
    std::fs::write(&src, body).unwrap();
    run_ok(dir, &["put", "src.bin", name]);
}

pub fn check_file(dir: &Path, name: &str, body: &[u8]) {
    let dst = dir.join("dst.bin");
    let _ = std::fs::remove_file(&dst);
    run_ok(dir, &["get", name, "dst.bin"]);
    let got = std::fs::read(&dst).unwrap();
    assert!(got.len() == body.len() && got == body, "{name}: {} bytes back, {} stored", got.len(), body.len());
}

/// Appends a second provider on each server (same organisation, another root), named
/// `<kind>-2`, as evacuation targets.
pub fn add_spares(dir: &Path, specs: &[ProviderSpec]) -> Vec<ProviderSpec> {
    let mut spares = Vec::new();
    for s in specs {
        let mut spare = s.clone();
        spare.name = format!("{}-2", s.name);
        let root = s.options.get("root").cloned().unwrap_or_default();
        spare.options.insert("root".into(), format!("{root}-2"));
        let mut args: Vec<String> =
            vec!["provider".into(), "add".into(), spare.name.clone(), "--scheme".into(), spare.scheme.clone()];
        for (k, v) in &spare.options {
            args.push("--option".into());
            args.push(format!("{k}={v}"));
        }
        args.push("--domain".into());
        args.push(spare.domain.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ok(dir, &args);
        spares.push(spare);
    }
    spares
}

/// Runs a Python snippet against the server behind `spec` (boto3 and the Azure SDK are
/// installed with the servers); `ACTION` is `delete` or `create`.
pub fn bucket(spec: &ProviderSpec, action: &str) {
    let o = |k: &str| spec.options.get(k).cloned().unwrap_or_default();
    let script = match spec.scheme.as_str() {
        "s3" => format!(
            r#"
import boto3
s3 = boto3.resource("s3", endpoint_url="{}", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
b = s3.Bucket("{}")
if "{action}" == "delete":
    b.objects.all().delete(); b.delete()
else:
    b.create()
"#,
            o("endpoint"),
            o("bucket")
        ),
        "azblob" => format!(
            r#"
from azure.storage.blob import BlobServiceClient
conn = "DefaultEndpointsProtocol=http;AccountName={a};AccountKey={k};BlobEndpoint={e};"
svc = BlobServiceClient.from_connection_string(conn)
if "{action}" == "delete":
    svc.delete_container("{c}")
else:
    svc.create_container("{c}")
"#,
            a = o("account_name"),
            k = o("account_key"),
            e = o("endpoint"),
            c = o("container")
        ),
        other => panic!("no bucket to {action} for scheme {other}"),
    };
    let st = Command::new("python3").arg("-c").arg(script).status().unwrap();
    assert!(st.success(), "{action} of {}'s bucket failed", spec.name);
}
