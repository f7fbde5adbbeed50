"""What happened on an attempt, from what Asterisk reported: a pure mapping.

Two sources: the ``OriginateResponse`` (did the operator answer at all?) and, once the
operator answered, the ``CallbackdResult`` UserEvent the shipped dialplan's hangup handler
sends with the last stage reached and Dial()'s DIALSTATUS / ANSWEREDTIME.
"""

from __future__ import annotations

from dataclasses import dataclass

from callbackd.db.models import AttemptOutcome
from callbackd.dialplan_contract import Stage

# OriginateResponse "Reason" (Asterisk's AST_CONTROL_* of the outgoing leg).
_ORIGINATE_REASONS = {
    3: AttemptOutcome.OPERATOR_NO_ANSWER,  # rang until the Originate timeout
    5: AttemptOutcome.OPERATOR_BUSY,
    8: AttemptOutcome.OPERATOR_BUSY,  # congestion towards the operator's device
}

_DIAL_STATUS = {
    "BUSY": AttemptOutcome.BUSY,
    "NOANSWER": AttemptOutcome.NO_ANSWER,
    "CONGESTION": AttemptOutcome.CONGESTION,
    "CHANUNAVAIL": AttemptOutcome.UNAVAILABLE,
    "DONTCALL": AttemptOutcome.CLIENT_DECLINED,
    "TORTURE": AttemptOutcome.CLIENT_DECLINED,
    "INVALIDARGS": AttemptOutcome.FAILED,
    # The operator hung up while the client was ringing: the operator's doing.
    "CANCEL": AttemptOutcome.OPERATOR_DECLINED,
}


@dataclass(frozen=True)
class CallReport:
    """The shipped dialplan's final report for one attempt (UserEvent CallbackdResult)."""

    stage: str
    dial_status: str
    talk_ms: int | None
    """Operator and client bridged, in ms (the dialplan measures it; ANSWEREDTIME counts
    from the operator's answer and includes the announcement, so it is not used)."""
    hangup_source: str


def outcome_of_originate_failure(reason: int) -> AttemptOutcome:
    """The operator's leg never got to our context."""
    return _ORIGINATE_REASONS.get(reason, AttemptOutcome.FAILED)


def outcome_of_report(report: CallReport, *, min_talk_seconds: int) -> AttemptOutcome:
    stage = report.stage
    if stage == Stage.INVALID:
        return AttemptOutcome.FAILED
    if stage in (Stage.OPERATOR_ANSWERED, Stage.OPERATOR_DECLINED):
        return AttemptOutcome.OPERATOR_DECLINED
    if stage == Stage.CLIENT_DECLINED:
        return AttemptOutcome.CLIENT_DECLINED
    status = report.dial_status.upper()
    if status == "ANSWER":
        # No talk time: the client answered but hung up at the confirmation prompt.
        if report.talk_ms is None or report.talk_ms < min_talk_seconds * 1000:
            return AttemptOutcome.SHORT_CALL
        return AttemptOutcome.COMPLETED
    if status in _DIAL_STATUS:
        return _DIAL_STATUS[status]
    # Dial() never returned a status: the operator left while the client was being dialled.
    return AttemptOutcome.OPERATOR_DECLINED
