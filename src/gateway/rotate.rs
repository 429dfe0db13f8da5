//! `devmesh secrets rotate`: every sealed credential (the organizations' and the
//! principals' own) opened with whichever configured key sealed it and sealed again under
//! the current `secrets.master_key`. Run it with the old key still in
//! `secrets.previous_master_keys`; afterwards the old key can be removed. A value
//! changed meanwhile (compare-and-set on the sealed text) is left for the next run.

use crate::sealing::{Sealed, Sealer};
use crate::storage::gateway as store;
use crate::storage::{Db, StorageError};

use super::sealed::{auth_purpose, own_purpose};

/// What a rotation did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rotation {
    /// Values sealed again under the current key.
    pub resealed: usize,
    /// Values already under the current key.
    pub current: usize,
    /// Values no configured key opens, by where they are (`tool <id>`).
    pub unreadable: Vec<String>,
    /// Values changed while the rotation ran, left as they are.
    pub skipped: usize,
}

/// Re-seals everything; needs a current master key.
pub async fn rotate(db: &Db, sealer: &Sealer) -> Result<Rotation, String> {
    if !sealer.can_seal() {
        return Err("secrets.master_key is not set: there is no key to rotate to".into());
    }
    let storage = |e: StorageError| e.to_string();
    let mut done = Rotation::default();
    for tool in store::all(db).await.map_err(storage)? {
        let Some(sealed) = &tool.auth_sealed else {
            continue;
        };
        match sealer.reseal(
            &tool.organization_id,
            &auth_purpose(&tool.id),
            &Sealed(sealed.clone()),
        ) {
            Ok(None) => done.current += 1,
            Ok(Some(new)) => {
                if store::reseal_tool(db, &tool.id, sealed, &new.0)
                    .await
                    .map_err(storage)?
                {
                    done.resealed += 1;
                } else {
                    done.skipped += 1;
                }
            }
            Err(e) => done.unreadable.push(format!("tool {}: {e}", tool.id)),
        }
    }
    for own in store::all_credentials(db).await.map_err(storage)? {
        let purpose = own_purpose(&own.tool_id, &own.owner);
        match sealer.reseal(
            &own.organization_id,
            &purpose,
            &Sealed(own.auth_sealed.clone()),
        ) {
            Ok(None) => done.current += 1,
            Ok(Some(new)) => {
                if store::reseal_credential(db, &own.tool_id, &own.owner, &own.auth_sealed, &new.0)
                    .await
                    .map_err(storage)?
                {
                    done.resealed += 1;
                } else {
                    done.skipped += 1;
                }
            }
            Err(e) => done.unreadable.push(format!(
                "the credential of {} for tool {}: {e}",
                own.owner, own.tool_id
            )),
        }
    }
    Ok(done)
}
