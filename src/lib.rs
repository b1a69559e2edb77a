//! authfetch (placeholder docs, rewritten below)
#![no_std]
extern crate alloc;

pub mod config;
pub mod error;
pub mod jwt;
pub mod session;
