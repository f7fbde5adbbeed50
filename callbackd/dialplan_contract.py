"""Names shared by callbackd's code and its shipped dialplan (dialplan/callbackd.conf).

The dialplan is text that site admins include unchanged; this module is the one place the
Python side spells the same contexts and channel variables. tests/test_dialplan_contract.py
fails when the two drift apart.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

SHIPPED_DIALPLAN_FILE: Final = "callbackd.conf"
"""The file sites ``#include`` from extensions.conf."""

QUEUE_CONTEXT: Final = "callbackd-queue"
"""Gosub routine ``Gosub(callbackd-queue,s,1(<queue>[,<Queue() options>]))``.

Sets safe values for every ``CALLBACKD_*`` variable, runs ``Queue()`` and returns when the
caller leaves the queue without hanging up.
"""

QUEUE_ENTRY_EXTENSION: Final = "s"
"""Extension of :data:`QUEUE_CONTEXT` the Gosub enters (priority 1)."""

VAR_PRIORITY: Final = "CALLBACKD_PRIORITY"
"""Callback priority, 0-999, higher is called back sooner.

The site may set it before the Gosub; the routine turns anything that is not 1-3 digits
into :data:`DEFAULT_PRIORITY`.
"""

DEFAULT_PRIORITY: Final = 0
"""Value of :data:`VAR_PRIORITY` when the site set none (or an invalid one)."""

MAX_PRIORITY: Final = 999
"""Largest value :data:`VAR_PRIORITY` can have after the routine checked it."""

VAR_QUEUE: Final = "CALLBACKD_QUEUE"
"""The queue the routine sent the caller to (its first argument)."""

PROBE_CONTEXT: Final = "callbackd-probe"
"""Originated by callbackd at connect time (``Local/s@callbackd-probe``): it answers, sends
``UserEvent(CallbackdProbe)`` with the token and hangs up, proving the AMI account receives
call-class (OriginateResponse) and user-class (UserEvent) events."""

PROBE_EVENT: Final = "CallbackdProbe"
"""UserEvent name the probe context sends."""

VAR_PROBE_TOKEN: Final = "CALLBACKD_PROBE_TOKEN"  # noqa: S105 - a variable name, not a secret
"""Hex token callbackd gives the probe call; echoed as the UserEvent's ``Token`` header."""

# --------------------------------------------------------------------- callbacks

OPERATOR_CONTEXT: Final = "callbackd-operator"
"""Where callbackd's Originate to a free operator continues once the operator answered.

Originate with ``Context: callbackd-operator``, ``Exten:`` :data:`OPERATOR_ENTRY_EXTENSION`,
``Priority:`` :data:`OPERATOR_ENTRY_PRIORITY`, ``ChannelId`` and the ``Variable:`` lines
named below. In the campaign's language it reads the operator's key over one prompt list
(whisper, number if asked for, prompt: a key counts from the answer on), dials the client
with the campaign's caller id (never the client's own number) and bridges the two.
"""

OPERATOR_ENTRY_EXTENSION: Final = "s"
"""Extension of :data:`OPERATOR_CONTEXT` the Originate enters."""

OPERATOR_ENTRY_PRIORITY: Final = 1
"""Priority of :data:`OPERATOR_CONTEXT` the Originate enters."""

CLIENT_CONFIRM_CONTEXT: Final = "callbackd-client-confirm"
"""Gosub run on the client's channel by Dial's ``U()`` once the client answered.

Sends :attr:`Stage.CLIENT_ANSWERED`; with :data:`VAR_CLIENT_CONFIRM` = 1 it plays
:data:`VAR_CLIENT_PROMPT` and sends :attr:`Stage.CLIENT_CONFIRMED` (key 1: bridged) or
:attr:`Stage.CLIENT_DECLINED` (anything else or no key: both legs hung up).
"""

REPORT_CONTEXT: Final = "callbackd-report"
"""Hangup handler pushed first thing on the operator's channel: sends :data:`RESULT_EVENT`."""

ATTEMPT_EVENT: Final = "CallbackdAttempt"
"""UserEvent sent as each :class:`Stage` is reached; headers :data:`ATTEMPT_HEADERS`."""

RESULT_EVENT: Final = "CallbackdResult"
"""UserEvent sent once when the operator's channel hangs up (after every ATTEMPT_EVENT of
the attempt); headers :data:`RESULT_HEADERS`. No operator answer means no result: callbackd
sees only OriginateResponse Failure (Reason 3 no answer, 5 busy, 8 congestion, 1 unavailable).
"""

HEADER_ATTEMPT: Final = "Attempt"
"""The attempt id (:data:`VAR_ATTEMPT_ID`; empty if callbackd sent an invalid one)."""
HEADER_STAGE: Final = "Stage"
"""A :class:`Stage` value: the stage reached (ATTEMPT_EVENT) or the last one (RESULT_EVENT)."""
HEADER_DIAL_STATUS: Final = "DialStatus"
"""``${DIALSTATUS}``: empty when no Dial ran (operator_answered, invalid, operator_declined);
BUSY / NOANSWER / CONGESTION / CHANUNAVAIL with client_dialing; CANCEL when the operator hung
up while the client rang; ANSWER once the client answered, whatever happened next (also for
client_declined, where Dial's own DialEnd event says ABORT)."""
HEADER_ANSWERED_TIME: Final = "AnsweredTime"
"""``${ANSWEREDTIME}``: whole seconds, set only when the client answered and the call then
ended (not for client_declined). Asterisk 22 measures it on the OPERATOR's channel: seconds
since the operator answered, announcement, prompt and client ringing included. It is NOT the
client's talk time: use :data:`HEADER_TALK_TIME_MS`."""
HEADER_DIALED_TIME: Final = "DialedTime"
"""``${DIALEDTIME}``: like AnsweredTime but since the operator's channel was created
(operator ringing included)."""
HEADER_TALK_TIME_MS: Final = "TalkTimeMs"
"""Milliseconds the client was connected to the operator: from the bridge (client_answered
without, client_confirmed with client confirmation) to the hangup; empty if never bridged.
A short value with DialStatus ANSWER is a "short call"."""
HEADER_HANGUP_SOURCE: Final = "HangupSource"
"""``${CHANNEL(hangupsource)}`` of the operator's channel: ``dialplan/builtin`` when the
shipped dialplan hung the operator up (the client's leg ended first, the dial failed,
operator_declined, invalid); otherwise what the channel driver recorded for the operator's
side hanging up (empty for Local channels and AMI Hangup)."""
HANGUP_SOURCE_DIALPLAN: Final = "dialplan/builtin"
"""HangupSource when the dialplan (not the operator) ended the operator's call."""

ATTEMPT_HEADERS: Final = (HEADER_ATTEMPT, HEADER_STAGE)
"""Headers of :data:`ATTEMPT_EVENT`, in order (besides Asterisk's channel headers)."""

RESULT_HEADERS: Final = (
    HEADER_ATTEMPT,
    HEADER_DIAL_STATUS,
    HEADER_ANSWERED_TIME,
    HEADER_DIALED_TIME,
    HEADER_TALK_TIME_MS,
    HEADER_HANGUP_SOURCE,
    HEADER_STAGE,
)
"""Headers of :data:`RESULT_EVENT`, in order (besides Asterisk's channel headers).

Stage, never empty, comes last in both events on purpose: the last header of an AMI message
is followed by the blank line, and parsers that strip the message (panoramisk does) turn a
trailing ``Name: `` with an empty value into ``Name:`` and drop it.
"""


class Stage(StrEnum):
    """How far a callback got; ATTEMPT_EVENT as each is reached, RESULT_EVENT the last."""

    OPERATOR_ANSWERED = "operator_answered"
    """The operator answered (always first). As the result: the operator hung up before
    deciding; nothing was dialled."""
    INVALID = "invalid"
    """An attempt id, number or dial prefix/suffix was missing or invalid; the operator was
    hung up and nothing was dialled."""
    OPERATOR_DECLINED = "operator_declined"
    """The operator pressed another key than 1, or none within the timeout; hung up."""
    CLIENT_DIALING = "client_dialing"
    """Dial() to the client started. As the result: the client never answered (DialStatus
    says why) or the operator hung up while it rang (CANCEL)."""
    CLIENT_ANSWERED = "client_answered"
    """The client answered (sent from the client's channel). Without client confirmation the
    two are bridged now; with it, as the result: the client hung up before pressing a key."""
    CLIENT_CONFIRMED = "client_confirmed"
    """The client pressed 1 and was bridged with the operator."""
    CLIENT_DECLINED = "client_declined"
    """The client pressed another key or none within the timeout; both legs hung up."""


VAR_ATTEMPT_ID: Final = "CALLBACKD_ATTEMPT_ID"
"""callbackd's attempt id: 1-64 of ``0-9 A-Z a-z -`` (a uuid); otherwise the attempt is
:attr:`Stage.INVALID`. Send it as :data:`ORIGINATE_VAR_ATTEMPT_ID`."""
ORIGINATE_VAR_ATTEMPT_ID: Final = "__" + VAR_ATTEMPT_ID
"""The Originate ``Variable:`` name of :data:`VAR_ATTEMPT_ID`: ``__`` makes channels created
from the operator's (the client's) inherit it. The dialplan re-sets it with ``__`` too."""
ATTEMPT_ID_CHARACTERS: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-"
MAX_ATTEMPT_ID_LENGTH: Final = 64

VAR_NUMBER: Final = "CALLBACKD_NUMBER"
"""The client's number, 1-:data:`MAX_NUMBER_DIGITS` ASCII digits and nothing else (checked
character by character before any Dial; anything else is :attr:`Stage.INVALID`)."""
MAX_NUMBER_DIGITS: Final = 32

VAR_DIAL_PREFIX: Final = "CALLBACKD_DIAL_PREFIX"
"""The site's dial string before the number (``PJSIP/``, ``Local/``): must contain ``/``."""
VAR_DIAL_SUFFIX: Final = "CALLBACKD_DIAL_SUFFIX"
"""The site's dial string after the number (``@trunk``, ``@from-callbackd``), may be empty."""
DIAL_AFFIX_CHARACTERS: Final = (
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_/@:.+-"
)
"""The only characters prefix and suffix may hold (no ``&`` or ``,``); otherwise invalid."""
MAX_DIAL_AFFIX_LENGTH: Final = 64

VAR_OPERATOR_CONFIRM: Final = "CALLBACKD_OPERATOR_CONFIRM"
"""1: the operator must press 1 before the client is dialled; 0: dialled right after the
number. Anything but ``0`` counts as 1."""
DEFAULT_OPERATOR_CONFIRM: Final = 1

VAR_CONFIRM_TIMEOUT: Final = "CALLBACKD_CONFIRM_TIMEOUT"
"""Seconds to wait for the operator's key once the prompts ended (and the client's, with
client confirmation)."""
DEFAULT_CONFIRM_TIMEOUT: Final = 10
MAX_CONFIRM_TIMEOUT: Final = 99

VAR_CLIENT_RING: Final = "CALLBACKD_CLIENT_RING"
"""Seconds to ring the client (Dial timeout)."""
DEFAULT_CLIENT_RING: Final = 30
MAX_CLIENT_RING: Final = 999

VAR_CLIENT_CONFIRM: Final = "CALLBACKD_CLIENT_CONFIRM"
"""1: the client must press 1 to be connected (voicemail is no success); 0: bridged on
answer. Anything but ``1`` counts as 0."""
DEFAULT_CLIENT_CONFIRM: Final = 0

VAR_ANNOUNCE: Final = "CALLBACKD_ANNOUNCE"
"""The whisper: sound(s) the operator hears first on answering ('&'-joined). The operator's
key is read from its first moment on (one Read() over whisper, number and prompt)."""
DEFAULT_ANNOUNCE: Final = "callbackd/callback-request"
"""callbackd's prompt: "Callback request." """
VAR_ANNOUNCE_NUMBER: Final = "CALLBACKD_ANNOUNCE_NUMBER"
"""When the operator hears the client's number (``digits/N`` sounds of the channel's
language): ``off`` never, ``before_prompt`` between the whisper and the prompt,
``on_request`` when the operator presses 0. Anything else: :data:`DEFAULT_ANNOUNCE_NUMBER`."""
ANNOUNCE_NUMBER_VALUES: Final = ("off", "before_prompt", "on_request")
DEFAULT_ANNOUNCE_NUMBER: Final = "on_request"
VAR_OPERATOR_PROMPT: Final = "CALLBACKD_OPERATOR_PROMPT"
"""Sound(s) after the whisper (and number) while the operator's key is read. Default:
:data:`DEFAULT_OPERATOR_PROMPT_ON_REQUEST` with announce_number ``on_request``,
:data:`DEFAULT_OPERATOR_PROMPT` otherwise."""
DEFAULT_OPERATOR_PROMPT: Final = "callbackd/press-1-to-connect"
"""callbackd's prompt: "Press 1 to connect." """
DEFAULT_OPERATOR_PROMPT_ON_REQUEST: Final = "callbackd/press-1-or-0-for-number"
"""callbackd's prompt: "Press 1 to connect, or 0 to hear the number." """
OPERATOR_KEY_CONNECT: Final = "1"
"""The operator's key that connects the client (at any moment from the answer on)."""
OPERATOR_KEY_NUMBER: Final = "0"
"""The operator's key that says the number, then the prompt again (unless announce_number
is ``off``). Any other key, or none within the timeout, declines."""
VAR_CLIENT_PROMPT: Final = "CALLBACKD_CLIENT_PROMPT"
"""Sound(s) the client's key is read with (client confirmation only)."""
DEFAULT_CLIENT_PROMPT: Final = "callbackd/client-press-1"
"""callbackd's prompt: "Press 1 to talk to our specialist." """
SOUND_CHARACTERS: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_/&.-"
"""The only characters a sound variable may hold; anything else gets the default."""
MAX_SOUND_LENGTH: Final = 255

# --------------------------------------------------------------------- prompts and language
# callbackd's own recordings (callbackd/sounds/prompts.toml, made by scripts/make-sounds,
# installed by `callbackd install-sounds` as <sounds dir>/<language>/callbackd/<name>.wav).

PROMPT_DIR: Final = "callbackd"
"""Subdirectory of each language's sounds directory holding callbackd's prompts."""

PROMPT_LANGUAGES: Final = ("en", "ru")
"""Languages callbackd ships every prompt in."""

PROMPTS: Final = (
    "callback-request",
    "press-1-to-connect",
    "press-1-or-0-for-number",
    "client-press-1",
    "queue-offer",
    "ivr-your-number",
    "ivr-confirm-number",
    "ivr-ask-time",
    "ivr-invalid",
    "ivr-booked-for",
    "ivr-today",
    "ivr-tomorrow",
    "ivr-booked-soonest",
    "ivr-thank-you",
    "reminder-you-have",
    "reminder-waiting-one",
    "reminder-waiting-few",
    "reminder-waiting-many",
)
"""Every prompt callbackd ships, by file name (played as ``callbackd/<name>``)."""


def prompt(name: str) -> str:
    """The sound name Asterisk plays for one of :data:`PROMPTS` (``callbackd/<name>``)."""
    if name not in PROMPTS:
        raise ValueError(f"{name!r} is not one of callbackd's prompts")
    return f"{PROMPT_DIR}/{name}"


VAR_LANGUAGE: Final = "CALLBACKD_LANGUAGE"
"""The campaign's language (``CHANNEL(language)``: which sounds directory prompts, digits and
numbers come from): 2-3 lowercase letters, optionally ``_`` and a 2-4 letter region
(``en``, ``ru``, ``pt_BR``). Anything else: :data:`DEFAULT_LANGUAGE`."""
DEFAULT_LANGUAGE: Final = "en"
LANGUAGE_CHARACTERS: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
MIN_LANGUAGE_LENGTH: Final = 2
MAX_LANGUAGE_LENGTH: Final = 8

VAR_CLIENT_CALLERID: Final = "CALLBACKD_CLIENT_CALLERID"
"""The caller id number the client sees (the campaign's caller_id): 1-32 of ``0-9 +``. Set
as the operator channel's CALLERID(num) just before Dial(); empty or invalid: cleared, so
the site's outbound route presents its own. Never the client's own number."""
CALLERID_NUMBER_CHARACTERS: Final = "0123456789+"
MAX_CALLERID_NUMBER_LENGTH: Final = 32
VAR_CLIENT_CALLERNAME: Final = "CALLBACKD_CLIENT_CALLERNAME"
"""The caller id name the client sees: 1-32 of :data:`CALLERID_NAME_CHARACTERS`; empty or
invalid: cleared."""
CALLERID_NAME_CHARACTERS: Final = (
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ _.-"
)
MAX_CALLERID_NAME_LENGTH: Final = 32

CALLBACK_VARIABLES: Final = frozenset(
    {
        VAR_ATTEMPT_ID,
        VAR_NUMBER,
        VAR_DIAL_PREFIX,
        VAR_DIAL_SUFFIX,
        VAR_OPERATOR_CONFIRM,
        VAR_CONFIRM_TIMEOUT,
        VAR_CLIENT_RING,
        VAR_CLIENT_CONFIRM,
        VAR_LANGUAGE,
        VAR_ANNOUNCE,
        VAR_ANNOUNCE_NUMBER,
        VAR_OPERATOR_PROMPT,
        VAR_CLIENT_PROMPT,
        VAR_CLIENT_CALLERID,
        VAR_CLIENT_CALLERNAME,
    }
)
"""The variables callbackd sets on its Originate to :data:`OPERATOR_CONTEXT`."""

VAR_STAGE: Final = "CALLBACKD_STAGE"
"""Set by the dialplan on the operator's channel: the last :class:`Stage` reached."""
VAR_CONNECTED_AT: Final = "CALLBACKD_CONNECTED_AT"
"""Set by the dialplan on the operator's channel: epoch ms when the client was bridged."""
VAR_TALK_MS: Final = "CALLBACKD_TALK_MS"
"""Set by the report handler: the :data:`HEADER_TALK_TIME_MS` value."""
VAR_OPERATOR_KEY: Final = "CALLBACKD_OPERATOR_KEY"
"""Set by Read() on the operator's channel: the key pressed."""
VAR_CLIENT_KEY: Final = "CALLBACKD_CLIENT_KEY"
"""Set by Read() on the client's channel: the key pressed."""
VAR_NUMBER_SOUNDS: Final = "CALLBACKD_NUMBER_SOUNDS"
"""Set by the dialplan: the number as ``digits/N&digits/M&...`` (built from the checked
digits, played in the channel's language)."""
VAR_OPERATOR_SOUNDS: Final = "CALLBACKD_OPERATOR_SOUNDS"
"""Set by the dialplan: what the operator's next Read() plays before the prompt."""
VAR_DIGIT: Final = "CALLBACKD_DIGIT"
"""Set by the dialplan: loop index while building :data:`VAR_NUMBER_SOUNDS`."""

DIALPLAN_VARIABLES: Final = frozenset(
    {
        VAR_STAGE,
        VAR_CONNECTED_AT,
        VAR_TALK_MS,
        VAR_OPERATOR_KEY,
        VAR_CLIENT_KEY,
        VAR_NUMBER_SOUNDS,
        VAR_OPERATOR_SOUNDS,
        VAR_DIGIT,
    }
)
"""Callback variables only the dialplan sets (callbackd does not send them)."""

OUTBOUND_CONTEXT: Final = "from-callbackd"
"""Where the default dial_template (``Local/{number}@from-callbackd``) sends the client's
number (the extension): on to the site's outbound routing, set once in [globals] by
:data:`VAR_OUTBOUND_CONTEXT` (``Goto``, e.g. FreePBX's ``from-internal``) or
:data:`VAR_TRUNK` (``Dial(PJSIP/<number>@<trunk>)``). Neither set: an ERROR log line that
says what to set, and Congestion. Busy / congestion of the far end is passed back."""
VAR_OUTBOUND_CONTEXT: Final = "CALLBACKD_OUTBOUND_CONTEXT"
"""Set by the SITE in [globals]: the context client numbers go to (1-64 of
:data:`CONTEXT_NAME_CHARACTERS`). Wins over :data:`VAR_TRUNK` when both are set."""
VAR_TRUNK: Final = "CALLBACKD_TRUNK"
"""Set by the SITE in [globals]: a PJSIP endpoint (1-64 of :data:`TRUNK_CHARACTERS`)."""
TRUNK_CHARACTERS: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.-"
MAX_OUTBOUND_NAME_LENGTH: Final = 64
OUTBOUND_VARIABLES: Final = frozenset({VAR_OUTBOUND_CONTEXT, VAR_TRUNK})

# --------------------------------------------------------------------- dialer modes
# Client-first callbacks, caller-pays DIDs and reminder calls (dialplan/callbackd.conf,
# section "Dialer modes"). Kept apart from the names above so each part reads on its own.

CLIENT_FIRST_CONTEXT: Final = "callbackd-client-first"
"""Where callbackd's Originate to the CLIENT (client-first mode) continues once the client
answered: optional "press 1", then the campaign's queue with ``QUEUE_PRIO`` (through
:data:`QUEUE_CONTEXT`) or a landing context. Enter at ``s``, priority 1."""

CLIENT_FIRST_REPORT_CONTEXT: Final = "callbackd-client-first-report"
"""Hangup handler pushed first thing on the client's channel: sends
:data:`CLIENT_FIRST_RESULT_EVENT` once, whatever ended the call."""

CLIENT_FIRST_EVENT: Final = "CallbackdClientFirst"
"""UserEvent sent as each :class:`ClientFirstStage` is reached; headers Attempt, Stage."""

CLIENT_FIRST_RESULT_EVENT: Final = "CallbackdClientFirstResult"
"""UserEvent from the hangup handler, exactly once per answered client; headers Attempt,
Stage (the last stage reached)."""

CLIENT_FIRST_HEADERS: Final = (HEADER_ATTEMPT, HEADER_STAGE)
"""Headers of both client-first events, in order."""


class ClientFirstStage(StrEnum):
    """How far a client-first callback got (the client's channel)."""

    CLIENT_ANSWERED = "client_answered"
    """The client answered (always first). As the result: the client hung up before being
    put through (at the confirmation prompt)."""
    INVALID = "invalid"
    """The attempt id, the queue or the landing context was invalid: hung up, nothing else."""
    CLIENT_CONFIRMED = "client_confirmed"
    """The client pressed 1 (client confirmation on)."""
    CLIENT_DECLINED = "client_declined"
    """The client pressed another key or none in time: hung up."""
    QUEUED = "queued"
    """The client is being put into the queue with QUEUE_PRIO: the callback succeeded."""
    LANDED = "landed"
    """The client is being sent to the landing context: the callback succeeded."""


VAR_CLIENT_STAGE: Final = "CALLBACKD_CLIENT_STAGE"
"""Set by the dialplan on the client's channel: the last :class:`ClientFirstStage`."""
VAR_TARGET_QUEUE: Final = "CALLBACKD_TARGET_QUEUE"
"""Set by callbackd: the queue the answered client joins, 1-79 of ``0-9 A-Z a-z _ . -``;
anything else is :attr:`ClientFirstStage.INVALID` (unless a landing context is set)."""
QUEUE_NAME_CHARACTERS: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.-"
MAX_QUEUE_NAME_LENGTH: Final = 79
VAR_QUEUE_PRIO: Final = "CALLBACKD_QUEUE_PRIO"
"""Set by callbackd: QUEUE_PRIO the client joins with, 1-3 digits; anything else is 0."""
VAR_LANDING: Final = "CALLBACKD_LANDING"
"""Set by callbackd (optional): context the answered client is sent to (``s``, 1) instead
of the queue; 1-64 of ``0-9 A-Z a-z _ -``, anything else is invalid."""
CONTEXT_NAME_CHARACTERS: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-"

CLIENT_FIRST_VARIABLES: Final = frozenset(
    {
        VAR_ATTEMPT_ID,
        VAR_NUMBER,
        VAR_TARGET_QUEUE,
        VAR_QUEUE_PRIO,
        VAR_LANDING,
        VAR_CLIENT_CONFIRM,
        VAR_CLIENT_PROMPT,
        VAR_CONFIRM_TIMEOUT,
        VAR_LANGUAGE,
    }
)
"""The variables callbackd sets on its Originate to :data:`CLIENT_FIRST_CONTEXT`."""

CALLER_PAYS_CONTEXT: Final = "callbackd-caller-pays"
"""``Gosub(callbackd-caller-pays,s,1(<campaign>[,<cause>]))`` from a caller-pays DID: never
answers; writes :data:`CALLER_PAYS_QUEUE_LOG_EVENT` to queue_log, sends
:data:`CALLER_PAYS_EVENT` with the caller's number and rejects the call with
``Hangup(<cause>)`` (default 21, call rejected). Does not return."""

CALLER_PAYS_EVENT: Final = "CallbackdCallerPays"
"""UserEvent of a caller-pays call; headers :data:`CALLER_PAYS_HEADERS` (plus Asterisk's
channel headers: the Uniqueid makes it idempotent)."""
HEADER_CAMPAIGN: Final = "Campaign"
"""The campaign named by the context's argument (empty if it was not a campaign name)."""
HEADER_NUMBER: Final = "Number"
"""The caller's number: 1-32 of ``0-9 +`` (empty if the caller id was anything else)."""
CALLER_PAYS_HEADERS: Final = (HEADER_CAMPAIGN, HEADER_NUMBER)

CALLER_PAYS_QUEUE_LOG_EVENT: Final = "CALLBACKD_CALLERPAYS"
"""The durable twin of :data:`CALLER_PAYS_EVENT`, written just before it with
``TryExec(QueueLog(callbackd,${UNIQUEID},NONE,CALLBACKD_CALLERPAYS,<campaign>|<number>))``.
Asterisk appends ``<epoch>|<uniqueid>|callbackd|NONE|CALLBACKD_CALLERPAYS|<campaign>|<number>``
to queue_log, so a call made while callbackd was not listening is replayed from there (the
same Uniqueid as the UserEvent's: stored once either way). TryExec: a failing QueueLog never
changes how the call is rejected."""
CALLER_PAYS_QUEUE_LOG_QUEUE: Final = "callbackd"
"""The line's queue field: a fixed marker, not a queue (queue reports skip its event)."""
CALLER_PAYS_QUEUE_LOG_AGENT: Final = "NONE"
"""The line's agent field, as Asterisk writes it for lines without an agent."""
CALLER_PAYS_QUEUE_LOG_DATA: Final = (HEADER_CAMPAIGN, HEADER_NUMBER)
"""What the line's data fields hold, in order (data1 the campaign, data2 the number), each
checked exactly as for the UserEvent's headers of the same name (empty when invalid)."""
CAMPAIGN_NAME_CHARACTERS: Final = "0123456789abcdefghijklmnopqrstuvwxyz_-"
"""The only characters the caller-pays routine keeps in a campaign name."""
MAX_CAMPAIGN_NAME_LENGTH: Final = 64
CALLER_CHARACTERS: Final = "0123456789+"
"""The only characters the caller-pays routine keeps in the caller's number."""
MAX_CALLER_LENGTH: Final = 32

VAR_CAMPAIGN: Final = "CALLBACKD_CAMPAIGN"
"""Set by the caller-pays routine: its checked first argument (1-64 of
:data:`CAMPAIGN_NAME_CHARACTERS`), else empty."""
VAR_CALLER: Final = "CALLBACKD_CALLER"
"""Set by the caller-pays routine and by :data:`INBOUND_CONTEXT` (for
:data:`INBOUND_CONNECTED_EVENT`): the caller's number if it is 1-32 of
:data:`CALLER_CHARACTERS`, else empty."""
VAR_REJECT_CAUSE: Final = "CALLBACKD_REJECT_CAUSE"
"""Set by the caller-pays routine: the hangup cause (its second argument, 1-3 digits)."""
DEFAULT_REJECT_CAUSE: Final = 21

REMINDER_CONTEXT: Final = "callbackd-reminder"
"""A reminder call to an operator (CRM-task mode): callbackd originates to the operator's
interface with Context callbackd-reminder, Exten ``s``, Priority 1; in the campaign's
language (:data:`VAR_LANGUAGE`) the operator hears ``callbackd/reminder-you-have``, the count,
``callbackd/reminder-waiting-<form>`` (:data:`VAR_REMINDER_FORM`): "you have <N> callback
requests waiting"; then :data:`REMINDER_EVENT` is sent."""

REMINDER_EVENT: Final = "CallbackdReminder"
"""UserEvent sent once the count was said; headers :data:`REMINDER_HEADERS`."""
HEADER_REMINDER: Final = "Reminder"
HEADER_COUNT: Final = "Count"
REMINDER_HEADERS: Final = (HEADER_REMINDER, HEADER_COUNT)

VAR_REMINDER_ID: Final = "CALLBACKD_REMINDER_ID"
"""Set by callbackd: the reminder's id (like :data:`VAR_ATTEMPT_ID`; else empty)."""
VAR_REMINDER_COUNT: Final = "CALLBACKD_REMINDER_COUNT"
"""Set by callbackd: how many requests wait, 1-4 digits; anything else: nothing is said."""
MAX_REMINDER_COUNT: Final = 9999
VAR_REMINDER_FORM: Final = "CALLBACKD_REMINDER_FORM"
"""Set by callbackd: the count's plural form in the campaign's language, one of
:data:`REMINDER_FORMS` (the sound said after the count); anything else:
:data:`DEFAULT_REMINDER_FORM`."""
REMINDER_FORMS: Final = ("one", "few", "many")
DEFAULT_REMINDER_FORM: Final = "many"

REMINDER_VARIABLES: Final = frozenset(
    {VAR_REMINDER_ID, VAR_REMINDER_COUNT, VAR_REMINDER_FORM, VAR_LANGUAGE}
)

MODE_CONTEXTS: Final = frozenset(
    {CLIENT_FIRST_CONTEXT, CLIENT_FIRST_REPORT_CONTEXT, CALLER_PAYS_CONTEXT, REMINDER_CONTEXT}
)
MODE_EVENTS: Final = frozenset(
    {CLIENT_FIRST_EVENT, CLIENT_FIRST_RESULT_EVENT, CALLER_PAYS_EVENT, REMINDER_EVENT}
)
QUEUE_LOG_EVENTS: Final = frozenset({CALLER_PAYS_QUEUE_LOG_EVENT})
"""Every event the shipped dialplan writes to queue_log (QueueLog)."""
MODE_VARIABLES: Final = frozenset(
    {
        VAR_CLIENT_STAGE,
        VAR_TARGET_QUEUE,
        VAR_QUEUE_PRIO,
        VAR_LANDING,
        VAR_CAMPAIGN,
        VAR_CALLER,
        VAR_REJECT_CAUSE,
        *REMINDER_VARIABLES,
    }
)
"""Variables only the dialer-mode contexts use (besides shared ones like the attempt id)."""


# --------------------------------------------------------------------- AGI routes

AGI_ADDRESS_VARIABLE: Final = "CALLBACKD_AGI"
"""Set by the SITE (a [globals] entry, or on the channel): what the shipped contexts pass to
``AGI()``: ``agi://127.0.0.1:4573`` for the daemon's FastAGI server, or the path of the
classic ``callbackd-agi`` script. Unset or invalid: callbackd is not asked at all and the
caller goes to the queue exactly as without callbackd."""
AGI_ADDRESS_CHARACTERS: Final = (
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_/:.-"
)
MAX_AGI_ADDRESS_LENGTH: Final = 128

ROUTE_INBOUND: Final = "inbound"
"""First AGI argument of the caller lookup; the second is the queue."""
ROUTE_REQUEST: Final = "request"
"""First AGI argument of the callback-request IVR; the second is the queue."""
ROUTES: Final = frozenset({ROUTE_INBOUND, ROUTE_REQUEST})

INBOUND_CONTEXT: Final = "callbackd-inbound"
"""``Gosub(callbackd-inbound,s,1(<queue>[,<Queue() options>]))``: instead of
:data:`QUEUE_CONTEXT` for callers who should be looked up first (sticky operator, VIP,
priority), then queued."""
INBOUND_CONNECTED_CONTEXT: Final = "callbackd-inbound-connected"
"""Gosub (Dial option U()) on the operator's channel once :data:`INBOUND_CONTEXT`'s sticky
operator or VIP target answered: sends :data:`INBOUND_CONNECTED_EVENT`."""
INBOUND_CONNECTED_EVENT: Final = "CallbackdInboundConnected"
"""The caller of :data:`INBOUND_CONTEXT` got through to an operator by a direct Dial (no
queue, so no AgentConnect); headers :data:`INBOUND_CONNECTED_HEADERS`: the checked queue
(:data:`VAR_QUEUE`, may be empty), the caller's number (:data:`VAR_CALLER`, may be empty) and
the interface dialled."""
INBOUND_CONNECTED_HEADERS: Final = ("Queue", "Number", "Interface")
REQUEST_CONTEXT: Final = "callbackd-request"
"""``Goto(callbackd-request,s,1)`` (or the queue's exit key): the callback-request IVR for the
caller's queue (:data:`VAR_QUEUE`); returns the caller to the queue when nothing was stored."""
QUEUE_EXIT_CONTEXT: Final = "callbackd-queue-exit"
"""queues.conf ``context=`` of a queue whose callers may press :data:`QUEUE_EXIT_KEY` to
leave the queue for :data:`REQUEST_CONTEXT`."""
QUEUE_EXIT_KEY: Final = "1"

VAR_STICKY_MEMBER: Final = "CALLBACKD_STICKY_MEMBER"
"""inbound: the queue-member interface of the operator who last talked with the caller
(within the configured days), only when logged in and not paused; "" otherwise."""
VAR_STICKY_RING: Final = "CALLBACKD_STICKY_RING"
"""inbound: seconds the sticky operator (or VIP target) rings before the queue; 1-99."""
DEFAULT_STICKY_RING: Final = 15
VAR_CATEGORY: Final = "CALLBACKD_CATEGORY"
"""inbound: the customer's category (1-32 of A-Z a-z 0-9 _ -), "" when unknown."""
VAR_SKIP_QUEUE: Final = "CALLBACKD_SKIP_QUEUE"
"""inbound: 1 for a VIP (customers.skip_queue): the VIP target (or sticky operator) rings
first, then the queue at the top priority; 0 otherwise."""
VAR_PENDING: Final = "CALLBACKD_PENDING"
"""inbound: 1 when an open callback request for the caller exists, else 0."""
VAR_VIP_TARGET: Final = "CALLBACKD_VIP_TARGET"
"""Set by the SITE (optional): a dial string (e.g. ``PJSIP/desk``) VIP callers ring first."""
INTERFACE_CHARACTERS: Final = (
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_/@:.+-"
)
"""The only characters a sticky member or VIP target may hold (no ``&`` or ``,``)."""
MAX_INTERFACE_LENGTH: Final = 80
"""Longest sticky member the dialplan accepts (and any operator interface callbackd takes:
callbackd.domain.operators.is_queue_member_interface)."""
VAR_REQUEST_STATUS: Final = "CALLBACKD_REQUEST_STATUS"
"""request: ``stored`` (the request is in the database, the caller heard the confirmation);
anything else (``none`` by default, ``no_number``, ``no_campaign``) sends the caller back to
the queue."""


class RequestStatus(StrEnum):
    NONE = "none"
    STORED = "stored"
    NO_NUMBER = "no_number"
    NO_CAMPAIGN = "no_campaign"


VAR_REQUEST_ID: Final = "CALLBACKD_REQUEST_ID"
"""request: the stored request's id ("" until stored)."""

INBOUND_VARIABLES: Final = frozenset(
    {VAR_STICKY_MEMBER, VAR_STICKY_RING, VAR_CATEGORY, VAR_SKIP_QUEUE, VAR_PENDING}
)
"""What the ``inbound`` route sets (with :data:`VAR_PRIORITY`)."""
AGI_VARIABLES: Final = frozenset(
    {
        AGI_ADDRESS_VARIABLE,
        VAR_VIP_TARGET,
        VAR_REQUEST_STATUS,
        VAR_REQUEST_ID,
        *INBOUND_VARIABLES,
    }
)
AGI_CONTEXTS: Final = frozenset(
    {INBOUND_CONTEXT, INBOUND_CONNECTED_CONTEXT, REQUEST_CONTEXT, QUEUE_EXIT_CONTEXT}
)

CONTEXTS: Final = (
    frozenset(
        {
            QUEUE_CONTEXT,
            PROBE_CONTEXT,
            OPERATOR_CONTEXT,
            CLIENT_CONFIRM_CONTEXT,
            REPORT_CONTEXT,
            OUTBOUND_CONTEXT,
        }
    )
    | MODE_CONTEXTS
    | AGI_CONTEXTS
)
"""Every context the shipped dialplan defines."""

EVENTS: Final = (
    frozenset({PROBE_EVENT, ATTEMPT_EVENT, RESULT_EVENT, INBOUND_CONNECTED_EVENT}) | MODE_EVENTS
)
"""Every UserEvent the shipped dialplan sends."""

VARIABLES: Final = (
    frozenset({VAR_PRIORITY, VAR_QUEUE, VAR_PROBE_TOKEN, *CALLBACK_VARIABLES, *DIALPLAN_VARIABLES})
    | OUTBOUND_VARIABLES
    | MODE_VARIABLES
    | AGI_VARIABLES
)
"""Every ``CALLBACKD_*`` channel variable the shipped dialplan sets or reads."""

MANAGER_CHANNELVARS: Final = ",".join(sorted({VAR_PRIORITY, VAR_QUEUE}))
"""Value for manager.conf ``channelvars`` so AMI events carry the variables."""
