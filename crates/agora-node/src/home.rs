//! The node home: where a node's key, config, store and runtime files live, and the identity
//! derived from its key.

use std::path::{Path, PathBuf};

use agora_crypto::Keypair;
use anyhow::{bail, Context};

use crate::config::Config;

/// Config file name inside the home.
pub const CONFIG_FILE: &str = "config.toml";
/// Written by a running node once its API is bound: the `http://` URL, one line.
pub const API_ADDR_FILE: &str = "api.addr";
/// Written by a running node once libp2p listens: its dialable multiaddr with `/p2p/<peer id>`.
pub const P2P_ADDR_FILE: &str = "p2p.addr";

/// A node home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    pub fn api_addr_file(&self) -> PathBuf {
        self.root.join(API_ADDR_FILE)
    }

    pub fn p2p_addr_file(&self) -> PathBuf {
        self.root.join(P2P_ADDR_FILE)
    }

    /// Load the home's config file alone (no env or flag layers).
    pub fn load_config(&self) -> anyhow::Result<Config> {
        Ok(Config::load(
            &self.config_file(),
            &crate::config::Overrides::default(),
            &[],
        )?)
    }

    /// A path from the config, relative to the home unless absolute.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.root.join(path)
        }
    }

    /// Check that the home exists and is an initialised directory.
    pub fn check_exists(&self) -> anyhow::Result<()> {
        let root = self.root.display();
        match std::fs::metadata(&self.root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("home {root} does not exist; create it with `agora init --home {root}`")
            }
            Err(e) => bail!("cannot access home {root}: {e}"),
            Ok(m) if !m.is_dir() => bail!("home {root} is not a directory"),
            Ok(_) => {}
        }
        std::fs::read_dir(&self.root).with_context(|| format!("cannot read home {root}"))?;
        if !self.config_file().exists() {
            bail!(
                "home {root} has no {CONFIG_FILE}; initialise it with `agora init --home {root}`"
            );
        }
        Ok(())
    }

    /// Load the node key named by the config.
    pub fn load_key(&self, config: &Config) -> anyhow::Result<Keypair> {
        let path = self.resolve(&config.node.key_file);
        Ok(agora_crypto::load_key(&path)?)
    }
}

/// The libp2p peer id of a key: the same ed25519 key as the account, so a peer id and an
/// address are one identity (design §1, agora-crypto).
pub fn peer_id(key: &Keypair) -> String {
    let mut seed = key.seed();
    let kp = libp2p_identity::Keypair::ed25519_from_bytes(&mut seed)
        .expect("a 32-byte ed25519 seed is always a valid key");
    kp.public().to_peer_id().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_is_derived_from_the_account_key() {
        let key = Keypair::for_test(1);
        let id = peer_id(&key);
        assert!(id.starts_with("12D3KooW"), "{id}");
        assert_eq!(id, peer_id(&Keypair::for_test(1)));
        assert_ne!(id, peer_id(&Keypair::for_test(2)));
        // The peer id embeds the public key, which is the address.
        let parsed: libp2p_identity::PeerId = id.parse().unwrap();
        let public = libp2p_identity::PublicKey::try_decode_protobuf(&parsed.to_bytes()[2..])
            .unwrap()
            .try_into_ed25519()
            .unwrap();
        assert_eq!(public.to_bytes(), *key.address().as_bytes());
    }

    #[test]
    fn missing_home_says_how_to_create_it() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("nope"));
        let msg = home.check_exists().unwrap_err().to_string();
        assert!(
            msg.contains("does not exist") && msg.contains("agora init"),
            "{msg}"
        );
        let home = Home::new(dir.path());
        let msg = home.check_exists().unwrap_err().to_string();
        assert!(msg.contains(CONFIG_FILE), "{msg}");
    }
}
