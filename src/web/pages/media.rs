//! The media page: what the index holds, by kind and by room.

use super::*;

pub(in crate::web) async fn media(
    State(state): Shared,
    Extension(who): Extension<SignedIn>,
    Query(range): Query<PageQuery>,
) -> Response {
    or_error_page(async {
        let busiest = busiest_rooms(&state.store, range.days()).await?;
        let mut kept_since = busiest.kept_since;
        let rooms = &busiest.value[..busiest.value.len().min(MEDIA_PAGE_ROOMS as usize)];
        let mut by_kind: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
        let mut per_room = Vec::new();
        for (room, _) in rooms {
            let kinds = room_media(&state.store, room).await?;
            kept_since = oldest(kept_since, kinds.kept_since);
            let kinds = kinds.value;
            for k in kinds.iter() {
                let entry = by_kind.entry(k.kind.clone()).or_default();
                entry.0 += k.refs;
                entry.1 += k.media;
                entry.2 += k.bytes;
            }
            per_room.push((room.clone(), kinds.iter().map(|k| k.media).sum::<i64>(), kinds.iter().map(|k| k.bytes).sum::<i64>()));
        }
        let ids: Vec<String> = rooms.iter().map(|(room, _)| room.clone()).collect();
        let names = state.names.names(&ids).await;
        let kinds: Vec<crate::store::KindCount> = by_kind
            .into_iter()
            .map(|(kind, (refs, media, bytes))| crate::store::KindCount { kind, refs, media, bytes })
            .collect();
        let quarantined = state.store.recent_quarantines(ROWS).await?;
        let content = html! {
            (range.filters(html! {}))
            @if let Some(note) = crate::store::kept::age_note(kept_since) { p.muted { (note) } }
            h2 { "Media of the busiest rooms, by kind" }
            p.muted { "The " (MEDIA_PAGE_ROOMS) " rooms with the most messages in these days; a media posted in several of them counts in each." }
            (kind_table(&kinds))
            @if !per_room.is_empty() {
                h2 { "By room" }
                table {
                    tr { th { "room" } th { "ID" } th.num { "media" } th.num { "downloaded bytes" } }
                    @for (room, media, size) in &per_room {
                        tr {
                            td { (names.get(room).map_or("", String::as_str)) }
                            td { a.mono href=(format!("/rooms/{}", urlencode(room))) { (room) } }
                            td.num { (media) } td.num { (bytes(*size)) }
                        }
                    }
                }
            }
            h2 { "Quarantined by housekeep" }
            @if quarantined.is_empty() {
                div.empty { "Nothing quarantined yet." }
            } @else {
                table #quarantined {
                    tr { th { "media" } th { "when" } th { "by" } th { "why" } }
                    @for q in &quarantined {
                        tr { td.mono { (q.mxc) } td { (format_ms(q.at)) } td.mono { (q.by.as_deref().unwrap_or("–")) } td { (q.reason.as_deref().unwrap_or("")) } }
                    }
                }
            }
        };
        Ok(layout(&state, "Media", "/media", &who, ON_AUDIT, content))
    }
    .await)
}
