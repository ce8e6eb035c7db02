//! Secrets the way Airflow users know them: connections (`connection.rs`: the model, Airflow's
//! URI and JSON forms), encryption at rest (`cipher.rs`: Fernet, several keys for rotation) and
//! masking (`mask.rs`: secrets revealed to a try replaced by `***` in what it leaves behind).
//! Pure: no database, no network, no environment read except where a function says so.

pub mod cipher;
pub mod connection;
pub mod mask;

pub use cipher::{Cipher, CipherError};
pub use connection::{Connection, ConnectionError, KafkaClient};
pub use mask::Masker;
