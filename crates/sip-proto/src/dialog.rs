//! Dialog state (RFC 3261 §12): identifiers, CSeq, route set and remote target, and the
//! construction of requests inside a dialog.

use std::borrow::Cow;
use std::sync::Arc;

use sip_msg::typed::{CallIdRef, ContactRef, FromRef, NameAddr, RecordRouteRef, ToRef, Via};
use sip_msg::{HeaderName, Message, Method, RequestBuilder, Uri, UriRef, text_of};

/// What identifies a dialog (RFC 3261 §12): Call-ID and both tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// The Call-ID.
    pub call_id: String,
    /// Our tag (From tag of our requests).
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

/// One dialog, as seen from our side.
#[derive(Debug, Clone)]
pub struct Dialog {
    /// Identifiers.
    pub id: DialogId,
    /// Our URI with our tag, printed as the From value of our requests (printed once, when
    /// the dialog is made: no copy of a parsed name-addr per request).
    pub local_uri: String,
    /// The peer's URI with its tag, printed as the To value of our requests.
    pub remote_uri: String,
    /// Where in-dialog requests go: the peer's Contact.
    pub remote_target: Uri,
    /// The route set from Record-Route, in the order our requests must carry it; `None`
    /// when the peer's request or response had none (no allocation for it).
    route_set: Option<RouteSet>,
    /// Our last CSeq number.
    pub local_seq: u32,
    /// The peer's last CSeq number, once it sent a request.
    pub remote_seq: Option<u32>,
    /// The remote target as last handed out by [`Dialog::next_hop_shared`] when there is no
    /// route set: the dialog's requests (ACK, BYE, re-INVITE...) share one copy instead of
    /// a `Uri` and an `Arc` each. Compared with the remote target before use, so a target
    /// refresh is never missed.
    hop: Option<Arc<Uri>>,
    /// The INVITE's offer/answer in this dialog ([`OpenOffer`]; in the room the two
    /// numbers above leave, no bigger dialog).
    pub(crate) offer: OpenOffer,
}

/// Whether an offer made in the INVITE transaction (the INVITE, a reliable 1xx, the 2xx,
/// RFC 3261 §13.2.1, RFC 3262 §5) still waits for its answer in a dialog, and whose it is.
/// RFC 3264 §4: one offer at a time each way; RFC 3311 §5.1: no UPDATE offer is sent, and
/// §5.2: an UPDATE offer received is refused (491 while ours is open, 500 with Retry-After
/// while theirs is), until it is answered. Our UPDATE and re-INVITE offers are their
/// transactions' (the user agent's `crossing_refusal` looks at those).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenOffer {
    /// None made yet.
    No,
    /// Made and answered: an offer/answer of the INVITE transaction is complete in this
    /// dialog (a late-offer INVITE's 2xx then needs no offer of its own, RFC 3262 §5).
    Answered,
    /// Ours: the INVITE's offer (answered by a reliable 1xx with SDP or the 2xx), or, as the
    /// callee, our SDP in a reliable 1xx or in the 2xx to an INVITE without offer (answered
    /// by the PRACK or the ACK).
    Ours,
    /// Theirs, not answered yet: the INVITE's offer at its callee until the 2xx (or a
    /// reliable 1xx with SDP), the callee's offer in a reliable 1xx to our INVITE without
    /// offer (our PRACK carries no answer).
    Theirs,
}

impl OpenOffer {
    /// An offer waits for its answer (ours or theirs): no other offer may be made
    /// (RFC 3264 §4).
    pub(crate) fn is_open(self) -> bool {
        matches!(self, Self::Ours | Self::Theirs)
    }

    /// After an offer or answer of the INVITE transaction passed (`sdp`: the message had
    /// SDP; an unreliable 1xx's SDP is only a preview, RFC 6337 §3.1.1, and is not passed
    /// here): `mine`, sent by us, else received.
    pub(crate) fn after_sdp(self, mine: bool) -> Self {
        match (self, mine) {
            (Self::No, true) => Self::Ours,
            (Self::No, false) => Self::Theirs,
            // An answer closes the open offer; SDP again from the same side (the 2xx
            // repeating the reliable 1xx's offer) leaves it open.
            (Self::Ours, false) | (Self::Theirs, true) => Self::Answered,
            // A new offer after a complete exchange (RFC 3262 §5: the PRACK may carry one).
            (Self::Answered, true) => Self::Ours,
            (Self::Answered, false) => Self::Theirs,
            (open, _) => open,
        }
    }
}

/// Why a dialog could not be created from a message (the peer's fault, reported as a result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    /// The response or request lacks a tag where one is required.
    #[error("missing tag")]
    MissingTag,
    /// No usable Contact (RFC 3261 §12.1.1: a 2xx to INVITE must carry one).
    #[error("missing or malformed contact")]
    MissingContact,
    /// A header needed for the dialog is missing or malformed.
    #[error("missing or malformed {0}")]
    BadHeader(&'static str),
}

/// The (first) Contact's URI, read in place and copied (the owned parse gives the same URI:
/// test `dialog_uris_read_in_place_are_the_typed_ones_for_printed_values`).
fn contact_uri(msg: &Message) -> Result<Uri, DialogError> {
    match msg.headers.view::<ContactRef>() {
        Some(Ok(ContactRef::Addr(a))) => Ok(a.uri.into_owned()),
        _ => Err(DialogError::MissingContact),
    }
}

/// `addr` with its tag set to `tag`, printed: what `text_of(&addr.with_tag(tag), 96)` gives,
/// without copying the parameters when the tag is absent (appended last, as `with_tag` does)
/// or already `tag` (unchanged).
pub fn tagged_text(addr: NameAddr, tag: &str) -> String {
    match addr.params.get("tag") {
        None => {
            let mut text = text_of(&addr, 96 + tag.len());
            text.push_str(";tag=");
            text.push_str(tag);
            text
        }
        Some(Some(v)) if v == tag => text_of(&addr, 96),
        _ => text_of(&addr.with_tag(tag), 96),
    }
}

/// True when the parameters after a name-addr's `>` include a `tag` (any case, with a value
/// or not).
fn has_tag_param(value: &str) -> bool {
    value.find('>').is_some_and(|end| {
        value[end + 1..].split(';').skip(1).any(|p| {
            p.split('=')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case("tag"))
        })
    })
}

/// One side of a dialog from `msg`'s From or To (`name`): its tag (`set_tag`, or the one the
/// header carries: `MissingTag` without) and the value with that tag, as [`tagged_text`]
/// prints it. The header is read once, in place: when it is a name-addr with no display
/// name (`<uri>;params`, as this agent and most peers print it) whose tag is absent or
/// already the one, the text is the value as received, with `;tag=TAG` appended when it had
/// none, not even a valueless one (where `with_tag` puts it): the typed print's text for such values (test
/// `dialog_uris_read_in_place_are_the_typed_ones_for_printed_values`). Other forms (a display
/// name, which the typed print re-quotes; a bare addr-spec; another tag) take the typed path.
fn side(
    msg: &Message,
    name: &HeaderName,
    set_tag: Option<&str>,
) -> Result<(String, String), DialogError> {
    side_noting(msg, name, set_tag, None)
}

/// [`side`], also writing the From's URI as the owned URI prints it into `from_uri` when
/// given (the From is read once for both: the caller reported with an incoming call).
fn side_noting(
    msg: &Message,
    name: &HeaderName,
    set_tag: Option<&str>,
    from_uri: Option<&mut String>,
) -> Result<(String, String), DialogError> {
    let what = if *name == HeaderName::From {
        "From"
    } else {
        "To"
    };
    let bad = DialogError::BadHeader(what);
    let value = msg.headers.value(name).ok_or(bad)?;
    let current = if *name == HeaderName::From {
        let from = msg.headers.view::<FromRef>().ok_or(bad)?.map_err(|_| bad)?;
        if let Some(out) = from_uri {
            // Writing into a String never fails.
            let _ = from.0.uri.into_owned().write_to(out);
        }
        from.tag()
    } else {
        msg.headers
            .view::<ToRef>()
            .ok_or(bad)?
            .map_err(|_| bad)?
            .tag()
    };
    let tag = match (set_tag, &current) {
        (Some(t), _) => t.to_owned(),
        (None, Some(t)) => t.clone().into_owned(),
        (None, None) => return Err(DialogError::MissingTag),
    };
    let text = match current.as_deref() {
        _ if !value.starts_with('<') => None,
        // A `tag` with no value (`<uri>;tag`): the typed path replaces it.
        None if has_tag_param(value) => None,
        None => {
            let mut text = String::with_capacity(value.len() + 5 + tag.len());
            text.push_str(value);
            text.push_str(";tag=");
            text.push_str(&tag);
            Some(text)
        }
        Some(t) if t == tag => Some(value.to_owned()),
        Some(_) => None,
    };
    let text = match text {
        Some(text) => text,
        None => {
            let addr = if *name == HeaderName::From {
                msg.from().ok_or(bad)?.0
            } else {
                msg.to().ok_or(bad)?.0
            };
            tagged_text(addr, &tag)
        }
    };
    Ok((tag, text))
}

/// A dialog's route set (RFC 3261 §12.1.1, §12.1.2): fixed when the dialog is made (a
/// target refresh changes the remote target only, §12.2), so it is kept as the text each
/// Route value is printed from, and the first entry's URI (the next hop, and whether it is
/// a strict router) read once.
/// Two blocks (the text and the URI), inline in the dialog in the room of the list of
/// owned name-addrs it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RouteSet {
    /// Each entry as our requests' Route values print it, in their order, one a line (a
    /// header value read holds no line feed).
    text: Box<str>,
    /// The URI of the first entry.
    first: Arc<Uri>,
}

impl RouteSet {
    /// The route set of these entries' texts (each a name-addr), in this order; `None` when
    /// there is none or the first does not read.
    #[cfg(test)]
    fn of(entries: &[&str]) -> Option<Self> {
        let first = sip_msg::typed::NameAddrRef::parse(entries.first()?)
            .ok()?
            .uri
            .into_owned();
        Some(Self {
            text: entries.join("\n").into_boxed_str(),
            first: Arc::new(first),
        })
    }

    /// The entries, in the order our requests carry them.
    fn entries(&self) -> std::str::Split<'_, char> {
        self.text.split('\n')
    }

    /// The first route is a strict router (its URI has no `lr`, RFC 3261 §16.12.1.2).
    fn strict(&self) -> bool {
        self.first.as_sip().is_some_and(|u| !u.is_loose_route())
    }
}

/// The route set of `msg`'s Record-Route entries (read in place, entries that do not read
/// left out), `reversed` for the UAC (§12.1.2); `None` without any.
///
/// An entry `<uri>[;params]` (how proxies print it) is kept as received, as a proxy expects
/// it back; another form (a display name, which the typed print re-quotes; a bare
/// addr-spec, whose parameters would be the header's once printed without `<>`) as the
/// typed print gives it.
fn record_routes(msg: &Message, reversed: bool) -> Option<RouteSet> {
    // Room for the lines' values and a line feed between two: exactly the text for the
    // usual one entry a line, so that it is kept without a copy into a smaller block (the
    // entries as received fit in it, each line feed in a line replacing at least a comma).
    let (room, lines) = (msg.headers.get_all(&HeaderName::RecordRoute))
        .fold((0, 0), |(room, lines), h| {
            (room + h.value().len(), lines + 1)
        });
    if lines == 0 {
        return None;
    }
    let room = room + lines - 1;
    let mut entries = String::with_capacity(room);
    // Reversed (the UAC's), each entry goes in front of those before it.
    let mut put = |entry: &str| {
        if reversed {
            if !entries.is_empty() {
                entries.insert(0, '\n');
            }
            entries.insert_str(0, entry);
        } else {
            if !entries.is_empty() {
                entries.push('\n');
            }
            entries.push_str(entry);
        }
    };
    // The URI our requests' route set starts with: the first entry read, or the last
    // (reversed); made owned once, at the end (or already owned for a typed entry).
    let mut first: Option<Result<UriRef<'_>, Uri>> = None;
    for (text, entry) in msg.headers.view_all_texts::<RecordRouteRef>() {
        let Ok(RecordRouteRef(entry)) = entry else {
            continue;
        };
        if text.starts_with('<') {
            put(text);
            if first.is_none() || reversed {
                first = Some(Ok(entry.uri));
            }
        } else {
            let owned = entry.into_owned();
            put(&text_of(&owned, text.len() + 4));
            if first.is_none() || reversed {
                first = Some(Err(owned.uri));
            }
        }
    }
    let first = match first? {
        Ok(read) => read.into_owned(),
        Err(owned) => owned,
    };
    Some(RouteSet {
        // Exact room (a line that did not read, or spaces after commas, leave some over).
        text: entries.into_boxed_str(),
        first: Arc::new(first),
    })
}

impl Dialog {
    /// The UAC side, from our request and a 1xx/2xx response carrying a To tag (§12.1.2):
    /// the route set is the Record-Route of the response, reversed.
    pub fn from_uac(request: &Message, response: &Message) -> Result<Self, DialogError> {
        let local = side(request, &HeaderName::From, None)?;
        Self::from_uac_with(request, local, response)
    }

    /// [`Dialog::from_uac`] for a request whose From the caller printed itself as
    /// `["name" ]<uri>;tag=local_tag` (our INVITE): the From value is
    /// our side's text as it stands, not read again (checked against the reading in debug
    /// builds).
    pub fn from_uac_tagged(
        request: &Message,
        local_tag: &str,
        response: &Message,
    ) -> Result<Self, DialogError> {
        let from = request
            .headers
            .value(&HeaderName::From)
            .ok_or(DialogError::BadHeader("From"))?;
        let local = (local_tag.to_owned(), from.to_owned());
        // The tag as read; the text as printed (a display name stays quoted as we wrote it,
        // where the typed print would drop the quotes of a name of tokens).
        debug_assert_eq!(
            side(request, &HeaderName::From, None).ok().map(|s| s.0),
            Some(local.0.clone()),
            "our From is `[\"name\" ]<uri>;tag=local_tag`"
        );
        Self::from_uac_with(request, local, response)
    }

    /// [`Dialog::from_uac`] for a 2xx to INVITE that breaks the rules a dialog is built on,
    /// only to ACK it and end it with BYE (RFC 3261 §13.2.2.4: the UAC core ACKs every 2xx,
    /// else its UAS retransmits it until Timer H and keeps its dialog): without Contact
    /// (§12.1.1 requires one) the remote target is `target`, the INVITE's Request-URI (what
    /// reached the UAS); without To tag the remote tag is null, as §12.1.2 says for RFC 2543
    /// peers (the To value is kept as received). Other missing headers are still errors.
    pub fn from_uac_lenient(
        request: &Message,
        response: &Message,
        target: Uri,
    ) -> Result<Self, DialogError> {
        let local = side(request, &HeaderName::From, None)?;
        let remote = match side(response, &HeaderName::To, None) {
            Err(DialogError::MissingTag) => (
                String::new(),
                response
                    .headers
                    .value(&HeaderName::To)
                    .ok_or(DialogError::BadHeader("To"))?
                    .to_owned(),
            ),
            r => r?,
        };
        Self::from_sides(request, local, remote, response, Some(target))
    }

    /// The UAC side with our tag and From text given.
    fn from_uac_with(
        request: &Message,
        local: (String, String),
        response: &Message,
    ) -> Result<Self, DialogError> {
        let remote = side(response, &HeaderName::To, None)?;
        Self::from_sides(request, local, remote, response, None)
    }

    /// The UAC side from both sides' tags and texts; the remote target is the response's
    /// Contact, or `target` when it has none and one is given.
    fn from_sides(
        request: &Message,
        (local_tag, local_uri): (String, String),
        (remote_tag, remote_uri): (String, String),
        response: &Message,
        target: Option<Uri>,
    ) -> Result<Self, DialogError> {
        let remote_target = match (contact_uri(response), target) {
            (Ok(uri), _) => uri,
            (Err(_), Some(uri)) => uri,
            (Err(e), None) => return Err(e),
        };
        let call_id = request.call_id().ok_or(DialogError::BadHeader("Call-ID"))?;
        let route_set = record_routes(response, true);
        Ok(Self {
            local_uri,
            remote_uri,
            id: DialogId {
                call_id,
                local_tag,
                remote_tag,
            },
            remote_target,
            route_set,
            local_seq: request.cseq().map_or(1, |c| c.seq),
            remote_seq: None,
            hop: None,
            offer: OpenOffer::No,
        })
    }

    /// The UAS side, from the received request and the tag we chose (§12.1.1): the route
    /// set is the request's Record-Route in order.
    pub fn from_uas(request: &Message, local_tag: &str) -> Result<Self, DialogError> {
        Self::from_uas_noting(request, local_tag, None)
    }

    /// [`Dialog::from_uas`], also writing the From's URI as its owned form prints it into
    /// `from_uri` (what the user agent's incoming-call event reports), from the same reading of
    /// the From. Written before any other check: on an error it may hold the URI or nothing.
    pub(crate) fn from_uas_noting(
        request: &Message,
        local_tag: &str,
        from_uri: Option<&mut String>,
    ) -> Result<Self, DialogError> {
        let (remote_tag, remote_uri) = side_noting(request, &HeaderName::From, None, from_uri)?;
        let (_, local_uri) = side(request, &HeaderName::To, Some(local_tag))?;
        let call_id = request.call_id().ok_or(DialogError::BadHeader("Call-ID"))?;
        Ok(Self {
            local_uri,
            remote_uri,
            id: DialogId {
                call_id,
                local_tag: local_tag.to_owned(),
                remote_tag,
            },
            remote_target: contact_uri(request)?,
            route_set: record_routes(request, false),
            local_seq: 0,
            remote_seq: request.cseq().map(|c| c.seq),
            hop: None,
            offer: OpenOffer::No,
        })
    }

    /// Where an in-dialog request goes first: the first route if any, else the remote target.
    pub fn next_hop(&self) -> Uri {
        self.next_hop_ref().clone()
    }

    fn next_hop_ref(&self) -> &Uri {
        self.route_set
            .as_ref()
            .map_or(&self.remote_target, |r| &r.first)
    }

    /// [`Dialog::next_hop`], shared: the same `Arc` for each request while the next hop
    /// stays the same (the route set's first entry, else the remote target until a target
    /// refresh changes it).
    pub fn next_hop_shared(&mut self) -> Arc<Uri> {
        if let Some(routes) = &self.route_set {
            return Arc::clone(&routes.first);
        }
        if let Some(hop) = &self.hop
            && **hop == self.remote_target
        {
            return Arc::clone(hop);
        }
        let hop = Arc::new(self.remote_target.clone());
        self.hop = Some(Arc::clone(&hop));
        hop
    }

    /// The route set's entries as our requests' Route values print them, in their order
    /// (none without a route set).
    pub fn route_set(&self) -> impl Iterator<Item = &str> {
        self.route_set.iter().flat_map(RouteSet::entries)
    }

    /// A new in-dialog request (§12.2.1.1) with the next CSeq (ACK and CANCEL reuse the
    /// INVITE's number: pass `cseq` for them). Loose routing puts the remote target in the
    /// Request-URI and the route set in Route; a strict first route (no `lr`) becomes the
    /// Request-URI and the remote target goes last in Route.
    pub fn request(&mut self, method: Method, via: Via, cseq: Option<u32>) -> RequestBuilder {
        self.request_via_text(method, text_of(&via, 96), cseq)
    }

    /// [`Dialog::request`] with the Via value already printed.
    pub fn request_via_text(
        &mut self,
        method: Method,
        via: String,
        cseq: Option<u32>,
    ) -> RequestBuilder {
        self.request_via(method, |b| b.via_text(via), 0, cseq)
    }

    /// [`Dialog::request`] with the Via value written by `via` straight into the builder's
    /// one string (no `String` of its own), about `via_len` bytes.
    pub fn request_via_with(
        &mut self,
        method: Method,
        via: impl FnOnce(&mut String),
        via_len: usize,
        cseq: Option<u32>,
    ) -> RequestBuilder {
        self.request_via(method, |b| b.via_with(via), via_len, cseq)
    }

    fn request_via(
        &mut self,
        method: Method,
        via: impl FnOnce(RequestBuilder) -> RequestBuilder,
        via_len: usize,
        cseq: Option<u32>,
    ) -> RequestBuilder {
        let seq = match cseq {
            Some(s) => s,
            None => {
                self.local_seq += 1;
                self.local_seq
            }
        };
        let routes = self.route_set.as_ref();
        let strict = routes.is_some_and(RouteSet::strict);
        let uri = match routes {
            Some(r) if strict => (*r.first).clone(),
            _ => self.remote_target.clone(),
        };
        // The kept texts and the route set are written into the builder's one string: one
        // allocation for all of them, not a `String` per value.
        let mut b = via(RequestBuilder::new(method, uri).reserve_text(
            via_len
                + self.local_uri.len()
                + self.remote_uri.len()
                + self.id.call_id.len()
                + routes.map_or(0, |r| r.text.len()),
        ));
        // Written straight from the route set's text (no copy of it); a strict first route
        // is the Request-URI instead, and the remote target goes last.
        let last = strict.then(|| NameAddr::new(self.remote_target.clone()));
        for r in self.route_set().skip(usize::from(strict)) {
            b = b.route_with(|s| s.push_str(r));
        }
        if let Some(last) = last {
            b = b.route(last);
        }
        b.from_with(|s| s.push_str(&self.local_uri))
            .to_with(|s| s.push_str(&self.remote_uri))
            .call_id_with(|s| s.push_str(&self.id.call_id))
            .cseq(seq)
    }

    /// Checks an in-dialog request's CSeq (§12.2.2): lower than the last one → 500.
    pub fn accept_remote_cseq(&mut self, seq: u32) -> bool {
        match self.remote_seq {
            Some(last) if seq <= last => false,
            _ => {
                self.remote_seq = Some(seq);
                true
            }
        }
    }

    /// Updates the remote target from a target-refresh request or response (re-INVITE, UPDATE).
    pub fn refresh_target(&mut self, msg: &Message) {
        if let Ok(uri) = contact_uri(msg) {
            self.remote_target = uri;
        }
    }
}

/// True when `msg` is inside the dialog `d` (Call-ID and both tags match, from the receiver's view).
pub fn matches(d: &DialogId, msg: &Message, is_request: bool) -> bool {
    DialogIds::read(msg).is_some_and(|ids| ids.matches(d, is_request))
}

/// What matches a message to a dialog: its Call-ID and its From and To tags, read once in
/// place (no copy) and compared with as many dialogs as needed ([`matches`] for one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogIds<'a> {
    /// The Call-ID.
    pub call_id: &'a str,
    /// The From tag.
    pub from_tag: Option<Cow<'a, str>>,
    /// The To tag.
    pub to_tag: Option<Cow<'a, str>>,
}

impl<'a> DialogIds<'a> {
    /// Call-ID, From and To of `msg`; `None` when one is missing or malformed (such a
    /// message matches no dialog).
    pub fn read(msg: &'a Message) -> Option<Self> {
        let to = msg.headers.view::<ToRef>()?.ok()?;
        Self::read_with_to_tag(msg, to.tag())
    }

    /// [`DialogIds::read`] for a caller that has read the To header already (well formed:
    /// its tag is `to_tag`): Call-ID and From are read.
    pub fn read_with_to_tag(msg: &'a Message, to_tag: Option<Cow<'a, str>>) -> Option<Self> {
        let h = &msg.headers;
        let call_id = h.view::<CallIdRef>()?.ok()?.0;
        let from_tag = h.view::<FromRef>()?.ok()?.tag();
        Some(Self {
            call_id,
            from_tag,
            to_tag,
        })
    }

    /// True when the message is of dialog `d`: a request's To tag is our tag and its From
    /// tag the peer's; a response's the other way round (RFC 3261 §12).
    pub fn matches(&self, d: &DialogId, is_request: bool) -> bool {
        let (local, remote) = if is_request {
            (&self.to_tag, &self.from_tag)
        } else {
            (&self.from_tag, &self.to_tag)
        };
        self.call_id == d.call_id
            && local.as_deref() == Some(&d.local_tag)
            && remote.as_deref() == Some(&d.remote_tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialog_uris_read_in_place_are_the_typed_ones_for_printed_values() {
        // Values as our agent and most peers print them (name-addr forms), and forms the
        // in-place path leaves to the typed one (a bare addr-spec, another tag): the
        // dialog's From/To texts are what the typed path (`tagged_text`) gives.
        for (from, to) in [
            ("<sip:alice@a.example>;tag=ft", "<sip:bob@b.example>"),
            (
                "\"Alice A\" <sip:alice@a.example;transport=tcp>;x=1;tag=ft",
                "\"Bob\" <sip:bob@b.example:5070>;y",
            ),
            ("sip:alice@a.example;tag=ft", "sip:bob@b.example"),
            (
                "<sip:alice@a.example>;tag=ft",
                "<sip:bob@b.example>;tag=other",
            ),
        ] {
            let raw = format!(
                "INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
From: {from}\r\nTo: {to}\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\n\
Content-Length: 0\r\n\r\n"
            );
            let req = Message::parse(raw.as_bytes()).unwrap();
            let d = Dialog::from_uas(&req, "lt").unwrap();
            let typed_from = NameAddr::parse(from).unwrap();
            let typed_to = NameAddr::parse(to).unwrap();
            assert_eq!(
                d.remote_uri,
                tagged_text(typed_from.clone(), "ft"),
                "{from}"
            );
            assert_eq!(d.local_uri, tagged_text(typed_to, "lt"), "{to}");
            assert_eq!(d.id.remote_tag, "ft");
            // The UAC side, from a response tagged "rt".
            let mut resp = Message::response_to(&req, 200, "OK", Some("rt"));
            resp.headers.push(sip_msg::Header::new(
                HeaderName::Contact,
                "<sip:bob@192.0.2.2>",
            ));
            let d = Dialog::from_uac(&req, &resp).unwrap();
            assert_eq!(d.local_uri, tagged_text(typed_from, "ft"), "{from}");
            // (`response_to` keeps a tag the request's To had.)
            let resp_to = resp.to().unwrap().0;
            let rt = resp_to.tag().unwrap();
            assert_eq!(d.remote_uri, tagged_text(resp_to, &rt), "{to}");
            assert_eq!(
                (d.id.local_tag.as_str(), d.id.remote_tag.as_str()),
                ("ft", rt.as_str())
            );
            // Our own request (`<uri>;tag=…` as we print it): the dialog made without
            // reading its From again is the same.
            if from.starts_with('<') {
                let t = Dialog::from_uac_tagged(&req, "ft", &resp).unwrap();
                assert_eq!(
                    (
                        &t.id,
                        &t.local_uri,
                        &t.remote_uri,
                        &t.remote_target,
                        t.local_seq
                    ),
                    (
                        &d.id,
                        &d.local_uri,
                        &d.remote_uri,
                        &d.remote_target,
                        d.local_seq
                    ),
                    "{from}"
                );
                assert_eq!(t.route_set, d.route_set);
            }
        }
        // No From tag: refused as before.
        let raw = "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@h>\r\n\
To: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:a@h>\r\nContent-Length: 0\r\n\r\n";
        let req = Message::parse(raw.as_bytes()).unwrap();
        assert_eq!(
            Dialog::from_uas(&req, "lt").unwrap_err(),
            DialogError::MissingTag
        );
    }

    #[test]
    fn contacts_and_route_sets_read_in_place_are_the_typed_ones() {
        use sip_msg::typed::{Contact, RecordRoute};
        for (contact, rr) in [
            ("<sip:alice@192.0.2.1>", ""),
            (
                "<sip:alice@192.0.2.1:5070;transport=tcp>;expires=60",
                "Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr;x=1>\r\n",
            ),
            (
                "\"Alice\" <sips:alice@[2001:db8::1]:5061;ob>",
                "Record-Route: <sip:p1.example;lr>\r\nRecord-Route: \"P\" <sip:10.0.0.1:5080;transport=udp;lr>\r\n",
            ),
            (
                "sip:%61lice@h.example;user=phone",
                "Record-Route: <sip:p1.example>\r\n",
            ),
        ] {
            let raw = format!(
                "INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
From: <sip:alice@a.example>;tag=ft\r\nTo: <sip:bob@b.example>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
Contact: {contact}\r\n{rr}Content-Length: 0\r\n\r\n"
            );
            let req = Message::parse(raw.as_bytes()).unwrap();
            let d = Dialog::from_uas(&req, "lt").unwrap();
            let Some(Ok(Contact::Addr(typed))) = req.headers.typed::<Contact>() else {
                panic!("{contact}");
            };
            assert_eq!(d.remote_target, typed.uri, "{contact}");
            let routes: Vec<NameAddr> = req
                .headers
                .typed_all::<RecordRoute>()
                .into_iter()
                .map(|r| r.unwrap().0)
                .collect();
            // Each kept text reads as the typed entry; `<uri>;params` is kept as received.
            let kept: Vec<NameAddr> = (d.route_set())
                .map(|r| NameAddr::parse(r).unwrap())
                .collect();
            assert_eq!(kept, routes, "{rr}");
            for r in d.route_set().filter(|r| r.starts_with('<')) {
                assert!(rr.contains(r), "{r} is not as received in {rr}");
            }
            assert_eq!(
                d.route_set.as_ref().map(|r| (*r.first).clone()),
                routes.first().map(|r| r.uri.clone()),
                "{rr}"
            );
        }
    }

    /// A dialog keeps its route set for its whole life: the list has room for exactly its
    /// entries (collected from a filtering iterator it had room for 4 of 224 bytes each),
    /// whether the entries come one a line or several on one line, on either side.
    #[test]
    fn route_sets_are_kept_in_lists_of_their_exact_size() {
        for (rr, n) in [
            ("", 0),
            ("Record-Route: <sip:p1.example;lr>\r\n", 1),
            (
                "Record-Route: <sip:p1.example;lr>\r\nRecord-Route: <sip:p2.example;lr>\r\n",
                2,
            ),
            (
                "Record-Route: <sip:p1.example;lr>, \"P\" <sip:10.0.0.1:5080;lr>, <sip:p3;lr>\r\n",
                3,
            ),
            (
                "Record-Route: <sip:p1.example;lr>\r\nRecord-Route: <sip:p2;lr>, <sip:p3;lr>\r\n",
                3,
            ),
        ] {
            let req = Message::parse(format!(
                "INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
From: <sip:alice@a.example>;tag=ft\r\nTo: <sip:bob@b.example>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.1>\r\n{rr}Content-Length: 0\r\n\r\n"
            ).as_bytes())
            .unwrap();
            // One text, no room over: the entries and a line feed between two.
            let room = |d: &Dialog| {
                let entries: Vec<&str> = d.route_set().collect();
                assert_eq!(
                    d.route_set.as_ref().map_or(0, |r| r.text.len()),
                    entries
                        .iter()
                        .map(|e| e.len() + 1)
                        .sum::<usize>()
                        .saturating_sub(1)
                );
                entries.len()
            };
            let uas = Dialog::from_uas(&req, "lt").unwrap();
            assert_eq!(uas.route_set().count(), n, "{rr}");
            assert_eq!(room(&uas), n, "{rr}");
            let resp = Message::parse(format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
From: <sip:alice@a.example>;tag=ft\r\nTo: <sip:bob@b.example>;tag=tt\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:bob@192.0.2.2>\r\n{rr}Content-Length: 0\r\n\r\n"
            ).as_bytes())
            .unwrap();
            let uac = Dialog::from_uac(&req, &resp).unwrap();
            assert_eq!(uac.route_set().count(), n, "{rr}");
            assert_eq!(room(&uac), n, "{rr}");
            // The UAC's is the UAS's reversed (§12.1.2), its first URI the UAS's last.
            let mut reversed: Vec<&str> = uas.route_set().collect();
            reversed.reverse();
            assert_eq!(uac.route_set().collect::<Vec<_>>(), reversed, "{rr}");
            if n > 0 {
                let last = NameAddr::parse(uas.route_set().last().unwrap())
                    .unwrap()
                    .uri;
                assert_eq!(uac.next_hop(), last, "{rr}");
            }
        }
    }

    #[test]
    fn in_dialog_requests_print_the_dialogs_texts_as_owned_copies_did() {
        // The dialog writes its From, To, Call-ID and route set into the builder's one
        // string. The request is byte for byte the one built from owned copies (the way it
        // was made before), with no route set, a loose one (RFC 3261 §12.2.1.1: the remote
        // target is the Request-URI) and a strict one (the first route is the Request-URI,
        // the remote target goes last in Route).
        for rr in [
            "",
            "Record-Route: <sip:p1.example;lr>, \"P\" <sip:10.0.0.1:5080;transport=udp;lr>\r\n",
            "Record-Route: <sip:p1.example>\r\nRecord-Route: <sip:p2.example;lr>\r\n",
        ] {
            let raw = format!(
                "INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
From: \"Alice\" <sip:alice@a.example>;tag=ft\r\nTo: <sip:bob@b.example>\r\nCall-ID: c1@a\r\n\
CSeq: 7 INVITE\r\nContact: <sip:alice@192.0.2.1:5070>\r\n{rr}Content-Length: 0\r\n\r\n"
            );
            let req = Message::parse(raw.as_bytes()).unwrap();
            let mut d = Dialog::from_uas(&req, "lt").unwrap();
            let via = "SIP/2.0/UDP b.example;branch=z9hG4bK2";
            let strict = !rr.is_empty() && !rr.contains("p1.example;lr");
            let mut owned = RequestBuilder::new(
                Method::Bye,
                if strict {
                    (*d.route_set.as_ref().unwrap().first).clone()
                } else {
                    d.remote_target.clone()
                },
            )
            .via_text(via.to_owned())
            .from_text(d.local_uri.clone())
            .to_text(d.remote_uri.clone())
            .call_id(d.id.call_id.clone())
            .cseq(d.local_seq + 1);
            if strict {
                for r in d.route_set().skip(1) {
                    owned = owned.route(NameAddr::parse(r).unwrap());
                }
                owned = owned.route(NameAddr::new(d.remote_target.clone()));
            } else {
                for r in d.route_set() {
                    owned = owned.route(NameAddr::parse(r).unwrap());
                }
            }
            let want = String::from_utf8(owned.build().to_bytes()).unwrap();
            let got = d
                .request_via_text(Method::Bye, via.to_owned(), None)
                .build();
            assert_eq!(String::from_utf8(got.to_bytes()).unwrap(), want, "{rr}");
            assert_eq!(got.call_id().as_deref(), Some("c1@a"));
            assert_eq!(
                got.headers.value(&HeaderName::From),
                Some("<sip:bob@b.example>;tag=lt")
            );
            // The typed path's text of the peer's From (its display name as it prints it).
            assert_eq!(
                got.headers.value(&HeaderName::To),
                Some(d.remote_uri.as_str())
            );
            assert!(d.remote_uri.ends_with("<sip:alice@a.example>;tag=ft"));
            assert_eq!(
                got.headers.get_all(&HeaderName::Route).count(),
                d.route_set().count(),
                "{rr}"
            );
            if strict {
                // The strict first route is the Request-URI; the remote target goes last.
                assert_eq!(got.request_uri().unwrap().to_string(), "sip:p1.example");
                let last = got.headers.get_all(&HeaderName::Route).last().unwrap();
                assert_eq!(last.value(), "<sip:alice@192.0.2.1:5070>");
            }
        }
    }

    #[test]
    fn the_shared_next_hop_follows_the_route_set_and_the_remote_target() {
        // One `Arc` for the dialog's requests while the next hop stays; a new one once the
        // remote target (no route set) or the first route changes (RFC 3261 §12.2.1.1:
        // the first route, else the remote target).
        let raw = "INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
From: <sip:alice@a.example>;tag=ft\r\nTo: <sip:bob@b.example>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.1:5070>\r\nContent-Length: 0\r\n\r\n";
        let req = Message::parse(raw.as_bytes()).unwrap();
        let mut d = Dialog::from_uas(&req, "lt").unwrap();
        let first = d.next_hop_shared();
        assert_eq!(*first, d.next_hop());
        assert_eq!(first.to_string(), "sip:alice@192.0.2.1:5070");
        let again = d.next_hop_shared();
        assert!(Arc::ptr_eq(&first, &again));
        // A target refresh (re-INVITE's Contact) moves the next hop.
        let refresh =
            Message::parse(raw.replace("192.0.2.1:5070", "192.0.2.2:5072").as_bytes()).unwrap();
        d.refresh_target(&refresh);
        let moved = d.next_hop_shared();
        assert!(!Arc::ptr_eq(&first, &moved));
        assert_eq!(moved.to_string(), "sip:alice@192.0.2.2:5072");
        // A route set set by hand: its first entry is the next hop.
        d.route_set = RouteSet::of(&["<sip:p1.example;lr>"]);
        let routed = d.next_hop_shared();
        assert_eq!(routed.to_string(), "sip:p1.example;lr");
        assert_eq!(*routed, d.next_hop());
        // A clone shares the kept one and follows its own changes.
        let mut c = d.clone();
        assert!(Arc::ptr_eq(&c.next_hop_shared(), &routed));
        c.route_set = None;
        assert_eq!(c.next_hop_shared().to_string(), "sip:alice@192.0.2.2:5072");
        assert!(Arc::ptr_eq(&d.next_hop_shared(), &routed));
    }

    #[test]
    fn a_tagged_text_is_the_printed_with_tag() {
        // No tag, the same tag, another tag, a tag written in capitals, quoted or without a
        // value, other parameters around it: the text `with_tag` + print gives.
        for value in [
            "<sip:a@h>",
            "\"A b\" <sip:a@h;transport=tcp>;x=1",
            "<sip:a@h>;tag=t1",
            "<sip:a@h>;tag=other;y",
            "<sip:a@h>;TAG=t1",
            "<sip:a@h>;Tag=t2;z=3",
            "<sip:a@h>;tag=\"t1\"",
            "<sip:a@h>;tag",
            "sip:a@h;tag=t1",
        ] {
            let addr = NameAddr::parse(value).unwrap();
            assert_eq!(
                tagged_text(addr.clone(), "t1"),
                text_of(&addr.with_tag("t1"), 96),
                "{value}"
            );
        }
    }

    /// A To with a valueless `tag` parameter (`<uri>;tag`) has no tag for the view; the
    /// in-place path must not append a second one (`<uri>;tag;tag=lt`, whose first, valueless
    /// `tag` our parser reads: the UAS's BYE would carry no readable From tag) but replace it
    /// as the typed path (`tagged_text`, `with_tag`) does: `<uri>;tag=lt`.
    #[test]
    fn a_valueless_to_tag_is_replaced_as_the_typed_path_does() {
        let raw = "INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
From: <sip:alice@a.example>;tag=ft\r\nTo: <sip:bob@b.example>;tag\r\nCall-ID: c1\r\n\
CSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\nContent-Length: 0\r\n\r\n";
        let req = Message::parse(raw.as_bytes()).unwrap();
        let d = Dialog::from_uas(&req, "lt").unwrap();
        let typed = tagged_text(req.to().unwrap().0, "lt");
        assert_eq!(typed, "<sip:bob@b.example>;tag=lt");
        let tag = NameAddr::parse(&d.local_uri).unwrap().tag();
        assert_eq!(tag.as_deref(), Some("lt"), "local_uri {}", d.local_uri);
        assert_eq!(d.local_uri, typed);
    }

    /// Compact forms and a `TAG=` in capitals read in place.
    #[test]
    fn compact_and_capital_tag_forms_read_in_place() {
        let raw = "INVITE sip:bob@b.example SIP/2.0\r\nv: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
f: <sip:alice@a.example>;TAG=ft\r\nt: <sip:bob@b.example>\r\ni: c1\r\n\
CSeq: 1 INVITE\r\nm: <sip:alice@192.0.2.1>\r\nl: 0\r\n\r\n";
        let req = Message::parse(raw.as_bytes()).unwrap();
        let d = Dialog::from_uas(&req, "lt").unwrap();
        assert_eq!(d.id.remote_tag, "ft");
        assert_eq!(d.remote_uri, tagged_text(req.from().unwrap().0, "ft"));
        assert_eq!(d.local_uri, tagged_text(req.to().unwrap().0, "lt"));
        assert_eq!(d.remote_target.to_string(), "sip:alice@192.0.2.1");
    }

    /// A message's identifiers read once match the dialogs `matches` matches (a request by
    /// its To tag as ours, a response the other way round); a missing header matches none.
    #[test]
    fn identifiers_read_once_match_as_the_message_does() {
        let bye = "BYE sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK2\r\n\
f: <sip:alice@a.example>;TAG=ft\r\nTo: <sip:bob@b.example>;tag=lt\r\ni: c1\r\n\
CSeq: 2 BYE\r\nl: 0\r\n\r\n";
        let req = Message::parse(bye.as_bytes()).unwrap();
        let ours = DialogId {
            call_id: "c1".into(),
            local_tag: "lt".into(),
            remote_tag: "ft".into(),
        };
        let theirs = DialogId {
            call_id: "c1".into(),
            local_tag: "ft".into(),
            remote_tag: "lt".into(),
        };
        let other_call = DialogId {
            call_id: "c2".into(),
            ..ours.clone()
        };
        let ids = DialogIds::read(&req).unwrap();
        assert_eq!(
            (ids.call_id, ids.from_tag.as_deref(), ids.to_tag.as_deref()),
            ("c1", Some("ft"), Some("lt"))
        );
        let to_tag = req.headers.view::<ToRef>().unwrap().unwrap().tag();
        assert_eq!(DialogIds::read_with_to_tag(&req, to_tag).unwrap(), ids);
        for (d, is_request) in [
            (&ours, true),
            (&theirs, true),
            (&other_call, true),
            (&ours, false),
            (&theirs, false),
        ] {
            assert_eq!(ids.matches(d, is_request), matches(d, &req, is_request));
        }
        assert!(ids.matches(&ours, true) && !ids.matches(&theirs, true));
        assert!(ids.matches(&theirs, false) && !ids.matches(&other_call, true));
        // No Call-ID: nothing to match with.
        let req = Message::parse(bye.replace("i: c1\r\n", "").as_bytes()).unwrap();
        assert_eq!(DialogIds::read(&req), None);
        assert!(!matches(&ours, &req, true));
    }
}
