//! How `!room` runs: the room resolved once, the admin room refused, then
//! a plan of a takedown or a block.

use super::args::{RoomAction, RoomArgs, SetBlock, Takedown};
use super::kind::{RoomBlockKind, RoomTakedownKind};
use crate::command::{AdminCommand, Context, Executed};
use crate::grammar::ActionFlags;
use crate::notice::Notice;

impl AdminCommand for RoomArgs {
    const NAME: &'static str = "room";

    fn action_flags(&self) -> Option<&ActionFlags> {
        Some(&self.flags)
    }

    async fn run(&self, ctx: &Context<'_>) -> anyhow::Result<Executed> {
        let room = self.action.room();
        let room_id = ctx.services().homeserver.resolve_room(room.as_str()).await?;
        // The admin room carries the plans, confirmations and results:
        // housekeep cannot work without it, so it never takes it down.
        let takes_admin_room = !matches!(self.action, RoomAction::Unblock(_));
        if takes_admin_room && room_id.as_str() == ctx.item.room_id {
            let reply = Notice::new().line(&format!(
                "Refused: {room} is housekeep's admin room, where moderators command it; housekeep does not take \
                 down or block it. Nothing was planned."
            ));
            return Ok(Executed::with_outcome(reply, "refused: the admin room"));
        }
        let flags = &self.flags;
        match &self.action {
            RoomAction::Takedown(args) => {
                let takedown = Takedown { room_id, args: args.clone(), reason: flags.reason.clone() };
                ctx.plan_action::<RoomTakedownKind>("room takedown", flags, &takedown).await
            }
            RoomAction::Block(_) | RoomAction::Unblock(_) => {
                let block = matches!(self.action, RoomAction::Block(_));
                let set = SetBlock { room_id, block, reason: flags.reason.clone() };
                let name = if block { "room block" } else { "room unblock" };
                ctx.plan_action::<RoomBlockKind>(name, flags, &set).await
            }
        }
    }
}
