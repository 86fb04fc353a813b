//! What a [`super::Node`] counts: frames in and out by kind, packets
//! forwarded and delivered, and every drop by its [`DropReason`].

use std::collections::BTreeMap;

use serde::Serialize;
use skyhop_protocol::NotFoundReason;

/// Why a frame, packet or output was dropped. Drivers match on the variant;
/// [`DropReason::as_str`] is the name reports and metrics print.
///
/// Variants are declared in the order of their names, so that a map keyed
/// by reason lists them as a map keyed by name would (the simulator's
/// metrics depend on it; a test holds it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// A chat whose `sent_at` is older than the chat deadline plus the
    /// clock skew, or further ahead than the skew.
    ChatOutsideWindow,
    /// A dial-back request or answer that reached the core: the driver
    /// checks reachability itself (the runtime does; the simulator does not).
    DialBackUnserved,
    /// A supernode advertised by a peer whose dial budget is spent.
    DialOverBudget,
    /// A routed packet already seen (its id is in the duplicate window).
    Duplicate,
    /// A chat message already received (a retry whose ack was lost); it is acked again.
    DuplicateChat,
    /// The application event queue was full; the oldest event was dropped.
    EventQueueFull,
    /// A not-found or offline answer whose signature does not verify.
    ForgedAbsence,
    /// A chat message whose author signature does not verify.
    ForgedChat,
    /// A withdraw carrying a `Leave` that does not verify or names another node.
    ForgedLeave,
    /// A name claim whose signature does not verify, or that names
    /// another name than the one asked about.
    ForgedNameClaim,
    /// A chat receipt that is not signed by the chat's recipient.
    ForgedReceipt,
    /// A location record whose signature does not verify.
    ForgedRecord,
    /// A home's "stored" notice whose signature does not verify.
    ForgedStored,
    /// A `Withdraw { Lost }` that reached a home supernode from someone
    /// other than the supernode it names.
    ForgedWithdraw,
    /// A `Join` sent to a node that is not a supernode, or by a peer that is not an ordinary node.
    JoinToNonSupernode,
    /// A `Leave` from a peer that is not this supernode's client.
    LeaveFromNonClient,
    /// A `Listed` or `WhoQuery` from a peer that is not this supernode's
    /// client.
    ListedFromNonClient,
    /// A client asked to be listed while the list is full.
    ListingFull,
    /// A chat offered to a home's mailbox whose recipient's share is full.
    MailboxFull,
    /// A chat message whose `to` is not this node or whose `from` is not the packet's source.
    MisaddressedChat,
    /// An ordinary node received a routed packet addressed to another node.
    Misrouted,
    /// A name claim refused by a home supernode: the name is held by
    /// another key.
    NameTaken,
    /// Undeliverable: no home supernode holds a record of the destination.
    NoRecord,
    /// Undeliverable: no link toward the destination or its supernode.
    NoRoute,
    /// An ordinary node with no supernode tried to send a packet.
    NotAttached,
    /// A packet that is not a publish, withdraw or query reached a home supernode as home-bound.
    NotHomeBound,
    /// A frame from a peer with no open link.
    NotLinked,
    /// Undeliverable: the destination left or was lost.
    Offline,
    /// The frame output queue was full between drains.
    OutputQueueFull,
    /// A frame from a peer over its budget for the frame's class.
    OverBudget,
    /// One of this node's own packets, over its pace with the pace's queue
    /// full (a chat's retry sends it again).
    PaceQueueFull,
    /// A location record published by a peer that is not this supernode's client.
    PublishFromNonClient,
    /// A duplicate chat not acked again: too many duplicates this second.
    ReackOverBudget,
    /// A second `Hello` on one link.
    RepeatedHello,
    /// A chat older than its author's replay mark: not delivered, not acked.
    ReplayedChat,
    /// Undeliverable: the packet's time-to-live ran out.
    TtlExpired,
    /// An `Accept` that answers no `Join` this node sent.
    UnexpectedAccept,
    /// A `ChatAck` or a home's "stored" notice for no chat awaiting one
    /// (already acked, failed or never sent).
    UnexpectedAck,
    /// A peer of another protocol version, refused at its `Hello` (the
    /// runtime's decoder refuses the frame; the core counts it).
    UnknownVersion,
    /// Undeliverable: the destination is out of reach (its true home
    /// supernodes were lost recently, or its supernode cannot be routed to).
    Unreachable,
    /// A sealed chat that does not open with this node's chat key (sealed
    /// to another node, or damaged) or holds no valid chat message.
    UnreadableChat,
    /// A reply (neighbors, location, trace) that answers no request this
    /// node has in flight, or comes from a peer it did not ask.
    UnsolicitedReply,
    /// A client's `WhoQuery` over its budget (`listing::WHO_BURST` at
    /// once, then one per `listing::WHO_INTERVAL`).
    WhoOverBudget,
}

impl DropReason {
    /// Every reason, in declaration order.
    pub const ALL: [DropReason; 43] = [
        DropReason::ChatOutsideWindow,
        DropReason::DialBackUnserved,
        DropReason::DialOverBudget,
        DropReason::Duplicate,
        DropReason::DuplicateChat,
        DropReason::EventQueueFull,
        DropReason::ForgedAbsence,
        DropReason::ForgedChat,
        DropReason::ForgedLeave,
        DropReason::ForgedNameClaim,
        DropReason::ForgedReceipt,
        DropReason::ForgedRecord,
        DropReason::ForgedStored,
        DropReason::ForgedWithdraw,
        DropReason::JoinToNonSupernode,
        DropReason::LeaveFromNonClient,
        DropReason::ListedFromNonClient,
        DropReason::ListingFull,
        DropReason::MailboxFull,
        DropReason::MisaddressedChat,
        DropReason::Misrouted,
        DropReason::NameTaken,
        DropReason::NoRecord,
        DropReason::NoRoute,
        DropReason::NotAttached,
        DropReason::NotHomeBound,
        DropReason::NotLinked,
        DropReason::Offline,
        DropReason::OutputQueueFull,
        DropReason::OverBudget,
        DropReason::PaceQueueFull,
        DropReason::PublishFromNonClient,
        DropReason::ReackOverBudget,
        DropReason::RepeatedHello,
        DropReason::ReplayedChat,
        DropReason::TtlExpired,
        DropReason::UnexpectedAccept,
        DropReason::UnexpectedAck,
        DropReason::UnknownVersion,
        DropReason::Unreachable,
        DropReason::UnreadableChat,
        DropReason::UnsolicitedReply,
        DropReason::WhoOverBudget,
    ];

    /// The snake_case name, as metrics and status print it.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::ChatOutsideWindow => "chat_outside_window",
            DropReason::DialBackUnserved => "dial_back_unserved",
            DropReason::DialOverBudget => "dial_over_budget",
            DropReason::Duplicate => "duplicate",
            DropReason::DuplicateChat => "duplicate_chat",
            DropReason::EventQueueFull => "event_queue_full",
            DropReason::ForgedAbsence => "forged_absence",
            DropReason::ForgedChat => "forged_chat",
            DropReason::ForgedLeave => "forged_leave",
            DropReason::ForgedReceipt => "forged_receipt",
            DropReason::ForgedNameClaim => "forged_name_claim",
            DropReason::ForgedRecord => "forged_record",
            DropReason::ForgedStored => "forged_stored",
            DropReason::ForgedWithdraw => "forged_withdraw",
            DropReason::JoinToNonSupernode => "join_to_non_supernode",
            DropReason::LeaveFromNonClient => "leave_from_non_client",
            DropReason::ListedFromNonClient => "listed_from_non_client",
            DropReason::ListingFull => "listing_full",
            DropReason::MailboxFull => "mailbox_full",
            DropReason::NameTaken => "name_taken",
            DropReason::MisaddressedChat => "misaddressed_chat",
            DropReason::Misrouted => "misrouted",
            DropReason::NoRecord => "no_record",
            DropReason::NoRoute => "no_route",
            DropReason::NotAttached => "not_attached",
            DropReason::NotHomeBound => "not_home_bound",
            DropReason::NotLinked => "not_linked",
            DropReason::Offline => "offline",
            DropReason::OutputQueueFull => "output_queue_full",
            DropReason::OverBudget => "over_budget",
            DropReason::PaceQueueFull => "pace_queue_full",
            DropReason::PublishFromNonClient => "publish_from_non_client",
            DropReason::ReackOverBudget => "reack_over_budget",
            DropReason::RepeatedHello => "repeated_hello",
            DropReason::ReplayedChat => "replayed_chat",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::UnexpectedAccept => "unexpected_accept",
            DropReason::UnexpectedAck => "unexpected_ack",
            DropReason::UnknownVersion => "unknown_version",
            DropReason::Unreachable => "unreachable",
            DropReason::UnreadableChat => "unreadable_chat",
            DropReason::UnsolicitedReply => "unsolicited_reply",
            DropReason::WhoOverBudget => "who_over_budget",
        }
    }

    /// The drop that a `NotFound` answer of `reason` stands for.
    pub fn undeliverable(reason: NotFoundReason) -> DropReason {
        match reason {
            NotFoundReason::NoRecord => DropReason::NoRecord,
            NotFoundReason::Offline => DropReason::Offline,
            NotFoundReason::TtlExpired => DropReason::TtlExpired,
            NotFoundReason::NoRoute => DropReason::NoRoute,
            NotFoundReason::Unreachable => DropReason::Unreachable,
        }
    }
}

impl Serialize for DropReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts of what the node did, for status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Frames received, by kind.
    pub frames_in: BTreeMap<&'static str, u64>,
    /// Frames sent, by kind.
    pub frames_out: BTreeMap<&'static str, u64>,
    /// Routed packets forwarded to another node.
    pub forwarded: u64,
    /// Routed packets delivered to this node.
    pub delivered: u64,
    /// Packets and frames dropped, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
    /// Signed statements rejected as forged.
    pub forged: u64,
    /// Frames over their sender's budget, by message class.
    pub over_budget: BTreeMap<&'static str, u64>,
    /// Peers disconnected and refused for a while: for flooding or for
    /// sending something forged or invalid.
    pub peers_banned: u64,
    /// Primaries this ordinary node left because they did not relay its
    /// probes.
    pub primaries_abandoned: u64,
    /// Links closed because a probe went unanswered (a neighbor found dead
    /// without waiting for missed heartbeats).
    pub suspected: u64,
}

impl Counters {
    pub(crate) fn drop(&mut self, reason: DropReason) {
        *self.dropped.entry(reason).or_default() += 1;
    }

    /// How many were dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(&reason).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::DropReason;

    #[test]
    fn every_drop_reason_has_its_own_snake_case_name() {
        let names: BTreeSet<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DropReason::ALL.len(), "names are distinct");
        let declared: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        let sorted: Vec<&str> = names.iter().copied().collect();
        assert_eq!(declared, sorted, "declared in name order");
        for n in names {
            assert!(
                n.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{n} is snake_case"
            );
        }
    }
}
