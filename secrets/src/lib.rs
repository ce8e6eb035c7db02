//! Secrets the way Airflow users know them: connections (`connection.rs`: the model, Airflow's
//! URI and JSON forms) and encryption at rest (`cipher.rs`: Fernet, several keys for rotation).
//! Pure: no database, no network, no environment read except where a function says so.

pub mod cipher;
pub mod connection;

pub use cipher::{Cipher, CipherError};
pub use connection::{Connection, ConnectionError};
