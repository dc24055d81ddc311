//! The host key from the OS keychain (Secret Service on Linux, the Keychain
//! on macOS, the Credential Manager on Windows) through the keyring crate:
//! 32 random bytes, created on the first open of a new store and only ever
//! kept by the keychain. A store whose key the keychain no longer holds is
//! refused (`STORE_WRONG_KEY`), never given a fresh key.

use std::path::Path;
use tidesync::client::ClientError;
use tidesync::error_code::ErrorCode;
use zeroize::Zeroizing;

fn unavailable(service: &str, e: keyring::Error) -> ClientError {
    ClientError::new(
        ErrorCode::StoreWrongKey,
        format!("the OS keychain cannot be used for {service}: {e}"),
    )
}

/// The host key of the store at `db` kept under (`service`, `account`).
pub fn host_key(
    service: &str,
    account: &str,
    db: &Path,
) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    let entry = keyring::Entry::new(service, account).map_err(|e| unavailable(service, e))?;
    match entry.get_secret() {
        Ok(secret) if secret.len() == 32 => Ok(Zeroizing::new(secret)),
        Ok(secret) => Err(ClientError::new(
            ErrorCode::StoreWrongKey,
            format!(
                "the keychain entry {service}/{account} holds {} bytes, not a tidesync key",
                Zeroizing::new(secret).len()
            ),
        )),
        Err(keyring::Error::NoEntry) => {
            if tidesync_sqlcipher::envelope_path(db).exists() {
                return Err(ClientError::new(
                    ErrorCode::StoreWrongKey,
                    format!(
                        "the keychain holds no key {service}/{account} for this existing store"
                    ),
                ));
            }
            let mut key = Zeroizing::new(vec![0u8; 32]);
            getrandom::fill(&mut key).map_err(ClientError::internal)?;
            entry
                .set_secret(&key)
                .map_err(|e| unavailable(service, e))?;
            Ok(key)
        }
        Err(e) => Err(unavailable(service, e)),
    }
}
