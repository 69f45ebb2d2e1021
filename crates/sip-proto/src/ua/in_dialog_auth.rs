//! Requests inside a dialog answered with 401 or 407: sent again once with credentials.
//!
//! RFC 3261 §22.2 and §22.3: a UAC that gets 401/407 to a request "MAY" send it again with
//! credentials; the retry is the same request with a new CSeq number (§8.1.3.5: "the new
//! request MUST have a CSeq number one higher than the previous one" — here the dialog's next
//! one, §12.2.1.1) and a new branch. Many PBXs never challenge inside a dialog, but servers
//! that authenticate every request (FreeSWITCH's `auth-all-packets`, carriers' SBCs, proxies
//! that challenge REFER) do, and a phone that cannot answer them cannot hang up, hold or
//! transfer there. Our BYE, re-INVITE, UPDATE, INFO, PRACK, REFER and NOTIFY answer one
//! challenge each; a second one to the credentials we computed (not `stale`) is the request's
//! final answer, as for INVITE and REGISTER ([`crate::auth::Authenticator::challenge`]).
//! The request keeps its owner, so its next final response is handled as the first would
//! have been: a re-INVITE's offer stays open meanwhile (its retry carries the same SDP), and a
//! REFER's subscription is named by the retry's CSeq number (RFC 3515 §2.4.6).

use std::borrow::Cow;
use std::time::Instant;

use rand::Rng;
use sip_msg::typed::ToRef;
use sip_msg::{Message, tag_from};

use super::{Call, CallId, Destination, Owner, UserAgent, cseq_header};
use crate::dialog::Dialog;

/// The call and whether `owner`'s requests are sent again after a challenge: those in a
/// dialog of the call (a CANCEL cannot be, §22.1 "CANCEL requests … cannot be resubmitted";
/// the INVITE has its own retry, [`UserAgent::reinvite_with_auth`]; the BYE of another
/// fork's dialog is nobody's business).
pub(super) fn retried_owner(owner: Owner) -> Option<CallId> {
    match owner {
        Owner::Bye(id) | Owner::InDialog(id, _) | Owner::Refer(id) | Owner::Notify(id) => Some(id),
        Owner::Register
        | Owner::Unregister
        | Owner::Invite(_)
        | Owner::Cancel(_)
        | Owner::ForkBye(_) => None,
    }
}

/// Whether `owner`'s response `resp` is a challenge we may answer by sending the request
/// again (the request is then needed by the response's handler).
pub(super) fn is_retried_challenge(owner: Owner, resp: &Message) -> bool {
    matches!(resp.status(), Some(401 | 407)) && retried_owner(owner).is_some()
}

/// The dialog of `call` the request `rejected` was sent in: the confirmed one, or an early
/// one (a PRACK or UPDATE before the 2xx), found by the request's To tag.
fn dialog_of<'a>(call: &'a mut Call, rejected: &Message) -> Option<&'a mut Dialog> {
    let tag = rejected
        .headers
        .view::<ToRef>()
        .and_then(Result::ok)
        .and_then(|t| t.tag())?;
    if call
        .dialog
        .as_ref()
        .is_some_and(|d| d.id.remote_tag == *tag)
    {
        return call.dialog.as_mut();
    }
    call.forks
        .iter_mut()
        .map(|f| &mut f.dialog)
        .find(|d| d.id.remote_tag == *tag)
}

impl UserAgent {
    /// Sends `rejected`, the request of `owner` that `resp` (401/407) refused, again with
    /// credentials for the challenge. False (nothing sent: `resp` is the request's final
    /// answer) without credentials, for a challenge we cannot read, a second challenge to the
    /// credentials we computed, or when the dialog is gone.
    pub(super) fn retry_in_dialog_with_auth(
        &mut self,
        now: Instant,
        owner: Owner,
        rejected: Cow<'_, Message>,
        resp: &Message,
    ) -> bool {
        let Some(id) = retried_owner(owner) else {
            return false;
        };
        let (Some(method), Some(target)) = (rejected.method(), rejected.request_uri()) else {
            return false;
        };
        // The digest URI: the Request-URI as sent (RFC 7616 §3.4: `uri`).
        let mut uri = String::with_capacity(48);
        // Writing into a String never fails.
        let _ = target.write_to(&mut uri);
        let cnonce = tag_from(self.rng.random());
        let header = match self.auth.challenge(
            self.credentials.as_ref(),
            resp,
            &rejected,
            &method,
            &uri,
            rejected.body(),
            &cnonce,
        ) {
            Ok(header) => header,
            Err(_) => return false,
        };
        // The Via of the connection the request left on (a call placed through an outbound
        // proxy's own connection has that connection's address).
        let (via, branch) = self.new_via_header_at(self.proxied(id));
        let Some(call) = self.call_mut(id) else {
            return false;
        };
        let Some(dialog) = dialog_of(call, &rejected) else {
            return false;
        };
        dialog.local_seq += 1;
        let seq = dialog.local_seq;
        let dest = Destination::Uri(dialog.next_hop_shared());
        if let Owner::Refer(_) = owner {
            self.refer_sent_again(id, seq);
        }
        let mut req = rejected.into_owned();
        req.headers.set(cseq_header(seq, &method));
        req.headers.set(via);
        // RFC 3261 §22.3: the credentials of the other realms stay.
        crate::auth::put_credentials(&mut req.headers, header);
        self.start_client_branch(now, req, branch, owner, dest);
        true
    }
}
