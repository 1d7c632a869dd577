//! Lark: the alert-card parser (and, later, the API client and bot webhook).

pub mod card;
pub mod client;
pub mod window;
