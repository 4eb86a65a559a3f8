//! housekeep: a Matrix application service that indexes every event and media
//! reference on a homeserver and runs moderation commands from an admin room.
//!
//! The binary is a thin CLI over this library; tests and benchmarks use the
//! same pieces. Dependencies point one way, from the top of this list down:
//!
//! - `fuzz` (tests only): the parsers fuzzed from a corpus, on stable.
//! - [`service`]: wiring (builds the parts, registers job kinds and sinks).
//! - [`testbed`]: a real Synapse and a housekeep process, for the tests,
//!   the benches and `housekeep demo`.
//! - [`registration`]: the appservice registration file, from the config.
//! - [`bot`]: the chat front-end (admin room): inbox, commands, replies.
//! - [`web`]: the dashboard front-end: sign-in, pages, live updates.
//! - [`appservice`]: the HTTP listener; writes index rows and the bot inbox.
//! - [`crypto`]: the bot's end-to-end encryption: its device and keys, fed
//!   from the transactions; decrypts commands, encrypts replies.
//! - [`backfill`]: room history into the index, as a background job kind.
//! - [`media`]: downloads and hashes every referenced media; the hash blocklist.
//! - [`policy_lists`]: the ban lists watched; each new rule becomes the
//!   plans of the moderation kinds, posted in the admin room; `!policy`.
//! - [`moderation`]: one folder per command that acts (purge, quarantine,
//!   sanction, cleanup, room takedown): grammar, selection, plan, job kind
//!   and result text together.
//! - [`redactions`]: asks the homeserver about redactions the index cannot judge.
//! - [`stats`]: phone-home reports and index activity, summarized with charts.
//! - [`reports`]: Synapse's event reports, told to the admin room with the
//!   reported sender's footprint from the index.
//! - [`command`]: what one admin-room command is (the trait each command's
//!   args implement, the context it runs with, what it returns), the
//!   plan-and-reply of commands that act, and the runner's own commands
//!   (status, jobs, audit).
//! - [`jobs`]: the generic runner; knows no kind by name and no front-end.
//! - [`notice`]: what people read, and the sink that delivers it.
//! - [`grammar`]: the commands' shared grammar (parse pipeline, times,
//!   rooms, links, help); `bot::commands` is the registry of commands.
//! - [`moderators`]: who is a moderator (the bot's rule, which the
//!   dashboard re-checks while a session lasts).
//! - [`homeserver`]: the Client-Server and Synapse admin client.
//! - [`sign_ins`]: the dashboard's device-code sign-ins, shared in memory
//!   by the dashboard and `!dashboard`.
//! - [`serve`]: HTTP for strangers: timeouts and connection limits.
//! - [`metrics`]: what `/metrics` shows.
//! - [`store`]: all SQL, both backends.
//! - [`policy`]: policy-list rules (`m.policy.rule.*`, MSC4204/4205/4207):
//!   parsing, matching, and the rules refused for our safety; pure.
//! - [`extract`]: event JSON → index rows; pure.
//! - [`clock`], [`config`], [`text`]: leaves (`config` imports nothing of
//!   the project: YAML to typed, validated settings).
//!
//! A module imports only modules below it in this list.

pub mod appservice;
pub mod backfill;
pub mod bot;
pub mod clock;
pub mod command;
pub mod config;
pub mod crypto;
pub mod extract;
#[cfg(test)]
mod fuzz;
pub mod grammar;
pub mod homeserver;
pub mod jobs;
pub mod media;
pub mod metrics;
pub mod moderation;
pub mod moderators;
pub mod notice;
pub mod policy;
pub mod policy_lists;
pub mod redactions;
pub mod registration;
pub mod reports;
pub mod serve;
pub mod service;
pub mod sign_ins;
pub mod stats;
pub mod store;
pub mod testbed;
pub mod text;
pub mod web;
