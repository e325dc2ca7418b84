//! The operator credential the CLI sends to the CA and the aggregator
//! (`Authorization: Bearer`, docs/security.md): from a file or the
//! environment, never from the command line, where other users of the
//! machine would see it in the process list.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

/// Where the operator token comes from.
#[derive(Args, Clone, Debug, Default)]
pub struct TokenArgs {
    /// File holding the operator token (a server's first one is
    /// `operator.token` in its state directory). Default: the token in
    /// $TFMPROV_TOKEN, else the file named by $TFMPROV_TOKEN_FILE.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token: `--token-file`, else `$TFMPROV_TOKEN`, else the file in
    /// `$TFMPROV_TOKEN_FILE`; else, with an operator certificate presented
    /// (`--client-cert`), none (empty). Nothing at all is an error that
    /// says so.
    pub fn token(&self) -> Result<String> {
        if let Some(f) = &self.token_file {
            return read_token(f);
        }
        if let Ok(t) = std::env::var("TFMPROV_TOKEN") {
            if !t.trim().is_empty() {
                return Ok(t.trim().to_owned());
            }
        }
        if let Ok(f) = std::env::var("TFMPROV_TOKEN_FILE") {
            if !f.is_empty() {
                return read_token(Path::new(&f));
            }
        }
        // An operator certificate instead (--client-cert): requests go
        // without a token (tfmprov_ca::client::with_token).
        if tfmprov_tls::https_client_certificate().is_some() {
            return Ok(String::new());
        }
        bail!(
            "no operator credential: pass --token-file FILE or set TFMPROV_TOKEN_FILE (or TFMPROV_TOKEN), \
             or --client-cert/--client-key with an operator certificate; \
             a server's first operator token is operator.token in its state directory"
        )
    }
}

/// The token in `path` (surrounding whitespace removed).
pub fn read_token(path: &Path) -> Result<String> {
    let t = std::fs::read_to_string(path).with_context(|| format!("reading the operator token {}", path.display()))?;
    let t = t.trim();
    if t.is_empty() {
        bail!("{} is empty: it should hold an operator token", path.display());
    }
    Ok(t.to_owned())
}
