//! Moderation policy lists: what a rule says, and what it matches. Pure: no
//! I/O, no store. The appservice stream, the store and `!policy` build on
//! it (issue 33).
//!
//! This first part is the spec's glob-style matching ([`glob`]), which rule
//! entities use.

pub mod glob;
