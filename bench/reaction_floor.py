"""The floor for reaction path (b): the least a program can do between an abandon and the call.

Not callbackd. A reference reactor for ``bench/reaction_time --reactor floor``: on the same
machine, the same lab Asterisk and PostgreSQL, the same AMI transport (callbackd's
``AmiLink``) and the same measurement, it does only what any correct callback dialer must do
before the operator's phone can ring:

1. hear ``QueueCallerAbandon`` on AMI;
2. commit, in one statement on one open connection, a request and the attempt that claims
   the free operator (a partial unique index refuses a second call in flight to him);
3. send the Originate with the channel id it chose.

No number policy, calling window, campaign lookup, operator board, outbox event, log line or
model parsing. Whatever callbackd's path (b) takes beyond this reactor's is the daemon's own
cost; whatever this reactor takes is the machine's (Asterisk, the scheduler, PostgreSQL).

Run by the benchmark: ``python -m bench.reaction_floor '<json config>'``.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

import uvloop
from panoramisk.message import Message

from callbackd.ami.link import AmiLink, AmiLinkConfig
from callbackd.db.pool import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_requests (
    id         bigserial PRIMARY KEY,
    uniqueid   text NOT NULL UNIQUE,
    number     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS floor_attempts (
    id         uuid PRIMARY KEY,
    request_id bigint NOT NULL REFERENCES floor_requests (id),
    operator   text NOT NULL,
    finished   boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX IF NOT EXISTS floor_attempts_one_per_operator
    ON floor_attempts (operator) WHERE NOT finished;
"""
CLAIM = """
WITH request AS (
    INSERT INTO floor_requests (uniqueid, number) VALUES ($1, $2)
    ON CONFLICT (uniqueid) DO NOTHING
    RETURNING id
)
INSERT INTO floor_attempts (id, request_id, operator)
SELECT $3, id, $4 FROM request
RETURNING id
"""
FINISH = "UPDATE floor_attempts SET finished = true WHERE id = $1"


class FloorReactor:
    def __init__(self, config: dict[str, Any]) -> None:
        self.queue = config["queue"]
        self.operator = config["operator"]
        self.conn: Any = None
        self.link = AmiLink(
            AmiLinkConfig(
                "floor", config["host"], config["port"], config["username"], config["secret"]
            ),
            handler=self.on_event,
            events={"queuecallerabandon"},
        )

    async def on_event(self, link: AmiLink, message: Message) -> None:
        if message.get("Queue") != self.queue:
            return
        number = "".join(ch for ch in str(message.get("CallerIDNum", "")) if ch.isdigit())
        attempt = uuid.uuid4()
        claimed = await self.conn.fetchval(
            CLAIM, str(message.get("Uniqueid")), number, attempt, self.operator, timeout=5
        )
        if claimed is None:
            return
        channel_id = f"callbackd-{attempt}"
        await link.action(
            {
                "Action": "Originate",
                "Channel": self.operator,
                "Application": "Wait",
                "Data": "30",
                "CallerID": f'"Callback" <{number}>',
                "ChannelId": channel_id,
                "OtherChannelId": f"{channel_id};2",
                "Async": "true",
            },
            as_list=False,
        )
        # The benchmark hangs the call up at once; the operator is free for the next sample.
        await self.conn.execute(FINISH, attempt, timeout=5)

    async def run(self, dsn: str) -> None:
        self.conn = await connect(dsn)
        await self.conn.execute(SCHEMA)
        await self.link.run()


def main() -> None:
    config = json.loads(sys.argv[1])
    # The event loop callbackd's daemon runs on, so the two differ only in their own work.
    uvloop.run(FloorReactor(config).run(config["dsn"]))


if __name__ == "__main__":
    main()
