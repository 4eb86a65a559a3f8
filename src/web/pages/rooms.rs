//! The rooms list (busiest first, with search) and one room's page.

use super::*;

pub(in crate::web) async fn rooms(
    State(state): Shared,
    Extension(who): Extension<SignedIn>,
    Query(range): Query<PageQuery>,
) -> Response {
    or_error_page(async {
        let (first, last) = crate::stats::summary::day_span(now_ms(), range.days());
        let busiest = busiest_rooms(&state.store, range.days()).await?;
        let mut kept_since = busiest.kept_since;
        let mut rooms = busiest.value.as_ref().clone();
        let q = range.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
        if let Some(q) = q {
            // By ID among the busiest, and by name or alias as Synapse searches them.
            let found = state.names.search(q).await.unwrap_or_default();
            let found_set: HashSet<&String> = found.iter().collect();
            let lower = q.to_lowercase();
            rooms.retain(|(room, _)| room.to_lowercase().contains(&lower) || found_set.contains(room));
            let listed: HashSet<String> = rooms.iter().map(|(room, _)| room.clone()).collect();
            for room in found.iter().filter(|f| !listed.contains(*f)).take(SEARCH_EXTRA_ROOMS) {
                let days = state.store.activity_per_day(Some(room), first, last).await?;
                rooms.push((room.clone(), days.iter().map(|d| d.messages).sum()));
            }
            rooms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        }
        let ids: Vec<String> = rooms.iter().map(|(room, _)| room.clone()).collect();
        let names = state.names.names(&ids).await;
        let counted: Vec<String> = ids.iter().take(ROOMS_WITH_MEDIA).cloned().collect();
        let media = media_of_rooms(&state.store, counted).await?;
        kept_since = oldest(kept_since, media.kept_since);
        let media = media.value.as_ref();
        let by_media = range.sort.as_deref() == Some("media");
        if by_media {
            rooms.sort_by_key(|(room, n)| (std::cmp::Reverse(media.get(room).copied().unwrap_or(-1)), std::cmp::Reverse(*n)));
        }
        let search = html! {
            label { "room" input type="search" name="q" placeholder="name, #alias or !ID" value=[q]; }
            label { "order"
                select name="sort" {
                    option value="messages" selected[!by_media] { "by messages" }
                    option value="media" selected[by_media] { "by media" }
                }
            }
        };
        let content = html! {
            (range.filters(search))
            @if rooms.is_empty() {
                div.empty { "No messages in these days" @if q.is_some() { " in a room matching that" } "." }
            } @else {
                table #rooms {
                    tr { th { "room" } th { "ID" } th.num { "messages" } th.num { "media (all time)" } }
                    @for (room, n) in &rooms {
                        tr {
                            td { (names.get(room).map_or("", String::as_str)) }
                            td { a.mono href=(format!("/rooms/{}?days={}", urlencode(room), range.days())) { (room) } }
                            td.num { (n) }
                            td.num { (media.get(room).map_or("–".to_owned(), |m| m.to_string())) }
                        }
                    }
                }
                @if let Some(note) = crate::store::kept::age_note(kept_since) { p.muted { (note) } }
                p.muted { "The busiest " (ROWS) " rooms of these days by messages (and, for a search, up to " (SEARCH_EXTRA_ROOMS) " more rooms Synapse finds by name); media is counted for the first " (ROOMS_WITH_MEDIA) "." }
            }
        };
        Ok(layout(&state, "Rooms", "/rooms", &who, NEVER, content))
    }
    .await)
}

pub(in crate::web) async fn room(
    State(state): Shared,
    Extension(who): Extension<SignedIn>,
    Path(room_id): Path<String>,
    Query(range): Query<PageQuery>,
) -> Response {
    or_error_page(
        async {
            let scope = Scope::Room { room_id: room_id.clone(), named: room_id.clone() };
            let summary = Summary::load_kept(&state.store, scope, range.days()).await?;
            let kinds = room_media(&state.store, &room_id).await?;
            let kept_since = oldest(summary.kept_since, kinds.kept_since);
            let kinds = kinds.value;
            let name = state.names.names(std::slice::from_ref(&room_id)).await.remove(&room_id);
            let content = html! {
                @if let Some(name) = &name { p { "Named " strong { (name) } " on the homeserver." } }
                (range.filters(html! {}))
                @if let Some(note) = crate::store::kept::age_note(kept_since) { p.muted { (note) } }
                div.charts { (chart(&summary.chart())) }
                h2 { "Busiest senders" }
                table {
                    tr { th { "sender" } th.num { "messages" } }
                    @for (sender, n) in &summary.top_senders { tr { td.mono { (sender) } td.num { (n) } } }
                }
                h2 { "Media by kind" }
                (kind_table(&kinds))
            };
            Ok(layout(&state, &format!("Room {room_id}"), "/rooms", &who, NEVER, content))
        }
        .await,
    )
}
