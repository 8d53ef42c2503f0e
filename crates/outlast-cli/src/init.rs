//! `outlast init`: writes `outlast.toml` and `outlast.key`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use outlast_engine::{keyfile, Config, Store};

const REAL_TEMPLATE: &str = r#"
# Each provider is one OpenDAL backend. `domain` names the organisation that could end it:
# two buckets at one company are one domain, and no domain may hold more than n - k shards.
# Secrets are best taken from the environment: `env = { option = "VARIABLE" }`.

[[providers]]
name = "aws"
domain = "amazon"
scheme = "s3"
options = { bucket = "my-outlast", region = "eu-west-1", root = "/outlast" }
env = { access_key_id = "AWS_ACCESS_KEY_ID", secret_access_key = "AWS_SECRET_ACCESS_KEY" }

[[providers]]
name = "azure"
domain = "microsoft"
scheme = "azblob"
options = { container = "outlast", endpoint = "https://ACCOUNT.blob.core.windows.net", account_name = "ACCOUNT" }
env = { account_key = "AZURE_STORAGE_KEY" }

[[providers]]
name = "storagebox"
domain = "hetzner"
scheme = "sftp"
options = { endpoint = "ssh://u123@u123.your-storagebox.de:23", root = "/home/outlast", key = "/home/me/.ssh/id_ed25519" }
"#;

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Creates the config and key; refuses to overwrite either.
pub async fn init(
    config: Option<&Path>,
    local: Option<&Path>,
    providers: u16,
    k: u16,
    passphrase: bool,
    json: bool,
) -> Result<()> {
    let path = config.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("outlast.toml"));
    if path.exists() {
        bail!("{} already exists; remove it first or pass --config to write elsewhere", path.display());
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key_path = dir.join("outlast.key");
    let (k, n) = if local.is_some() { (k, providers) } else { (2, 3) };
    let mut body = match local {
        Some(_) => {
            format!("# Outlast store: {k}-of-{n} over local folders. Any {k} of the {n} providers rebuild every object.\n")
        }
        None => {
            "# Outlast store over independent providers: edit the providers below, then run `outlast providers`.\n".to_string()
        }
    };
    body.push_str(&format!(
        "\n[coding]\nk = {k}\nn = {n}\n# write_quorum = {}   # shards durable before a write is acknowledged (default k: writes go on\n#                     # with up to n - k providers down; more refuses them instead)\n# segment_size = 4194304   # plaintext bytes per segment\n",
        (k + 1).min(n)
    ));
    match local {
        Some(root) => {
            std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
            let root = root.canonicalize().with_context(|| format!("cannot resolve {}", root.display()))?;
            for i in 1..=n {
                let folder = root.join(format!("local{i}"));
                std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
                body.push_str(&format!(
                    "\n[[providers]]\nname = \"local{i}\"\ndomain = \"local{i}\"\nscheme = \"fs\"\noptions = {{ root = {} }}\n",
                    toml_str(&folder.to_string_lossy())
                ));
            }
        }
        None => body.push_str(REAL_TEMPLATE),
    }
    // Validate before creating the key, so a bad request leaves nothing behind.
    if local.is_some() {
        Config::parse(&body, &path)?;
    }
    let key = if passphrase {
        let pass = std::env::var(keyfile::PASSPHRASE_ENV)
            .with_context(|| format!("--passphrase reads the passphrase from {}, which is not set", keyfile::PASSPHRASE_ENV))?;
        keyfile::create_passphrase(&key_path, &pass)?
    } else {
        keyfile::create_random(&key_path)?
    };
    let text = format!("key_fingerprint = {}\n{body}", toml_str(&key.fingerprint()));
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    if local.is_some() {
        // Each local provider's location gets its identity marker now; a real provider's gets
        // it when first used (an empty location of a new store), once the template is filled.
        let store = Store::open_with_key(Config::load(&path)?, key.clone()).await?;
        for spec in store.config().providers.clone() {
            store.claim_location(&spec).await.with_context(|| format!("cannot set up `{}`", spec.name))?;
        }
    }
    if json {
        println!("{}", serde_json::json!({ "config": path, "key": key_path, "fingerprint": key.fingerprint() }));
    } else {
        println!("wrote {} and {} (key {})", path.display(), key_path.display(), key.fingerprint());
        println!("keep a copy of {} somewhere safe: without it nothing stored can be read", key_path.display());
    }
    Ok(())
}
