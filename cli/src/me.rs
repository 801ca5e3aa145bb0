//! The logged-in user: their session, and the private key to sign and decrypt with.

use fastchat_protocol::keys::{RsaPrivateKey, RsaPublicKey};
use fastchat_protocol::names::Username;

use crate::contacts::Owner;
use crate::context::Context;
use crate::error::{CliError, Result};
use crate::home::Session;
use crate::net::client::Client;

pub struct Me {
    pub session: Session,
    pub key: RsaPrivateKey,
    pub public: RsaPublicKey,
    /// Whose contacts, and the key their server copy is encrypted under.
    pub owner: Owner,
}

impl Me {
    /// The user of this home's session, with a client for their server.
    pub fn load(ctx: &Context) -> Result<(Me, Client)> {
        let session = ctx.session()?;
        let key = ctx
            .home
            .load_private_key(session.username.as_str())?
            .ok_or_else(|| {
                CliError::Local(format!(
                    "no private key for {} in {}: log in again to restore it",
                    session.username,
                    ctx.home.dir().display()
                ))
            })?;
        let client = ctx.client(&session)?;
        let public = key.to_public_key();
        let owner = Owner::new(&session.username, &key);
        Ok((
            Me {
                session,
                key,
                public,
                owner,
            },
            client,
        ))
    }

    pub fn name(&self) -> &Username {
        &self.session.username
    }
}
