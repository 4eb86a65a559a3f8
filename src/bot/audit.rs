//! Audit entries about what arrived in the admin room.

use crate::store::{AuditEntry, InboxItem};

/// An audit entry about an inbox item.
pub fn audit_for(item: &InboxItem, action: &str, command: Option<&str>, outcome: &str) -> AuditEntry {
    AuditEntry {
        actor: item.sender.clone(),
        room_id: Some(item.room_id.clone()),
        event_id: Some(item.event_id.clone()),
        action: action.to_owned(),
        command: command.map(str::to_owned),
        outcome: outcome.to_owned(),
        ..AuditEntry::default()
    }
}
