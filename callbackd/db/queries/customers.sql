-- Customer categories set by the CRM (HTTP API) or the CLI (callbackd/services/customers.py).

-- name: upsert_customer
INSERT INTO customers (number, category, priority, skip_queue, note)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (number) DO UPDATE SET
    category = excluded.category, priority = excluded.priority,
    skip_queue = excluded.skip_queue, note = excluded.note, updated_at = now()
RETURNING *, (xmax = 0) AS created;

-- name: get_customer
SELECT * FROM customers WHERE number = $1;

-- name: list_customers
-- Ordered by number; keyset pagination ($1: the last number of the previous page).
SELECT * FROM customers
WHERE ($1::text IS NULL OR number > $1)
  AND ($2::text IS NULL OR category = $2)
ORDER BY number
LIMIT $3;

-- name: delete_customer
DELETE FROM customers WHERE number = $1 RETURNING number;
