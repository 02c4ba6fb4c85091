//! The registry side of the model: references (`docker://HOST/REPO[:TAG|@DIGEST]`), where
//! credentials are kept, challenge-driven authentication, an HTTP client that retries
//! what can be retried, pulling an image into the model and pushing one out of it, and
//! the cache that lets a second push skip every unchanged layer unread.

pub mod auth;
pub mod cache;
pub mod client;
pub mod credentials;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
mod tls;
