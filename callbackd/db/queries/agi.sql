-- The AGI routes (callbackd/services/inbound.py, callbackd/services/ivr_requests.py).

-- name: caller_facts
-- One row whatever is known: the customer's category and its rule (migration 0019), the
-- operator who last talked with the number on this PBX within $3 days, and whether a
-- callback for the number is open.
SELECT
    c.category,
    COALESCE(c.priority, 0) AS priority,
    COALESCE(c.skip_queue, false) AS skip_queue,
    k.priority AS category_priority,
    k.skip_queue AS category_skip_queue,
    k.sticky_ring_seconds AS category_sticky_ring_seconds,
    (SELECT i.operator_interface
       FROM interactions i
      WHERE i.number = $1 AND i.pbx = $2
        AND i.occurred_at > now() - make_interval(days => $3)
      ORDER BY i.occurred_at DESC
      LIMIT 1) AS last_operator,
    EXISTS (SELECT 1 FROM callback_requests r
             WHERE r.number = $1 AND r.status IN ('pending', 'dialing')) AS pending
FROM (SELECT 1) AS one
LEFT JOIN customers c ON c.number = $1
LEFT JOIN customer_categories k ON k.name = c.category;

-- name: store_ivr_request
-- The caller asked for a callback in the IVR. An open request for the number in the
-- campaign takes the new time instead of a second request being made.
INSERT INTO callback_requests AS r (
    campaign_id, number, source, priority, due_at, preferred_at, first_joined_at,
    pbx, queue, caller_name, uniqueid, linkedid
)
SELECT
    c.id, $2::text, 'ivr',
    $3 + callbackd_customer_priority($2::text),
    $4, $5, now(), $6, $7, $8, $9, $10
FROM campaigns c
WHERE c.name = $1
ON CONFLICT (campaign_id, number) WHERE status IN ('pending', 'dialing') DO UPDATE SET
    due_at       = excluded.due_at,
    preferred_at = excluded.preferred_at,
    pbx          = excluded.pbx,
    queue        = excluded.queue,
    uniqueid     = excluded.uniqueid,
    linkedid     = excluded.linkedid,
    updated_at   = now()
RETURNING r.id, (xmax = 0) AS created;

-- name: sync_categories
-- The configuration's [categories.<name>] rules ($1 names, $2 priorities, $3 skip_queue,
-- $4 sticky ring seconds: parallel arrays) become the whole table.
WITH configured AS (
    SELECT * FROM unnest($1::text[], $2::integer[], $3::boolean[], $4::integer[])
        AS k(name, priority, skip_queue, sticky_ring_seconds)
), gone AS (
    DELETE FROM customer_categories WHERE name <> ALL ($1::text[])
)
INSERT INTO customer_categories (name, priority, skip_queue, sticky_ring_seconds)
SELECT name, priority, skip_queue, sticky_ring_seconds FROM configured
ON CONFLICT (name) DO UPDATE
    SET priority = excluded.priority, skip_queue = excluded.skip_queue,
        sticky_ring_seconds = excluded.sticky_ring_seconds, updated_at = now()
    WHERE (customer_categories.priority, customer_categories.skip_queue,
           customer_categories.sticky_ring_seconds)
          IS DISTINCT FROM (excluded.priority, excluded.skip_queue, excluded.sticky_ring_seconds);
