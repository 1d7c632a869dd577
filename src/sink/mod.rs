//! Writing alert rows and recommendations to StarRocks (or MariaDB).
pub mod audit;
pub mod digests;
pub mod history;
pub mod ledger;
pub mod notifications;
pub mod schema;
pub mod starrocks;
pub mod stream_load;
