//! Password hashing with argon2id, off the async workers and with bounded concurrency.
//!
//! A hash costs about 19 MiB of memory and tens of milliseconds of CPU, so at most a
//! few run at once (a login storm queues instead of exhausting memory), each on tokio's
//! blocking pool. Logins for unknown emails verify against a dummy hash so that the
//! answer takes as long as for a known email with a wrong password.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

use crate::domain::Password;

/// Why hashing failed: never the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Argon2(argon2::password_hash::Error),
    #[error("password hashing task failed: {0}")]
    Task(String),
}

/// Hashes new passwords and verifies offered ones.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// A hasher allowing one hash per available core at a time.
    pub async fn new() -> Result<Self, HashError> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let permits = Arc::new(Semaphore::new(cores.clamp(1, 16)));
        let dummy = Password::parse("dummy-password-for-unknown-emails".into()).expect("a valid literal");
        let dummy_hash = run_blocking(&permits, move || hash_now(&dummy)).await?;
        Ok(Self { permits, dummy_hash: dummy_hash.into() })
    }

    /// The PHC string (`$argon2id$...`) of `password` with a fresh random salt.
    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        run_blocking(&self.permits, move || hash_now(&password)).await
    }

    /// True when `password` matches `stored`; with no stored hash (unknown email) it
    /// spends the same effort and answers false.
    pub async fn verify(&self, password: Password, stored: Option<String>) -> Result<bool, HashError> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = run_blocking(&self.permits, move || {
            let parsed = PasswordHash::new(&hash).map_err(HashError::Argon2)?;
            Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await?;
        Ok(known && matches)
    }
}

fn hash_now(password: &Password) -> Result<String, HashError> {
    let salt = SaltString::encode_b64(&shop_kit::platform::random::<[u8; 16]>()).map_err(HashError::Argon2)?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(HashError::Argon2)
}

async fn run_blocking<T: Send + 'static>(
    permits: &Semaphore,
    work: impl FnOnce() -> Result<T, HashError> + Send + 'static,
) -> Result<T, HashError> {
    let _permit = permits.acquire().await.map_err(|e| HashError::Task(e.to_string()))?;
    if shop_kit::platform::inline_db() {
        // A simulated node: no thread the simulator cannot schedule.
        return work();
    }
    tokio::task::spawn_blocking(work).await.map_err(|e| HashError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_salted_and_verify() {
        let hasher = PasswordHasher::new().await.unwrap();
        let pw = || Password::parse("correct horse battery".into()).unwrap();
        let a = hasher.hash(pw()).await.unwrap();
        let b = hasher.hash(pw()).await.unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "every hash has its own salt");
        assert!(hasher.verify(pw(), Some(a.clone())).await.unwrap());
        let wrong = Password::parse("wrong horse battery".into()).unwrap();
        assert!(!hasher.verify(wrong, Some(a)).await.unwrap());
        let dummy = Password::parse("dummy-password-for-unknown-emails".into()).unwrap();
        assert!(!hasher.verify(dummy, None).await.unwrap(), "an unknown email never logs in");
    }
}
